"""The proxy-task registry: name -> how to build its problem at a fidelity.

Every task is synthetic or ships inside a pip package (scikit-learn's digits):
nothing is downloaded. A task's data and initial parameters depend only on
its name, its fidelity and the space's ``task_seed``.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

from .base import GridResult, Problem, train_grid
from .charlm import CharLM
from .problems import LogisticRegression, NoisyQuadratic, Rosenbrock, digits_mlp, synthetic_mlp


@dataclass(frozen=True)
class Task:
    name: str
    build: Callable[[int, int], Problem]  # (fidelity, seed) -> problem
    description: str


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("quadratic", NoisyQuadratic, "noisy ill-conditioned quadratic (condition 1e3, rotated)"),
        Task("rosenbrock", Rosenbrock, "8 two-dimensional Rosenbrock functions"),
        Task("logreg", LogisticRegression, "logistic regression on synthetic data"),
        Task("mlp", synthetic_mlp, "MLP classifier on a synthetic 4-class teacher"),
        Task("digits", digits_mlp, "MLP classifier on scikit-learn's 8x8 digits"),
        Task("charlm", CharLM, "tiny char-level transformer on a Markov language of known entropy"),
    )
}


def task_seed(name: str, base_seed: int) -> int:
    return (zlib.crc32(name.encode()) + 7919 * base_seed) % (2**31)


def run_task(name: str, fidelity: int, base_seed: int, optimizer_class, lrs: list[float]) -> GridResult:
    """Train ``optimizer_class`` on task ``name`` at ``fidelity`` over the lr grid."""
    problem = TASKS[name].build(fidelity, task_seed(name, base_seed))
    return train_grid(problem, optimizer_class, lrs)


__all__ = ["TASKS", "Task", "GridResult", "run_task", "task_seed"]
