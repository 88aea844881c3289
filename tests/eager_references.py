"""Eager transcriptions used as references where no package implements a rule.

Each cites what it transcribes. Shared by the tests and by the variant benchmark
(``bench/bench_variants.py``), which times them as "what a researcher writes by hand".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

Modifier = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (u, g) -> new u


def cautious(u: torch.Tensor, g: torch.Tensor, norm: str = "paper") -> torch.Tensor:
    """The Cautious mask (Liang et al., 2024): keep u where it agrees in sign with g; rescale by
    C-Optim's original numel / (sum(mask) + 1) ("paper"), or timm's and current C-AdamW's
    1 / max(mean(mask), 1e-3) ("timm")."""
    mask = (u * g > 0).to(g.dtype)
    scale = mask.numel() / (mask.sum() + 1) if norm == "paper" else 1 / mask.mean().clamp(min=1e-3)
    return u * mask * scale


def grams(u: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Grams (Cao et al., 2024): the direction of g, the magnitude of u."""
    return torch.sign(g) * u.abs()


class EagerAdamW(torch.optim.Optimizer):
    """torch.optim.AdamW's update, written eagerly per tensor, with ``modifiers`` applied in
    order to its direction u = m_hat / (sqrt(v_hat) + eps) before the step."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 modifiers: Sequence[Modifier] = ()):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.modifiers = tuple(modifiers)

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                st = self.state[p]
                if not st:
                    st.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                st["t"] += 1
                g, t = p.grad, st["t"]
                st["m"].lerp_(g, 1 - b1)
                st["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
                u = (st["m"] / (1 - b1**t)) / (st["v"].sqrt() / math.sqrt(1 - b2**t) + group["eps"])
                for modify in self.modifiers:
                    u = modify(u, g)
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(u, alpha=-group["lr"])


class EagerCautiousAdamW(EagerAdamW):
    """The Cautious rule on torch's AdamW direction, eagerly (C-Optim's C-AdamW is not on PyPI)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, norm="paper"):
        super().__init__(params, lr, betas, eps, weight_decay, modifiers=[lambda u, g: cautious(u, g, norm)])
