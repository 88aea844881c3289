"""What a worker runs: compile one rule and train it on some tasks over the lr grid.

``run_job`` is the function executors ship to worker processes (local or Ray);
it uses only the public ``optdsl.load`` and returns plain data (JSON-able).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass

import torch

from ..api import load
from .tasks import run_task


@dataclass(frozen=True)
class Job:
    """Train ``source`` on ``tasks`` at ``fidelity``; ``candidate`` is its id in the store."""

    candidate: int  # -1 for a baseline
    source: str
    tasks: tuple[str, ...]
    fidelity: int
    phase: str  # "search" | "heldout" | "baseline"
    lrs: tuple[float, ...]
    task_seed: int


def run_job(job: Job) -> dict:
    """Per-task grid results plus where and how long it ran."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    optimizer_class = load(source=job.source)
    results = {
        task: run_task(task, job.fidelity, job.task_seed, optimizer_class, list(job.lrs)).to_dict()
        for task in job.tasks
    }
    return {"results": results, "pid": os.getpid(), "worker": worker_identity(), "seconds": time.perf_counter() - start}


def worker_identity() -> str:
    """host:pid, plus the Ray worker id when running inside a Ray worker."""
    ident = f"{socket.gethostname()}:{os.getpid()}"
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        context = ray.get_runtime_context()
        if context.worker.mode == ray.WORKER_MODE:
            ident += f":ray-{context.get_worker_id()[:12]}"
    return ident
