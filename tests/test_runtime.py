"""The generated optimizer as a torch.optim.Optimizer: state_dict, schedulers,
param groups, dtypes, errors, and the compile cache."""

from __future__ import annotations

import copy
import io
import os
import subprocess
import sys

import pytest
import torch

import optdsl
from harness import make_params, max_relative_error


def _step_with_grads(opt, params, seed, steps=5):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen).to(p.dtype)
        opt.step()


def test_state_dict_round_trip_keeps_state_dtypes_and_loads_weights_only():
    cls = optdsl.load("adamw")
    params = make_params(torch.bfloat16)
    opt = cls(params, lr=1e-2)
    _step_with_grads(opt, params, seed=1)
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)

    clone = [p.detach().clone().requires_grad_(True) for p in params]
    restored = cls(clone, lr=1e-2)
    restored.load_state_dict(saved)
    for p in clone:
        assert restored.state[p]["m"].dtype == torch.float32, "torch would have cast it to bf16"
        assert restored.state[p]["v"].dtype == torch.float32
    _step_with_grads(opt, params, seed=2)
    _step_with_grads(restored, clone, seed=2)
    for a, b in zip(params, clone):
        assert torch.equal(a, b)


def test_state_dict_has_readable_keys_and_step_count():
    cls = optdsl.load("adamw")
    params = make_params()
    opt = cls(params)
    _step_with_grads(opt, params, seed=0, steps=3)
    sd = opt.state_dict()
    assert set(sd["state"][0]) == {"step", "m", "v"}
    assert float(sd["state"][0]["step"]) == 3.0
    assert sd["param_groups"][0]["betas"] == (0.9, 0.999)
    assert sd["param_groups"][0]["state_dtype"] is None


@pytest.mark.parametrize(
    "make_sched",
    [
        lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=1e-2, total_steps=60),
        lambda o: torch.optim.lr_scheduler.CyclicLR(o, base_lr=1e-4, max_lr=1e-2, step_size_up=7, cycle_momentum=True),
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=20),
        lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=5, gamma=0.5),
    ],
    ids=["OneCycleLR", "CyclicLR", "CosineAnnealingLR", "StepLR"],
)
@pytest.mark.parametrize("spec,ref", [("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)], ids=["adamw", "sgd"])
def test_lr_schedulers_work_unchanged(make_sched, spec, ref):
    """Schedulers (incl. OneCycleLR / CyclicLR cycling betas or momentum) drive ours exactly as torch's."""
    cls = optdsl.load(spec)
    kw = {"lr": 1e-3} if spec == "adamw" else {"lr": 1e-3, "momentum": 0.9}
    ours = make_params()
    theirs = [p.detach().clone().requires_grad_(True) for p in ours]
    opt_ours, opt_theirs = cls(ours, **kw), ref(theirs, **kw)
    sched_ours, sched_theirs = make_sched(opt_ours), make_sched(opt_theirs)
    gen = torch.Generator().manual_seed(0)
    lrs = set()
    for _ in range(60):
        for a, b in zip(ours, theirs):
            a.grad = torch.randn(a.shape, generator=gen)
            b.grad = a.grad.clone()
        opt_ours.step()
        opt_theirs.step()
        sched_ours.step()
        sched_theirs.step()
        lrs.add(opt_ours.param_groups[0]["lr"])
        key = "betas" if spec == "adamw" else "momentum"
        assert opt_ours.param_groups[0][key] == opt_theirs.param_groups[0][key]
    assert len(lrs) > 3, "the scheduler changed the learning rate"
    assert max_relative_error(ours, theirs) <= 1e-6


def test_betas_keywords_and_group_overrides():
    cls = optdsl.load("adamw")
    a, b = make_params()[:2]
    opt = cls([{"params": [a]}, {"params": [b], "beta1": 0.5}], beta2=0.98)
    assert opt.param_groups[0]["betas"] == (0.9, 0.98)
    assert opt.param_groups[1]["betas"] == (0.5, 0.98)
    assert "beta1" not in opt.param_groups[1]


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"lr": -1.0}, "Invalid lr"),
        ({"betas": (1.0, 0.999)}, "Invalid beta1"),
        ({"eps": -1e-8}, "Invalid eps"),
        ({"eps_style": "nope"}, "Invalid eps_style"),
        ({"state_dtype": torch.int32}, "Invalid state_dtype"),
        ({"betas": (0.9,)}, "betas must have 2 values"),
    ],
)
def test_hyper_ranges_are_checked(kwargs, message):
    cls = optdsl.load("adamw")
    with pytest.raises(ValueError, match=message):
        cls(make_params()[:1], **kwargs)


def test_added_param_group_is_checked_too():
    cls = optdsl.load("adamw")
    params = make_params()
    opt = cls(params[:1])
    with pytest.raises(ValueError, match="Invalid weight_decay"):
        opt.add_param_group({"params": params[1:2], "weight_decay": -0.1})


def test_params_without_grad_are_skipped():
    cls = optdsl.load("adamw")
    a, b = make_params()[:2]
    opt = cls([a, b])
    a.grad = torch.ones_like(a)
    before = b.detach().clone()
    opt.step()
    assert b not in opt.state or not opt.state[b]
    assert torch.equal(b, before)
    assert float(opt.state[a]["step"]) == 1.0


def test_sparse_gradients_get_a_clear_error():
    cls = optdsl.load("adamw")
    p = torch.nn.Parameter(torch.zeros(4, 3))
    opt = cls([p])
    p.grad = torch.zeros(4, 3).to_sparse()
    with pytest.raises(RuntimeError, match="AdamW does not support sparse gradients"):
        opt.step()


def test_mixed_dtypes_in_one_group_each_match_their_own_reference():
    cls = optdsl.load("adamw")
    params = [torch.randn(5, dtype=d, requires_grad=True) for d in (torch.float32, torch.float64, torch.bfloat16)]
    refs = [p.detach().clone().double().requires_grad_(True) for p in params]
    opt, ref = cls(params, lr=1e-2), torch.optim.AdamW(refs, lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        for p, r in zip(params, refs):
            grad = torch.randn(5, generator=gen, dtype=torch.float64)
            p.grad, r.grad = grad.to(p.dtype), grad.to(p.dtype).double()
        opt.step()
        ref.step()
        with torch.no_grad():
            for p, r in zip(params, refs):
                r.copy_(r.to(p.dtype).double())
    assert [opt.state[p]["m"].dtype for p in params] == [torch.float32, torch.float64, torch.float32]
    assert max_relative_error(params[:2], refs[:2]) < 1e-6
    assert max_relative_error(params[2:], refs[2:]) < 2**-6


def test_closure_and_zero_grad_and_deepcopy():
    cls = optdsl.load("lion")
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = cls([w], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == pytest.approx(5.0)
    assert torch.allclose(w.detach(), torch.tensor([0.9, -1.9]))
    twin = copy.deepcopy(opt)
    assert twin.state_dict()["state"][0]["m"].shape == (2,)


def test_second_load_in_a_new_process_uses_the_cache_without_sympy_or_lark(tmp_path):
    code = (
        "import sys, optdsl\n"
        "cls = optdsl.load('rmsprop')\n"
        "print(cls.__name__, 'sympy' in sys.modules, 'lark' in sys.modules)\n"
    )
    env = {**os.environ, "OPTDSL_CACHE_DIR": str(tmp_path)}
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert first.stdout.split() == ["RMSprop", "True", "True"]
    assert second.stdout.split() == ["RMSprop", "False", "False"]
    files = list(tmp_path.rglob("*.py"))
    assert len(files) == 1 and files[0].read_text().startswith('"""RMSprop')


def test_compiled_module_is_deterministic():
    assert optdsl.compile_spec("radam") == optdsl.compile_spec("radam")


@pytest.mark.parametrize(
    "body",
    ["m = where(t == max(m, g), g, 0.9 * m + g)", "m = lerp(t == 1, g, 0.9 * m + g)", "m = lerp(0.5, g, m)"],
)
def test_host_values_on_the_left_of_tensor_ops(body):
    """Found by the search: a number where torch wants a tensor (torch.eq(float, T), torch.lerp(float, ...))."""
    cls = optdsl.load(source=f"optimizer X\nstate m = zeros\n{body}\nu = m\np = p - 0.01 * u\n")
    results = []
    for foreach in (True, False):
        p = torch.nn.Parameter(torch.arange(5.0))
        opt = cls([p], foreach=foreach)
        for step in range(3):
            p.grad = torch.linspace(-1, 1, 5) * (step + 1)
            opt.step()
        results.append(p.detach().clone())
    assert torch.equal(results[0], results[1]) and torch.isfinite(results[0]).all()


def test_initializers_read_t_as_one_and_g_as_the_rule_does():
    cls = optdsl.load(source="optimizer I\nstate a = g * t\nu = a\np = p - 0.1 * u\n")
    p = torch.nn.Parameter(torch.zeros(3))
    opt = cls([p], maximize=True)
    p.grad = torch.tensor([1.0, -2.0, 3.0])
    opt.step()
    assert torch.equal(opt.state[p]["a"], torch.tensor([-1.0, 2.0, -3.0]))


def test_foreach_default_follows_torch_per_tensor_on_cpu(monkeypatch):
    """foreach=None runs one tensor at a time on CPU (faster there, as torch does); True forces foreach."""
    cls = optdsl.load("adamw")
    calls = []
    real = torch._foreach_lerp_
    monkeypatch.setattr(torch, "_foreach_lerp_", lambda *a, **k: calls.append(1) or real(*a, **k))
    for foreach, expected in ((None, 0), (False, 0), (True, 1)):
        calls.clear()
        params = make_params()
        opt = cls(params, foreach=foreach)
        _step_with_grads(opt, params, seed=0, steps=1)
        assert len(calls) == expected, foreach
