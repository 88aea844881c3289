"""Helpers for the Triton backend tests: device, reference runs, launch and compile counts.

On a machine without CUDA the kernels run on CPU tensors under the Triton
interpreter (tests/conftest.py sets TRITON_INTERPRET=1); with CUDA they run
compiled, on CUDA tensors. Either way the reference is the torch backend run
on identical parameters and gradients.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

import optdsl
from optdsl.compiler import lower, optimize, resolve
from optdsl.ir.nodes import postorder
from optdsl.ir.ops import Kind

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SHAPES = [(1,), (7,), (1023,), (4097,), (64, 33), (3, 5, 7)]


@dataclass(frozen=True)
class Case:
    """A spec with the hypers of its two param groups (the second overrides the first)."""

    spec: str
    first: dict = field(default_factory=dict)
    second: dict = field(default_factory=dict)
    load: dict = field(default_factory=dict)  # extra optdsl.load keywords (e.g. variants, later)

    @property
    def id(self) -> str:
        extra = ",".join(f"{k}={v}" for k, v in {**self.load}.items())
        return f"{self.spec}[{extra}]" if extra else self.spec


def load_pair(case: Case):
    """(the Triton class, the torch class) for a case."""
    return optdsl.load(case.spec, backend="triton", **case.load), optdsl.load(case.spec, **case.load)


def has_jumps(case: Case) -> bool:
    """Whether the rule is discontinuous in per-element values (a sign, or a comparison of tensors
    or per-tensor scalars): it jumps where the argument is within rounding of the threshold."""
    rule = optimize(lower(resolve(case.spec), tuple(case.load.get("variants", ())))[0])
    jumps = {"sign", "lt", "le", "gt", "ge", "eq", "ne"}
    return any(n.op in jumps and n.kind >= Kind.SCALAR for n in postorder(rule.roots()))


def rounds_to_bf16(case: Case) -> bool:
    """Whether the rule rounds a value to bfloat16 mid-step (newton_schulz with bf16 on): an input
    that differs by fp32 rounding may round to the neighbouring bf16 value there."""
    rule = optimize(lower(resolve(case.spec), tuple(case.load.get("variants", ())))[0])
    return any(n.op == "newton_schulz" for n in postorder(rule.roots()))


def make_params(shapes=SHAPES, dtype=torch.float32, device=DEVICE, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen).to(device=device, dtype=dtype).requires_grad_(True) for s in shapes]


def two_groups(params: list[torch.Tensor], case: Case) -> list[dict]:
    half = len(params) // 2
    return [{"params": params[:half], **case.first}, {"params": params[half:], **case.first, **case.second}]


def run_both(
    make_ours: Callable[[list], torch.optim.Optimizer],
    make_ref: Callable[[list], torch.optim.Optimizer],
    steps: int,
    shapes=SHAPES,
    dtype: torch.dtype = torch.float32,
    device: str = DEVICE,
    seed: int = 0,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Step both optimizers on identical parameters and gradients; returns both parameter lists."""
    ours = make_params(shapes, dtype, device, seed)
    ref = [p.detach().clone().requires_grad_(True) for p in ours]
    opt_ours, opt_ref = make_ours(ours), make_ref(ref)
    gen = torch.Generator().manual_seed(seed + 1)
    for step in range(steps):
        for a, b in zip(ours, ref):
            grad = torch.randn(a.shape, generator=gen).to(device=device, dtype=dtype)
            a.grad, b.grad = grad.clone(), grad.clone()
        for opt in (opt_ours, opt_ref):  # the same random draws for both (randn() initializers)
            with torch.random.fork_rng(devices=[torch.device(device)] if device != "cpu" else []):
                torch.manual_seed(seed + 1000 + step)
                opt.step()
    return ours, ref


def relative_errors(ours: list[torch.Tensor], ref: list[torch.Tensor]) -> torch.Tensor:
    """|ours - ref| per element, over the largest |ref| of its tensor (all tensors, flattened)."""
    out = []
    for a, b in zip(ours, ref):
        a64, b64 = a.detach().double().cpu(), b.detach().double().cpu()
        scale = max(b64.abs().max().item(), 1e-12) if b64.numel() else 1.0
        out.append(((a64 - b64).abs() / scale).reshape(-1))
    return torch.cat(out)


def kernels_of(cls) -> tuple:
    """The Triton kernels of a generated optimizer class's module, in launch order."""
    import sys

    return sys.modules[cls.__module__]._KERNELS


@contextlib.contextmanager
def count_launches(cls):
    """Count the kernel launches of a generated optimizer class while the block runs."""
    counts: list[str] = []
    kernels = kernels_of(cls)
    originals = [k.run for k in kernels]

    def counting(kernel, run):
        def wrapper(*args, **kwargs):
            counts.append(kernel.__name__)
            return run(*args, **kwargs)

        return wrapper

    for kernel, run in zip(kernels, originals):
        kernel.run = counting(kernel, run)
    try:
        yield counts
    finally:
        for kernel in kernels:
            del kernel.run


def compiled_count(kernel) -> int:
    """How many binaries Triton compiled for a kernel (every specialization counts)."""
    caches = getattr(kernel, "device_caches", None)
    if caches is not None:
        return sum(len(entry[0]) for entry in caches.values())
    return sum(len(c) for c in kernel.cache.values())  # older triton
