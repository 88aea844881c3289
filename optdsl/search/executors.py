"""Where evaluation jobs run: a local process pool (default) or a Ray cluster.

Both run ``fn(*args)`` for a key, with a per-job timeout, and report each
finished job as an :class:`Outcome`; a job that raises, crashes its worker or
hangs past its timeout becomes a failed outcome and never stops the search.
The local pool keeps one long-lived worker process per slot and replaces a
worker that died or was killed for taking too long.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import time
import traceback
import warnings
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any, Callable, Hashable


_LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
MAX_JOBS_PER_WORKER = 200


@dataclass(frozen=True)
class Outcome:
    ok: bool
    value: Any = None
    error: str | None = None
    seconds: float = 0.0


@dataclass
class _Task:
    key: Hashable
    fn: Callable
    args: tuple
    timeout_s: float
    started: float = 0.0


def _worker_main(conn) -> None:
    """Worker loop: receive (fn, args), send back (True, value) or (False, traceback text).

    Ctrl-C is the parent's to handle: it stops the workers itself.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        fn, args = message
        try:
            reply = (True, fn(*args))
        except BaseException:  # noqa: BLE001 - any failure of a job is reported, not fatal
            reply = (False, traceback.format_exc(limit=20))
        conn.send(reply)


class _Worker:
    def __init__(self, context):
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child,), daemon=True)
        self.process.start()
        child.close()
        self.task: _Task | None = None
        self.jobs = 0

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.process.kill()
        else:
            try:
                self.conn.send(None)
            except (BrokenPipeError, OSError):
                self.process.kill()
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


class LocalExecutor:
    """``workers`` processes on this machine (default: every core).

    A worker is replaced after ``max_jobs`` jobs, so memory held by the modules
    of thousands of compiled candidates is returned.
    """

    name = "local"

    def __init__(self, workers: int = 0, max_jobs: int = MAX_JOBS_PER_WORKER):
        self.slots = workers or os.cpu_count() or 1
        self.max_jobs = max_jobs
        self._context = mp.get_context("spawn")
        self._workers = [_Worker(self._context) for _ in range(self.slots)]
        self._queue: deque[_Task] = deque()

    def submit(self, key: Hashable, fn: Callable, args: tuple, timeout_s: float) -> None:
        self._queue.append(_Task(key, fn, args, timeout_s))
        self._dispatch()

    def in_flight(self) -> int:
        return len(self._queue) + sum(w.task is not None for w in self._workers)

    def free_slots(self) -> int:
        return max(0, self.slots - self.in_flight())

    def _dispatch(self) -> None:
        for index, worker in enumerate(self._workers):
            if worker.task is None and worker.jobs >= self.max_jobs:
                worker.stop()
                worker = self._workers[index] = _Worker(self._context)
            if worker.task is None and self._queue:
                task = self._queue.popleft()
                task.started = time.monotonic()
                worker.task = task
                worker.conn.send((task.fn, task.args))

    def poll(self, timeout: float) -> list[tuple[Hashable, Outcome]]:
        """Finished jobs, waiting up to ``timeout`` seconds for the first one."""
        busy = [w for w in self._workers if w.task is not None]
        if not busy:
            return []
        deadline = min(w.task.started + w.task.timeout_s for w in busy)
        wait_s = max(0.0, min(timeout, deadline - time.monotonic()))
        ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=wait_s))
        done = []
        for index, worker in enumerate(self._workers):
            task = worker.task
            if task is None:
                continue
            seconds = time.monotonic() - task.started
            if worker.conn in ready:
                done.append((task.key, self._receive(index, seconds)))
            elif worker.process.sentinel in ready:
                done.append((task.key, self._replace(index, "worker died", seconds)))
            elif seconds > task.timeout_s:
                done.append((task.key, self._replace(index, f"timed out after {task.timeout_s:g} s", seconds, kill=True)))
        self._dispatch()
        return done

    def _receive(self, index: int, seconds: float) -> Outcome:
        worker = self._workers[index]
        try:
            ok, value = worker.conn.recv()
        except (EOFError, OSError):
            return self._replace(index, "worker died", seconds)
        worker.task = None
        worker.jobs += 1
        return Outcome(True, value, None, seconds) if ok else Outcome(False, None, value, seconds)

    def _replace(self, index: int, error: str, seconds: float, kill: bool = False) -> Outcome:
        """Stop worker ``index`` (killing it if it hangs), start a fresh one, report the job failed."""
        old = self._workers[index]
        old.stop(kill=True)
        if not kill:
            error += f" (exit code {old.process.exitcode})"
        self._workers[index] = _Worker(self._context)
        return Outcome(False, None, error, seconds)

    def close(self) -> None:
        for worker in self._workers:
            worker.stop(kill=worker.task is not None)
        self._workers = []


class RayExecutor:
    """Jobs as Ray tasks (one CPU each) on the cluster at ``address`` ("local" starts one on 127.0.0.1)."""

    name = "ray"

    def __init__(self, address: str | None = None, slots: int = 0):
        local = address in (None, "local")
        if local:
            # Ray resolves 127.0.0.1 to the machine's address unless it thinks clusters are off;
            # with this (read when ray is imported) every Ray process listens on loopback only.
            if "ray" in sys.modules and os.environ.get(_LOOPBACK_ONLY) != "0":
                warnings.warn(f"ray was imported before optdsl could set {_LOOPBACK_ONLY}=0: "
                              "the local Ray cluster may listen beyond 127.0.0.1", stacklevel=2)
            os.environ.setdefault(_LOOPBACK_ONLY, "0")
        import ray

        self._ray = ray
        self._owns = False
        if not ray.is_initialized():
            kwargs = dict(runtime_env={"env_vars": _worker_env()}, include_dashboard=False, log_to_driver=False)
            if local:
                ray.init(address="local", _node_ip_address="127.0.0.1", num_cpus=slots or None, **kwargs)
            else:
                ray.init(address=address, **kwargs)
            self._owns = True
        self._remote = ray.remote(num_cpus=1, max_retries=0, max_calls=MAX_JOBS_PER_WORKER)(_call)
        self.slots = slots or max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._running: dict = {}  # ObjectRef -> _Task

    def submit(self, key: Hashable, fn: Callable, args: tuple, timeout_s: float) -> None:
        ref = self._remote.remote(fn, args)
        self._running[ref] = _Task(key, fn, args, timeout_s, time.monotonic())

    def in_flight(self) -> int:
        return len(self._running)

    def free_slots(self) -> int:
        return max(0, self.slots - self.in_flight())

    def poll(self, timeout: float) -> list[tuple[Hashable, Outcome]]:
        if not self._running:
            return []
        refs = list(self._running)
        ready, _ = self._ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
        done = []
        now = time.monotonic()
        for ref in ready:
            task = self._running.pop(ref)
            done.append((task.key, self._result(ref, now - task.started)))
        for ref, task in list(self._running.items()):
            if now - task.started > task.timeout_s:
                self._ray.cancel(ref, force=True)
                del self._running[ref]
                done.append((task.key, Outcome(False, None, f"timed out after {task.timeout_s:g} s", now - task.started)))
        return done

    def _result(self, ref, seconds: float) -> Outcome:
        try:
            return Outcome(True, self._ray.get(ref), None, seconds)
        except self._ray.exceptions.RayError as exc:
            return Outcome(False, None, f"{type(exc).__name__}: {str(exc)[:2000]}", seconds)

    def close(self) -> None:
        for ref in list(self._running):
            self._ray.cancel(ref, force=True)
        self._running.clear()
        if self._owns:
            self._ray.shutdown()


def _call(fn: Callable, args: tuple):
    return fn(*args)


def _worker_env() -> dict[str, str]:
    """What Ray workers need to import optdsl from this checkout and share its compile cache."""
    from ..runtime.cache import cache_dir

    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "OPTDSL_CACHE_DIR": str(cache_dir())}


def make_executor(workers: int = 0, ray_address: str | None = None):
    """The Ray executor when ``ray_address`` is given, else the local pool."""
    if ray_address:
        return RayExecutor(ray_address, workers)
    return LocalExecutor(workers)
