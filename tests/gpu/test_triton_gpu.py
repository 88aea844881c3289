"""The Triton backend on a CUDA device: compiled kernels, CUDA graphs, compile counts.

Marked ``gpu``: deselected (with a line in the summary) where there is no
CUDA device. ``bench/gpu_check.sh`` runs these on the GPU machine.
"""

from __future__ import annotations

import pytest
import torch

import optdsl
from triton_harness import (
    Case, compiled_count, count_launches, kernels_of, load_pair, make_params, relative_errors, run_both, two_groups,
    has_jumps,
)

pytestmark = pytest.mark.gpu

SHAPES = [(1,), (7,), (1023,), (4097,), (64, 33), (3, 5, 7), (300, 1000), (1 << 20,)]  # big ones span many chunks
STEPS = 50
SPECS = optdsl.builtin_specs()


def _case(spec: str) -> Case:
    from test_triton_equivalence import builtin_case

    return builtin_case(spec)


@pytest.mark.parametrize("capturable", [False, True], ids=["eager", "capturable"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("spec", SPECS)
def test_spec_matrix_on_cuda(spec, dtype, capturable):
    case = _case(spec)
    triton_cls, torch_cls = load_pair(case)
    ours, ref = run_both(
        lambda ps: triton_cls(two_groups(ps, case), capturable=capturable),
        lambda ps: torch_cls(two_groups(ps, case)),
        steps=STEPS, shapes=SHAPES, dtype=dtype, device="cuda",
    )
    errors = relative_errors(ours, ref)
    if dtype == torch.float32:
        tol = 2e-6 if capturable else 1e-6  # capturable: bias corrections in fp32 in the kernel
        off = int((errors > tol).sum())
        allowed = max(3, int(0.002 * errors.numel())) if has_jumps(case) else 0
        assert off <= allowed, f"{spec}: {off} elements off, worst {errors.max().item():.3g}"
    else:
        ulp = 2**-8 if dtype == torch.bfloat16 else 2**-11
        assert errors.max().item() <= 4 * ulp, f"{spec}: {errors.max().item():.3g}"


@pytest.mark.parametrize("spec", ["adamw", "nadam", "sgd"])
def test_cuda_graph_replay_equals_eager(spec):
    """capturable=True: capture one step, replay it on new gradients, against the same optimizer run eagerly.
    A tensor lr changed in place between replays is read by the graph."""
    cls = optdsl.load(spec, backend="triton")
    graphed = make_params(SHAPES, device="cuda")
    eager = [p.detach().clone().requires_grad_(True) for p in graphed]
    lr_g = torch.tensor(1e-3, device="cuda")
    lr_e = torch.tensor(1e-3, device="cuda")
    opt_g = cls(graphed, lr=lr_g, capturable=True)
    opt_e = cls(eager, lr=lr_e, capturable=True)
    gen = torch.Generator(device="cuda").manual_seed(0)
    grads = [[torch.randn(p.shape, device="cuda", generator=gen) for p in graphed] for _ in range(13)]
    for p in graphed:
        p.grad = torch.zeros_like(p)

    def eager_step(i):
        for p, g in zip(eager, grads[i]):
            p.grad = g.clone()
        opt_e.step()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for i in range(3):  # warm-up: state, tables and kernels exist before capture
            for p, g in zip(graphed, grads[i]):
                p.grad.copy_(g)
            opt_g.step()
            eager_step(i)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        opt_g.step()
    for i in range(3, 13):
        if i == 8:
            lr_g.fill_(3e-4)
            lr_e.fill_(3e-4)
        for p, g in zip(graphed, grads[i]):
            p.grad.copy_(g)
        graph.replay()
        eager_step(i)
    torch.cuda.synchronize()
    assert relative_errors(graphed, eager).max().item() == 0.0
    assert float(opt_g.state[graphed[0]]["step"]) == 13


def test_compilations_do_not_grow_when_hypers_change():
    """lr, betas, eps, weight decay, the step and the bucket size are runtime values: no recompilation."""
    cls = optdsl.load("adamw", backend="triton")
    params = make_params(SHAPES, device="cuda")
    opt = cls(params)

    def step():
        for p in params:
            p.grad = torch.randn_like(p)
        opt.step()

    step()
    step()
    torch.cuda.synchronize()
    counts = [compiled_count(k) for k in kernels_of(cls)]
    for lr, betas, eps, wd in [(1e-2, (0.8, 0.9), 1e-6, 0.0), (3e-4, (0.95, 0.999), 1e-8, 0.1), (0.1, (0.0, 0.5), 0.0, 1.0)]:
        for group in opt.param_groups:
            group.update(lr=lr, betas=betas, eps=eps, weight_decay=wd)
        step()
    opt.add_param_group({"params": make_params([(5, 5), (9,), (2, 3, 4)], device="cuda", seed=3), "lr": 0.5})
    for p in opt.param_groups[-1]["params"]:
        p.grad = torch.randn_like(p)
    step()
    torch.cuda.synchronize()
    assert [compiled_count(k) for k in kernels_of(cls)] == counts


def test_one_launch_per_group_on_cuda():
    cls = optdsl.load("adamw", backend="triton")
    params = make_params([(768, 768)] * 100 + [(768,)] * 48, device="cuda")
    opt = cls(params)
    for p in params:
        p.grad = torch.randn_like(p)
    opt.step()
    with count_launches(cls) as launches:
        opt.step()
    assert launches == ["_adamw_kernel"]
