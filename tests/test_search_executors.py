"""Executors: a crashing, hanging or failing job never stops the others.

The local pool is tested with real worker processes; Ray with a real local
cluster bound to 127.0.0.1, checking the jobs ran in Ray worker processes.
"""

from __future__ import annotations

import dataclasses
import importlib.util
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


def test_local_workers_are_recycled_after_max_jobs():
    executor = LocalExecutor(workers=1, max_jobs=2)
    try:
        pids = []
        for i in range(5):
            executor.submit(i, square, (i,), timeout_s=30.0)
            pids.append(drain(executor, 1)[i].value["pid"])
        assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]
    finally:
        executor.close()


def test_ray_runs_jobs_and_searches_in_ray_workers(tmp_path, monkeypatch, repo):
    """A local Ray cluster on 127.0.0.1: failures are outcomes, and search evaluations run in Ray workers."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed (pip install optdsl[test])")
    from optdsl.search import run_search
    from optdsl.search.executors import RayExecutor
    from search_support import rows, small_space

    monkeypatch.setenv("PYTHONPATH", str(repo / "tests"))  # so Ray workers can import this module's jobs
    executor = RayExecutor("local", slots=2)
    try:
        import ray

        assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
        for key, fn in (("fail", fail), ("hang", hang), ("ok", square)):
            executor.submit(key, fn, (5,), timeout_s=3.0)
        done = drain(executor, 3)
        assert done["ok"].value["value"] == 25 and done["ok"].value["pid"] != os.getpid()
        assert "candidate broke" in done["fail"].error and "timed out" in done["hang"].error

        space = small_space(tmp_path, evaluations=3, heldout="[]")
        space = space.replace(scoring=dataclasses.replace(space.scoring, search_tasks=("quadratic",), fidelities=1))
        run_search(tmp_path / "ray.db", space, executor=executor)
    finally:
        executor.close()
    workers = rows(tmp_path / "ray.db", "SELECT worker FROM evaluations WHERE phase = 'search' AND status = 'ok'")
    assert len(workers) >= 3
    for (worker,) in workers:
        host, pid, ray_id = worker.split(":")
        assert int(pid) != os.getpid() and ray_id.startswith("ray-")
