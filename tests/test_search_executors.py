"""Executors: a crashing, hanging or failing job never stops the others.

The local pool is tested with real worker processes; Ray with a real local
cluster bound to 127.0.0.1, checking the jobs ran in Ray worker processes.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from optdsl.search.executors import LocalExecutor


def square(x):
    return {"value": x * x, "pid": os.getpid()}


def crash(_):
    os.kill(os.getpid(), signal.SIGKILL)


def hang(_):
    time.sleep(60)


def fail(_):
    raise ValueError("candidate broke")


def drain(executor, expected: int, limit_s: float = 60) -> dict:
    done = {}
    deadline = time.monotonic() + limit_s
    while len(done) < expected and time.monotonic() < deadline:
        done.update(executor.poll(0.2))
    return done


def test_local_pool_survives_crashes_hangs_and_errors():
    executor = LocalExecutor(workers=2)
    try:
        for key, fn in (("crash", crash), ("hang", hang), ("fail", fail), ("ok1", square), ("ok2", square)):
            executor.submit(key, fn, (3,), timeout_s=4.0)
        done = drain(executor, 5)
        assert not done["crash"].ok and "worker died" in done["crash"].error
        assert not done["hang"].ok and "timed out" in done["hang"].error
        assert not done["fail"].ok and "ValueError: candidate broke" in done["fail"].error
        assert done["ok1"].ok and done["ok1"].value["value"] == 9 and done["ok2"].ok
        assert done["ok1"].value["pid"] != os.getpid()
        executor.submit("after", square, (4,), timeout_s=10.0)  # replaced workers still serve
        assert drain(executor, 1)["after"].value["value"] == 16
        assert executor.in_flight() == 0
    finally:
        executor.close()
