"""The main job on built-in defaults: compile a spec, train beside torch.optim.AdamW.

A small MLP classifies a seeded synthetic dataset; both optimizers start from
the same weights and see the same batches, so their losses should track each
other (exactly, for ``adamw``) while the step times show the generated code's
speed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class DemoResult:
    spec: str
    losses: list[tuple[int, float, float]]  # (step, generated, torch AdamW)
    ms_generated: float
    ms_torch: float


def _problem(seed: int, width: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2048, 32, generator=g)
    teacher = torch.randn(32, 10, generator=g)
    y = (x @ teacher + 0.5 * torch.randn(2048, 10, generator=g)).argmax(dim=1)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(32, width), torch.nn.GELU(), torch.nn.Linear(width, width), torch.nn.GELU(), torch.nn.Linear(width, 10)
    )
    return x, y, model


def run_demo(spec: str = "adamw", steps: int = 200, lr: float = 1e-3, seed: int = 0, width: int = 256,
             log: Callable[[str], None] = print) -> DemoResult:
    import copy

    import torch

    from .api import load

    Optimizer = load(spec)
    x, y, model = _problem(seed, width)
    twin = copy.deepcopy(model)
    ours = Optimizer(model.parameters(), lr=lr)
    theirs = torch.optim.AdamW(twin.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    batches = torch.Generator().manual_seed(seed + 1)
    times = {"ours": 0.0, "theirs": 0.0}
    losses = []
    log(f"training a {sum(p.numel() for p in model.parameters()):,}-parameter MLP for {steps} steps, lr {lr}")
    log(f"{'step':>6}  {Optimizer.__name__ + ' (optdsl)':>22}  {'torch.optim.AdamW':>20}")
    for step in range(1, steps + 1):
        idx = torch.randint(0, x.shape[0], (128,), generator=batches)
        row = []
        for net, opt, key in ((model, ours, "ours"), (twin, theirs, "theirs")):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(x[idx]), y[idx])
            loss.backward()
            start = time.perf_counter()
            opt.step()
            times[key] += time.perf_counter() - start
            row.append(loss.item())
        losses.append((step, row[0], row[1]))
        if step == 1 or step % max(steps // 10, 1) == 0:
            log(f"{step:>6}  {row[0]:>22.5f}  {row[1]:>20.5f}")
    ms_ours, ms_theirs = 1e3 * times["ours"] / steps, 1e3 * times["theirs"] / steps
    log(f"optimizer step time: {ms_ours:.3f} ms (optdsl {spec}) vs {ms_theirs:.3f} ms (torch.optim.AdamW, default for-loop on CPU)")
    return DemoResult(spec, losses, ms_ours, ms_theirs)
