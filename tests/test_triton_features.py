"""Triton backend behaviour beyond equivalence: launches, precision options, state, fallbacks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import optdsl
from triton_harness import DEVICE, Case, count_launches, kernels_of, make_params, relative_errors, run_both, two_groups

GPT_LIKE_SHAPES = [(50, 8), (16, 8)] + [(8,), (8,), (8, 24), (24,), (8, 8), (8,), (8,), (8,), (8, 32), (32,), (32, 8), (8,)] * 12
GPT_LIKE_SHAPES += [(8,), (8,)]


def _grads(params, seed=1):
    gen = torch.Generator().manual_seed(seed)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen).to(device=p.device, dtype=p.dtype)


def test_a_model_of_150_tensors_takes_one_launch_per_step():
    assert len(GPT_LIKE_SHAPES) == 148
    cls = optdsl.load("adamw", backend="triton")
    params = make_params(GPT_LIKE_SHAPES)
    opt = cls(params)
    with count_launches(cls) as launches:
        for _ in range(3):
            _grads(params)
            opt.step()
    assert launches == ["_adamw_kernel"] * 3


def test_launches_per_step_follow_the_plan_not_the_tensor_count():
    """A rule with a whole-tensor reduction: one launch to accumulate, one to update, for 148 tensors."""
    source = "optimizer Normed\nhyper lr = 1e-3 in [0, inf)\np = p - lr * g / (norm(g) + 1e-8)\n"
    cls = optdsl.load(source=source, backend="triton")
    params = make_params(GPT_LIKE_SHAPES)
    opt = cls([{"params": params[:74]}, {"params": params[74:], "lr": 1e-2}])
    with count_launches(cls) as launches:
        _grads(params)
        opt.step()
    assert len(kernels_of(cls)) == 2
    assert len(launches) == 2 * 2  # two launches per param group


def test_stochastic_rounding_is_unbiased_where_nearest_rounding_stalls():
    """Updates of 1/8 of a bf16 ulp: nearest rounding never moves, stochastic rounding moves on average."""
    cls = optdsl.load("sgd", backend="triton")
    results = {}
    for sr, seed in ((False, 0), (True, 0), (True, 0), (True, 1)):
        p = torch.ones(4096, dtype=torch.bfloat16, device=DEVICE, requires_grad=True)
        opt = cls([p], lr=2**-10, stochastic_rounding=sr, rounding_seed=seed)
        for _ in range(16):
            p.grad = torch.ones_like(p)
            opt.step()
        results.setdefault((sr, seed), []).append(p.detach().float().cpu())
    assert torch.equal(results[(False, 0)][0], torch.ones(4096))
    mean = results[(True, 0)][0].mean().item()
    assert abs(mean - (1 - 16 * 2**-10)) < 2e-3, mean  # expected 0.984375; the sd of the mean is ~2e-4
    assert torch.equal(results[(True, 0)][0], results[(True, 0)][1])  # same seed, same bits
    assert not torch.equal(results[(True, 0)][0], results[(True, 1)][0])


def test_bf16_states_stay_within_bf16_rounding():
    """state_dtype=bf16 (fp32 math, bf16 storage) against fp32 states, bounded by torch's own bf16 drift."""
    case = Case("adamw", second={"lr": 3e-3})
    tri, ref = optdsl.load("adamw", backend="triton"), optdsl.load("adamw")
    ours, exact = run_both(lambda ps: tri(two_groups(ps, case), state_dtype=torch.bfloat16),
                           lambda ps: ref(two_groups(ps, case)), steps=20, dtype=torch.bfloat16)
    theirs, _ = run_both(lambda ps: ref(two_groups(ps, case), state_dtype=torch.bfloat16),
                         lambda ps: ref(two_groups(ps, case)), steps=20, dtype=torch.bfloat16)
    drift = relative_errors(theirs, exact).max().item()
    err = relative_errors(ours, exact).max().item()
    assert err <= max(2 * drift, 2**-7), (err, drift)


@pytest.mark.parametrize("direction", ["triton_to_torch", "torch_to_triton"])
def test_state_dict_moves_between_backends(direction):
    tri, ref = optdsl.load("nadam", backend="triton"), optdsl.load("nadam")
    first, second = (tri, ref) if direction == "triton_to_torch" else (ref, tri)
    straight = make_params()
    opt = first(straight, lr=1e-2)
    split = [p.detach().clone().requires_grad_(True) for p in straight]
    opt_a = first(split, lr=1e-2)
    for step in range(10):
        if step == 5:
            opt_b = second(split, lr=1e-2)
            opt_b.load_state_dict(opt_a.state_dict())
            opt_a = opt_b
        _grads(straight, seed=step)
        _grads(split, seed=step)
        opt.step()
        opt_a.step()
    assert relative_errors(split, straight).max().item() <= 1e-6
    assert all(opt_a.state[p]["m"].dtype == torch.float32 for p in split)


def test_bf16_params_keep_fp32_states_through_state_dict():
    cls = optdsl.load("adamw", backend="triton")
    params = make_params(dtype=torch.bfloat16)
    opt = cls(params)
    _grads(params)
    opt.step()
    again = cls(params)
    again.load_state_dict(opt.state_dict())
    assert all(again.state[p]["v"].dtype == torch.float32 for p in params)


def test_tensors_the_kernels_cannot_take_run_the_torch_code():
    """float64 and non-contiguous parameters go through the torch code of the same module."""
    tri, ref = optdsl.load("adamw", backend="triton"), optdsl.load("adamw")
    gen = torch.Generator().manual_seed(0)
    base = [torch.randn(5, 3, generator=gen).to(DEVICE), torch.randn(4, 6, generator=gen).to(DEVICE),
            torch.randn(7, generator=gen).to(DEVICE, torch.float64)]

    def make():
        ps = [base[0].clone().t().requires_grad_(True), base[1].clone().requires_grad_(True),
              base[2].clone().requires_grad_(True)]
        assert not ps[0].is_contiguous()
        return ps

    ours, theirs = make(), make()
    opt_ours, opt_theirs = tri(ours), ref(theirs)
    with count_launches(tri) as launches:
        for step in range(5):
            _grads(ours, step)
            _grads(theirs, step)
            opt_ours.step()
            opt_theirs.step()
    assert len(launches) == 5  # the contiguous fp32 tensor only
    assert relative_errors(ours, theirs).max().item() <= 1e-6


def test_capturable_reads_a_tensor_lr():
    """With capturable=True a tensor lr is read on the device at each step (a scheduler may fill_ it)."""
    tri, ref = optdsl.load("adamw", backend="triton"), optdsl.load("adamw")
    lr = torch.tensor(1e-3, device=DEVICE)
    ours, theirs = make_params(), make_params()
    opt_ours, opt_theirs = tri(ours, lr=lr, capturable=True), ref(theirs, lr=1e-3)
    for step in range(5):
        _grads(ours, step)
        _grads(theirs, step)
        opt_ours.step()
        opt_theirs.step()
    assert relative_errors(ours, theirs).max().item() <= 1e-6
    assert all(opt_ours.state[p]["step"].device == p.device for p in ours)
    lr.fill_(0.0)
    before = [p.detach().clone() for p in ours]
    _grads(ours, 9)
    opt_ours.step()
    assert all(torch.equal(a, b) for a, b in zip(ours, before))


def test_cpu_tensors_without_the_interpreter_run_the_torch_code(tmp_path):
    """backend='auto' on a machine without a GPU: the same module, the torch code, no kernel launched."""
    script = textwrap.dedent(
        """
        import torch, optdsl
        auto, ref = optdsl.load("adamw", backend="auto"), optdsl.load("adamw")
        import sys
        module = sys.modules[auto.__module__]
        for kernel in module._KERNELS:
            kernel.run = None  # a launch would fail
        a = [torch.randn(4, 3, requires_grad=True)]
        b = [a[0].detach().clone().requires_grad_(True)]
        oa, ob = auto(a), ref(b)
        for _ in range(3):
            g = torch.randn(4, 3)
            a[0].grad, b[0].grad = g.clone(), g.clone()
            oa.step(); ob.step()
        assert torch.equal(a[0], b[0]), (a[0] - b[0]).abs().max()
        print("torch code ran")
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["OPTDSL_CACHE_DIR"] = str(tmp_path)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "torch code ran" in out.stdout


def test_step_inside_torch_compile_runs_the_kernels_eagerly():
    """The launch is excluded from tracing (torch.compiler.disable): correct results, one graph break there.
    docs/triton.md says why it is not a triton_op."""
    tri, ref = optdsl.load("adamw", backend="triton"), optdsl.load("adamw")
    ours, theirs = make_params([(5, 3), (7,)]), make_params([(5, 3), (7,)])
    opt_ours, opt_theirs = tri(ours), ref(theirs)

    @torch.compile(backend="eager")
    def train_step(params, opt):
        loss = sum((p * p).sum() for p in params)
        loss.backward()
        opt.step()
        opt.zero_grad()

    for _ in range(3):
        train_step(ours, opt_ours)
        sum((p * p).sum() for p in theirs).backward()
        opt_theirs.step()
        opt_theirs.zero_grad()
    assert relative_errors(ours, theirs).max().item() <= 1e-6


def test_empty_and_zero_dim_parameters():
    """numel 0 and 0-d parameters: scalar states still advance, as in the torch backend."""
    tri, ref = optdsl.load("nadam", backend="triton"), optdsl.load("nadam")
    ours, theirs = make_params([(0,), (), (3, 0), (5,)]), make_params([(0,), (), (3, 0), (5,)])
    opt_ours, opt_theirs = tri(ours), ref(theirs)
    for step in range(3):
        _grads(ours, step)
        _grads(theirs, step)
        opt_ours.step()
        opt_theirs.step()
    assert relative_errors(ours, theirs).max().item() <= 1e-6
    for a, b in zip(ours, theirs):
        assert torch.allclose(opt_ours.state[a]["mu_product"], opt_theirs.state[b]["mu_product"].to(a.device))


def test_unaligned_views_into_a_flat_buffer():
    """Parameters that are views at odd offsets of one buffer (as flat-parameter schemes make):
    the tables say they are not 16-byte aligned, and the kernels must not assume it."""
    tri, ref = optdsl.load("adamw", backend="triton"), optdsl.load("adamw")

    def views():
        flat = torch.randn(1 + 7 + 33 + 1025, generator=torch.Generator().manual_seed(0)).to(DEVICE)
        return [flat[1:8].requires_grad_(), flat[8:41].view(3, 11).requires_grad_(), flat[41:].requires_grad_()]

    ours, theirs = views(), views()
    assert any(p.data_ptr() % 16 for p in ours)
    opt_ours, opt_theirs = tri(ours), ref(theirs)
    for step in range(3):
        _grads(ours, step)
        _grads(theirs, step)
        opt_ours.step()
        opt_theirs.step()
    assert not any(t.aligned for t in opt_ours._fused_tables.values())
    assert relative_errors(ours, theirs).max().item() <= 1e-6
