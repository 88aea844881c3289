"""Numeric checks of a rule on fixed random inputs, before any training.

* ``probe_hash``: a few steps of the reference interpreter
  (``ir.evaluate.evaluate_step``) on fixed float64 inputs, rounded and hashed,
  so rules that compute the same thing however they are written share a hash.
* ``screen``: cheap degeneracy filters. A rule must move ``p``, must depend on
  ``g``, and must descend on a sphere (f = |x - c|^2 / 2, g = x - c) at some learning
  rate within a few steps; else it is never trained.
"""

from __future__ import annotations

import hashlib
import math

import torch

from ..ir.evaluate import evaluate_step
from ..ir.nodes import Rule

SHAPE = (4, 4)
PROBE_STEPS = 4
PROBE_LR = 0.01
SIGNIFICANT_DIGITS = 6
SPHERE_LRS = (1e-3, 1e-2, 1e-1, 1.0)
SPHERE_STEPS = 8
SPHERE_DECREASE = 0.9  # the loss must fall below this fraction of its start


def _inputs(seed: int, steps: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    p = torch.randn(SHAPE, generator=gen, dtype=torch.float64)
    grads = [torch.randn(SHAPE, generator=gen, dtype=torch.float64) for _ in range(steps)]
    return p, grads


def trajectory(rule: Rule, p: torch.Tensor, grads: list[torch.Tensor], lr: float = PROBE_LR) -> list[torch.Tensor]:
    """``p`` after each step of ``rule`` fed ``grads``."""
    state: dict = {}
    out = []
    with torch.no_grad():
        for t, g in enumerate(grads, 1):
            p, state = evaluate_step(rule, p, g, t, state, {"lr": lr})
            p = torch.broadcast_to(torch.as_tensor(p, dtype=torch.float64), SHAPE)
            out.append(p)
    return out


def probe_hash(rule: Rule) -> str:
    """Hash of the rounded parameter trajectory on the fixed probe inputs."""
    p, grads = _inputs(0, PROBE_STEPS)
    h = hashlib.sha256()
    for step in trajectory(rule, p, grads):
        h.update(" ".join(_rounded(x) for x in step.flatten().tolist()).encode())
        h.update(b";")
    return h.hexdigest()[:32]


def _rounded(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{SIGNIFICANT_DIGITS - 1}e}" if x != 0 else "0"


def screen(rule: Rule) -> str | None:
    """Why the rule is not worth training (a short reason), or None if it passes."""
    p, grads = _inputs(1, PROBE_STEPS)
    _, other = _inputs(2, PROBE_STEPS)
    first = trajectory(rule, p, grads)
    if all(torch.equal(x, p) for x in first):
        return "no_update"
    if not all(torch.isfinite(x).all() for x in first):
        return "not_finite"
    second = trajectory(rule, p, other)
    if all(torch.allclose(a, b, rtol=1e-12, atol=0) for a, b in zip(first, second)):
        return "ignores_g"
    if not descends_on_sphere(rule):
        return "no_descent"
    return None


def descends_on_sphere(rule: Rule) -> bool:
    """Does some lr in SPHERE_LRS cut |x - c|^2 / 2 by 10% within SPHERE_STEPS steps?

    The centre ``c`` is random and the start is close to it, so a rule that
    shrinks ``p`` towards 0 does not pass.
    """
    centre, (offset,) = _inputs(3, 1)
    x0 = centre + 0.5 * offset
    start = 0.5 * float((0.5 * offset).square().sum())
    for lr in SPHERE_LRS:
        x, state = x0, {}
        with torch.no_grad():
            for t in range(1, SPHERE_STEPS + 1):
                x, state = evaluate_step(rule, x, x - centre, t, state, {"lr": lr})
                x = torch.broadcast_to(torch.as_tensor(x, dtype=torch.float64), SHAPE)
        loss = 0.5 * float((x - centre).square().sum())
        if math.isfinite(loss) and loss < SPHERE_DECREASE * start:
            return True
    return False
