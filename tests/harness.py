"""Run a generated optimizer and an independent reference side by side.

Both get the same parameters (several shapes, two param groups) and the same
gradient stream; gradients are cloned because several references modify
``p.grad`` in place.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

SHAPES = [(7,), (64, 33), (3, 5, 7), (1,), (129,)]


def make_params(dtype=torch.float32, seed: int = 0, shapes=SHAPES) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=torch.float32).to(dtype).requires_grad_(True) for s in shapes]


def groups(params: list[torch.Tensor], second: dict) -> list[dict]:
    """Two param groups: the first with the defaults, the second with ``second``'s overrides."""
    return [{"params": params[:2]}, {"params": params[2:], **second}]


def run_pair(
    make_ours: Callable[[list], torch.optim.Optimizer],
    make_ref: Callable[[list], torch.optim.Optimizer],
    steps: int = 200,
    dtype: torch.dtype = torch.float32,
    ref_dtype: torch.dtype | None = None,
    round_ref_to: torch.dtype | None = None,
    seed: int = 0,
    grad_scale: float = 1.0,
    sparse_grads: bool = False,
    shapes=SHAPES,
    grad_fn: Callable | None = None,
    between: Callable | None = None,
    ref_shapes=None,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Step both optimizers ``steps`` times on identical gradients; returns both parameter lists.

    ``ref_dtype`` runs the reference in another dtype (e.g. fp32 beside bf16 params);
    ``round_ref_to`` rounds the reference's parameters to that dtype after each step.
    ``grad_fn(index, reference parameter, random gradient)`` may shape each gradient (both
    sides get the same one); ``between(step, ours, reference)`` runs after each step.
    ``ref_shapes`` gives the reference each tensor reshaped (the same values and gradients in
    another view, e.g. a 3-D tensor as the 4-D one a reference treats the same way).
    """
    ref_dtype = ref_dtype or dtype
    ours = make_params(dtype, seed, shapes)
    ref = [p.detach().clone().to(ref_dtype).requires_grad_(True) for p in ours]
    if ref_shapes is not None:
        ref = [p.detach().reshape(s).requires_grad_(True) for p, s in zip(ref, ref_shapes)]
    opt_ours = make_ours(ours)
    opt_ref = make_ref(ref)
    gen = torch.Generator().manual_seed(seed + 1)
    for step in range(steps):
        for i, (a, b) in enumerate(zip(ours, ref)):
            grad = torch.randn(a.shape, generator=gen) * grad_scale
            if sparse_grads:
                grad = grad * (torch.rand(a.shape, generator=gen) < 0.5)
            if grad_fn is not None:
                grad = grad_fn(i, b.detach().float().reshape(a.shape), grad)
            grad = grad.to(dtype)
            a.grad = grad.clone()
            b.grad = grad.to(ref_dtype).reshape(b.shape).clone()
        opt_ours.step()
        opt_ref.step()
        if between is not None:
            between(step, opt_ours, opt_ref)
        if round_ref_to is not None:
            with torch.no_grad():
                for b in ref:
                    b.copy_(b.to(round_ref_to).to(ref_dtype))
    return ours, ref


def max_relative_error(ours: list[torch.Tensor], ref: list[torch.Tensor]) -> float:
    """max |ours - ref| / max |ref|, the worst over tensors."""
    worst = 0.0
    for a, b in zip(ours, ref):
        a64, b64 = a.detach().double().reshape(b.shape), b.detach().double()
        scale = max(b64.abs().max().item(), 1e-12)
        worst = max(worst, (a64 - b64).abs().max().item() / scale)
    return worst
