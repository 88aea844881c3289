"""Compiled vs eager: one optimizer class run eagerly and under ``torch.compile`` on twin models.

Used by ``tests/test_compile.py`` and ``bench/bench_compile.py``. The model has the
kinds of parameters the built-in rules treat differently (matrices, vectors, a
3-D weight), small enough that inductor compiles in seconds on a CPU.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch._dynamo
import torch._inductor.config
from torch._dynamo.utils import counters


class SmallNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = torch.nn.Linear(6, 10)
        self.norm = torch.nn.LayerNorm(10)
        self.mix = torch.nn.Parameter(torch.randn(2, 5, 10) * 0.3)  # a 3-D weight
        self.out = torch.nn.Linear(10, 3)

    def forward(self, x):
        h = torch.tanh(self.norm(self.inp(x)))
        h = h + torch.einsum("bj,kij->bj", h, self.mix) * 0.1
        return self.out(h)


@dataclass
class CompiledRun:
    max_rel_error: float  # max over steps of max |compiled - eager| / max |eager| over all params
    frames: int  # frames dynamo compiled (each compile and recompile of each frame)
    frames_after_warmup: int  # of those, compiled after the first two steps (recompiles)
    graph_breaks: int
    graphs: int  # unique graphs captured


def _models(seed: int, dtype: torch.dtype):
    torch.manual_seed(seed)
    model = SmallNet().to(dtype)
    return model, copy.deepcopy(model)


def _loss(model, x, y):
    return torch.nn.functional.mse_loss(model(x), y)


def _rel_error(a: torch.nn.Module, b: torch.nn.Module) -> float:
    diff = max((p.float() - q.float()).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))
    scale = max(q.float().abs().max().item() for q in b.parameters())
    return diff / scale


def compare(
    make_optimizer, steps: int = 20, whole_step: bool = False, seed: int = 0, dtype: torch.dtype = torch.float32
) -> CompiledRun:
    """Run ``make_optimizer(params)`` eagerly and compiled (``torch.compile(opt.step)``, or with
    ``whole_step`` a compiled function doing forward, backward and step) for ``steps`` steps."""
    # inductor's own RNG draws other numbers than eager torch.randn (a state's randn() init)
    with torch._inductor.config.patch(fallback_random=True):
        return _compare(make_optimizer, steps, whole_step, seed, dtype)


def _compare(make_optimizer, steps, whole_step, seed, dtype) -> CompiledRun:
    torch._dynamo.reset()
    counters.clear()
    compiled_model, eager_model = _models(seed, dtype)
    opt_c, opt_e = make_optimizer(compiled_model.parameters()), make_optimizer(eager_model.parameters())
    gen = torch.Generator().manual_seed(seed + 1)
    data = [(torch.randn(16, 6, generator=gen).to(dtype), torch.randn(16, 3, generator=gen).to(dtype))
            for _ in range(steps)]

    if whole_step:
        @torch.compile
        def compiled_step(x, y):
            opt_c.zero_grad()
            loss = _loss(compiled_model, x, y)
            loss.backward()
            opt_c.step()
            return loss
    else:
        compiled_opt_step = torch.compile(opt_c.step)

        def compiled_step(x, y):
            opt_c.zero_grad()
            _loss(compiled_model, x, y).backward()
            compiled_opt_step()

    worst = 0.0
    warm = 0
    for i, (x, y) in enumerate(data):
        if i == 2:
            warm = counters["frames"]["total"]
        torch.manual_seed(seed + 2 + i)  # states drawn at the first step (randn()) draw alike
        compiled_step(x, y)
        torch.manual_seed(seed + 2 + i)
        opt_e.zero_grad()
        _loss(eager_model, x, y).backward()
        opt_e.step()
        worst = max(worst, _rel_error(compiled_model, eager_model))
    return CompiledRun(
        max_rel_error=worst,
        frames=counters["frames"]["total"],
        frames_after_warmup=counters["frames"]["total"] - warm,
        graph_breaks=sum(counters["graph_break"].values()),
        graphs=counters["stats"]["unique_graphs"],
    )
