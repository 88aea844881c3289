"""Eager transcriptions used as references where no package implements a rule.

Each cites what it transcribes. Shared by the tests and by the variant benchmark
(``bench/bench_variants.py``), which times them as "what a researcher writes by hand".
"""

from __future__ import annotations

import math

import torch


class EagerCautiousAdamW(torch.optim.Optimizer):
    """Transcription of the Cautious rule on torch's AdamW update (the paper's Algorithm with
    C-Optim's original normalisation numel / (sum(mask) + 1), or timm's / current C-AdamW's
    1 / max(mean(mask), 1e-3)), mask = (u * g > 0) with u the AdamW direction."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, norm="paper"):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, norm=norm))

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
                mask = (u * g > 0).to(g.dtype)
                if group["norm"] == "paper":
                    scale = mask.numel() / (mask.sum() + 1)
                else:
                    scale = 1 / mask.mean().clamp(min=1e-3)
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(u * mask * scale, alpha=-group["lr"])
