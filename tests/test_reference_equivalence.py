"""Generated optimizers against independent references over 200 steps.

fp32: max |ours - ref| <= 1e-6 relative to the parameter scale, for several
shapes and two param groups with different hypers. The references are
torch.optim (2.13) and lion-pytorch 0.2.5; where none exists (AdamW's
"hf" eps placement) an eager transcription of the named code is used.
"""

from __future__ import annotations

import math

import pytest
import torch

import optdsl
from harness import groups, max_relative_error, run_pair

FP32_TOL = 1e-6


def hf_adamw(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    """Eager transcription of Hugging Face transformers' AdamW (optimization.py, v4.x,
    correct_bias=True), also C-AdamW's non-foreach path without the mask: decay
    first, eps on the uncorrected sqrt(v), step lr * sqrt(bc2) / bc1."""

    class HFAdamW(torch.optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

        @torch.no_grad()
        def step(self):
            for group in self.param_groups:
                b1, b2 = group["betas"]
                for p in group["params"]:
                    st = self.state[p]
                    if not st:
                        st["step"], st["m"], st["v"] = 0, torch.zeros_like(p), torch.zeros_like(p)
                    st["step"] += 1
                    t = st["step"]
                    if group["weight_decay"] > 0:
                        p.add_(p, alpha=-group["lr"] * group["weight_decay"])
                    st["m"].mul_(b1).add_(p.grad, alpha=1 - b1)
                    st["v"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                    denom = st["v"].sqrt().add_(group["eps"])
                    step_size = group["lr"] * math.sqrt(1 - b2**t) / (1 - b1**t)
                    p.addcdiv_(st["m"], denom, value=-step_size)

    return HFAdamW(params)


def lion_ref(params, **kw):
    lion_pytorch = pytest.importorskip("lion_pytorch")
    return lion_pytorch.Lion(params, **kw)


# (spec, our kwargs, reference factory, reference kwargs, second group overrides)
CASES = [
    ("adamw", {}, torch.optim.AdamW, {}, {"lr": 3e-3, "weight_decay": 0.1}),
    ("adamw", {"lr": 1e-2, "betas": (0.8, 0.99), "eps": 1e-6}, torch.optim.AdamW,
     {"lr": 1e-2, "betas": (0.8, 0.99), "eps": 1e-6}, {"betas": (0.95, 0.9)}),
    ("adamw", {"maximize": True}, torch.optim.AdamW, {"maximize": True}, {"lr": 5e-3}),
    # eps placement alone: decay is checked against torch above, and torch's `p *= 1 - lr*wd`
    # and HF's `p -= lr*wd*p` round differently (fp32 cannot hold 1 - 1e-4 exactly), a
    # drift of ~2e-8 per step that is the references' disagreement, not the eps option's.
    ("adamw", {"eps_style": "hf", "eps": 1e-6, "weight_decay": 0.0}, hf_adamw, {"eps": 1e-6, "weight_decay": 0.0},
     {"lr": 2e-3, "betas": (0.8, 0.95)}),
    ("adam", {"weight_decay": 0.01}, torch.optim.Adam, {"weight_decay": 0.01}, {"lr": 3e-3}),
    ("amsgrad", {"weight_decay": 0.01}, torch.optim.Adam, {"weight_decay": 0.01, "amsgrad": True}, {"lr": 3e-3}),
    ("sgd", {"lr": 0.01}, torch.optim.SGD, {"lr": 0.01}, {"lr": 0.03}),
    ("sgd", {"lr": 0.01, "momentum": 0.9}, torch.optim.SGD, {"lr": 0.01, "momentum": 0.9}, {"momentum": 0.5}),
    ("sgd", {"lr": 0.01, "momentum": 0.9, "dampening": 0.3, "weight_decay": 1e-3}, torch.optim.SGD,
     {"lr": 0.01, "momentum": 0.9, "dampening": 0.3, "weight_decay": 1e-3}, {"lr": 0.02}),
    ("sgd", {"lr": 0.01, "momentum": 0.9, "nesterov": True}, torch.optim.SGD,
     {"lr": 0.01, "momentum": 0.9, "nesterov": True}, {"weight_decay": 0.01}),
    ("lion", {"lr": 1e-3, "weight_decay": 0.1}, lion_ref, {"lr": 1e-3, "weight_decay": 0.1}, {"lr": 3e-4}),
    ("rmsprop", {}, torch.optim.RMSprop, {}, {"lr": 3e-3}),
    ("rmsprop", {"centered": True, "momentum": 0.9, "weight_decay": 0.01}, torch.optim.RMSprop,
     {"centered": True, "momentum": 0.9, "weight_decay": 0.01}, {"alpha": 0.9}),
    ("adagrad", {"lr_decay": 0.01, "initial_accumulator_value": 0.1, "weight_decay": 0.01}, torch.optim.Adagrad,
     {"lr_decay": 0.01, "initial_accumulator_value": 0.1, "weight_decay": 0.01}, {"lr": 0.05}),
    ("radam", {"weight_decay": 0.01}, torch.optim.RAdam, {"weight_decay": 0.01}, {"lr": 3e-3}),
    ("radam", {"weight_decay": 0.01, "decoupled_weight_decay": True}, torch.optim.RAdam,
     {"weight_decay": 0.01, "decoupled_weight_decay": True}, {"lr": 3e-3}),
    ("nadam", {"weight_decay": 0.01}, torch.optim.NAdam, {"weight_decay": 0.01}, {"lr": 1e-3}),
]


def _ids(case):
    spec, ours, *_ = case
    extra = ",".join(f"{k}={v}" for k, v in ours.items())
    return f"{spec}[{extra}]" if extra else spec


@pytest.mark.parametrize("foreach", [True, False], ids=["foreach", "for-loop"])
@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_fp32_matches_reference(case, foreach):
    spec, our_kw, ref_factory, ref_kw, second = case
    cls = optdsl.load(spec)
    ours, ref = run_pair(
        lambda ps: cls(groups(ps, second), foreach=foreach, **our_kw),
        lambda ps: ref_factory(groups(ps, second), **ref_kw),
    )
    err = max_relative_error(ours, ref)
    assert err <= FP32_TOL, f"{spec}: max relative error {err:.3g}"


def test_parameters_really_move():
    """Guards the harness: a reference that did nothing would pass every test above."""
    cls = optdsl.load("adamw")
    ours, ref = run_pair(lambda ps: cls(ps), lambda ps: torch.optim.AdamW(ps), steps=20)
    start = [p.detach() for p in run_pair(lambda ps: cls(ps, lr=0.0), lambda ps: torch.optim.AdamW(ps, lr=0.0), steps=1)[0]]
    assert max_relative_error(ours, start) > 1e-3


BF16_CASES = [c for c in CASES if c[0] in ("adamw", "adam", "sgd", "lion", "rmsprop", "radam")][:8]


@pytest.mark.parametrize("case", BF16_CASES, ids=[_ids(c) for c in BF16_CASES])
def test_bf16_params_fp32_states_track_rounded_fp32_reference(case):
    """bf16 params, fp32 states (the default): math in fp32, parameters rounded to bf16.

    Against the fp32 reference rounded to bf16 after every step, the difference
    stays within a few bf16 ulps of the parameter scale (2^-8 relative per ulp).
    """
    spec, our_kw, ref_factory, ref_kw, second = case
    cls = optdsl.load(spec)
    ours, ref = run_pair(
        lambda ps: cls(groups(ps, second), **our_kw),
        lambda ps: ref_factory(groups(ps, second), **ref_kw),
        dtype=torch.bfloat16,
        ref_dtype=torch.float32,
        round_ref_to=torch.bfloat16,
    )
    for p in ours:
        assert p.dtype == torch.bfloat16
    err = max_relative_error(ours, ref)
    assert err <= 4 * 2**-8, f"{spec}: {err:.3g}"


@pytest.mark.parametrize("case", BF16_CASES[:5], ids=[_ids(c) for c in BF16_CASES[:5]])
def test_bf16_states_match_reference_run_in_bf16(case):
    """state_dtype equal to the bf16 parameter dtype, against the reference run on bf16 tensors.

    Two bf16 runs of one rule drift apart as their rounding errors random-walk, so
    "within bf16 rounding" is measured against the reference's own drift from exact
    math (the fp32 reference): ours must stay as close to the bf16 reference as that.
    """
    spec, our_kw, ref_factory, ref_kw, second = case
    cls = optdsl.load(spec)
    ours, ref = run_pair(
        lambda ps: cls(groups(ps, second), state_dtype=torch.bfloat16, **our_kw),
        lambda ps: ref_factory(groups(ps, second), **ref_kw),
        dtype=torch.bfloat16,
    )
    assert all(p.dtype == torch.bfloat16 for p in ours)
    ref_bf16, ref_fp32 = run_pair(
        lambda ps: ref_factory(groups(ps, second), **ref_kw),
        lambda ps: ref_factory(groups(ps, second), **ref_kw),
        dtype=torch.bfloat16,
        ref_dtype=torch.float32,
    )
    drift = max_relative_error(ref_bf16, ref_fp32)
    err = max_relative_error(ours, ref)
    assert err <= max(2 * drift, 2**-7), f"{spec}: {err:.3g} vs the reference's own bf16 drift {drift:.3g}"


def test_default_states_are_fp32_for_bf16_params():
    cls = optdsl.load("adamw")
    p = torch.nn.Parameter(torch.randn(4, 3, dtype=torch.bfloat16))
    opt = cls([p])
    p.grad = torch.randn_like(p)
    opt.step()
    assert opt.state[p]["m"].dtype == torch.float32
    assert opt.state[p]["v"].dtype == torch.float32
    opt2 = cls([p], state_dtype=torch.bfloat16)
    opt2.step()
    assert opt2.state[p]["m"].dtype == torch.bfloat16
