"""Training one optimizer on one proxy problem over a whole learning-rate grid at once.

Every grid point gets its own copy of the parameters (separate tensors, so
whole-tensor reductions in a rule stay per copy) and its own param group with
its lr, in a single optimizer. The problem's loss takes the copies stacked
along a leading grid dimension and returns one loss per copy, so the forward
and backward passes run once per step for the whole grid; copies never mix
(the loss is a sum of independent terms).

A copy's score is the mean loss over the last 10% of steps; NaN, inf and
anything above the problem's ceiling count as the ceiling.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

CURVE_POINTS = 50
TAIL_FRACTION = 0.1


class Problem:
    """One task at one fidelity, built deterministically from a seed."""

    steps: int = 100
    floor: float = 0.0  # the best loss possible (0 unless the task knows better)
    ceiling_factor: float = 1.5  # losses above ceiling_factor * initial loss count as divergence

    def init_params(self) -> list[torch.Tensor]:
        """One copy of the initial parameters."""
        raise NotImplementedError

    def loss(self, params: list[torch.Tensor], step: int) -> torch.Tensor:
        """Per-copy losses, shape (L,), for params stacked along dim 0."""
        raise NotImplementedError

    def measure(self, params: list[torch.Tensor], step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(the loss to differentiate, the loss to report); the same unless the gradient is noised."""
        loss = self.loss(params, step)
        return loss, loss


@dataclass
class GridResult:
    """What one optimizer did on one problem over the lr grid."""

    lrs: list[float]
    final: list[float]  # per lr: mean loss over the last steps, clipped to the ceiling
    initial: float
    ceiling: float
    floor: float
    curve: list[float] = field(default_factory=list)  # the best lr's loss curve, CURVE_POINTS points
    seconds: float = 0.0

    @property
    def best(self) -> float:
        return min(self.final)

    @property
    def best_lr(self) -> float:
        return self.lrs[self.final.index(self.best)]

    def to_dict(self) -> dict:
        return {
            "lrs": self.lrs, "final": self.final, "initial": self.initial, "ceiling": self.ceiling,
            "floor": self.floor, "curve": self.curve, "seconds": self.seconds, "best": self.best,
            "best_lr": self.best_lr,
        }


def train_grid(problem: Problem, optimizer_class, lrs: list[float]) -> GridResult:
    """Train one copy per lr with ``optimizer_class`` (one param group each)."""
    start = time.perf_counter()
    init = problem.init_params()
    copies = [[p.detach().clone().requires_grad_(True) for p in init] for _ in lrs]
    optimizer = optimizer_class([{"params": c, "lr": lr} for c, lr in zip(copies, lrs)])
    history = torch.full((problem.steps, len(lrs)), math.inf, dtype=torch.float64)
    alive = torch.ones(len(lrs), dtype=torch.bool)
    ceiling = math.inf
    for step in range(problem.steps):
        stacked = [torch.stack(group) for group in zip(*copies)]
        losses, reported = problem.measure(stacked, step)
        values = reported.detach()
        if step == 0:
            ceiling = problem.ceiling_factor * float(values[0]) + problem.floor * (1 - problem.ceiling_factor)
        alive &= torch.isfinite(values) & (values < 10 * ceiling)
        history[step] = torch.where(alive, values, math.inf)
        if not alive.any():
            break
        for c in copies:
            for p in c:
                p.grad = None
        torch.where(alive, losses, torch.zeros_like(losses)).sum().backward()
        optimizer.step()
    return _summarize(history, lrs, ceiling, problem.floor, time.perf_counter() - start)


def _summarize(history: torch.Tensor, lrs: list[float], ceiling: float, floor: float, seconds: float) -> GridResult:
    steps = history.shape[0]
    tail = history[-max(1, int(steps * TAIL_FRACTION)):]
    clipped = torch.nan_to_num(tail, nan=ceiling, posinf=ceiling, neginf=ceiling).clamp(max=ceiling)
    final = [float(x) for x in clipped.mean(0)]
    best = final.index(min(final))
    curve = torch.nan_to_num(history[:, best], nan=ceiling, posinf=ceiling).clamp(max=ceiling)
    index = torch.linspace(0, steps - 1, min(CURVE_POINTS, steps)).round().long()
    initial = float(history[0, 0])
    return GridResult(list(lrs), final, initial, ceiling, floor, [float(x) for x in curve[index]], seconds)


# --- helpers for problems ----------------------------------------------------------------


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batched_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x (B, d) or (L, B, d), w (L, d, h), b (L, h) -> (L, B, h)."""
    return x @ w + b[:, None, :]


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per copy: logits (L, B, C), targets (B,) or (L, B) -> (L,)."""
    log_probs = torch.log_softmax(logits, dim=-1)
    if targets.dim() == 1:
        targets = targets.expand(logits.shape[0], -1)
    return -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1).mean(-1)
