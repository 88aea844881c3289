"""The spec library, part 2: Adafactor, LAMB, AdamP, SGDP, Schedule-Free AdamW and Adan's clipping
against independent references over 200 steps.

References: torch.optim.Adafactor (torch 2.13), the pip packages adamp 0.3.0 (AdamP, SGDP),
schedulefree 1.4.1 (AdamWScheduleFree) and pytorch-optimizer 4.1.0 (Lamb, as a second reference
of the cybertronai style at eps = 0, the one option set where its trust ratio w / (|u| + eps)
is cybertronai's w / |u|), otherwise the eager transcriptions in tests/matrix_references.py
(Hugging Face's Adafactor, timm's and cybertronai's LAMB, Adan with global clipping), each
citing repo/path@commit.

fp32: max |ours - ref| <= 1e-6 relative to each tensor's scale, odd shapes (1-D, 2-D, 3-D and a
4-D conv weight) in two param groups with different hypers. bf16 parameters: the reference runs
in fp32 and is rounded to bf16 after each step (what the generated code does: fp32 math, one
rounding); a rounding tie decided differently moves one element by a bf16 ulp, and from there
the two runs see different parameters, so the bound is a few ulps (2^-8) of the scale.
Where references disagree, a hand-computed check (plain floats) pins the side each style takes.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import pytest
import torch

import matrix_references as mrefs
import optdsl
from harness import groups, make_params, max_relative_error, run_pair

FP32_TOL = 1e-6
BF16_TOL = 4 * 2**-8
# group 1: a vector and a matrix; group 2: a 3-D tensor, a single element, a 4-D conv weight, a vector
SHAPES = [(7,), (13, 5), (3, 5, 7), (1,), (4, 3, 3, 3), (33,)]
ERRORS: dict[str, float] = {}  # case id -> measured max relative error (printed at the end of the session)


# --- the references ------------------------------------------------------------------------------


def adafactor_torch(params, **kw):
    return torch.optim.Adafactor(params, foreach=False, **kw)


def lamb_po(params, **kw):
    return pytest.importorskip("pytorch_optimizer").Lamb(params, **kw)


def adamp_ref(params, **kw):
    return pytest.importorskip("adamp").AdamP(params, **kw)


def sgdp_ref(params, **kw):
    return pytest.importorskip("adamp").SGDP(params, **kw)


def schedulefree_ref(params, **kw):
    opt = pytest.importorskip("schedulefree").AdamWScheduleFree(params, **kw)
    opt.train()  # the reference starts in eval mode and refuses to step there
    return opt


def scale_invariant_grads(i, p, g):
    """Gradients of scale-invariant weights (orthogonal to p), which AdamP and SGDP project: per
    output channel for the 2-D and 4-D tensors, over the whole tensor for the 3-D one; random
    (no projection, or a projection only by chance) for the vectors."""
    if p.ndim in (2, 4):
        rows, grows = p.reshape(len(p), -1), g.reshape(len(g), -1)
        coef = (rows * grows).sum(1, keepdim=True) / (rows * rows).sum(1, keepdim=True)
        return (grows - coef * rows).reshape(g.shape)
    if p.ndim == 3:
        return g - p * (p * g).sum() / (p * p).sum()
    return g


@dataclass(frozen=True)
class Case:
    """A spec with its hypers (first group, second group's overrides) and its reference's."""

    spec: str
    ours: dict
    ref: object
    ref_kw: dict
    second: dict = field(default_factory=dict)
    second_ref: dict = field(default_factory=dict)
    grad_fn: object = None
    grad_scale: float = 1.0
    drift: float | None = None  # see test_fp32_matches_reference

    @property
    def id(self) -> str:
        extra = ",".join(f"{k}={v}" for k, v in self.ours.items())
        return f"{self.spec}[{extra}]" if extra else self.spec


def decay_rounding(lr: float, weight_decay: float) -> float:
    """How far fp32 holds 1 - lr * weight_decay from its value: the generated code multiplies by
    it (p * (1 - lr * wd), the passes' form of p - lr * wd * p) where timm adds -lr * wd * p, so
    each step scales p by a constant off by this much, the same way every step. LAMB's allowance
    is twice 200 steps of it: p carries it, and so does the trust ratio |q| / |w| of the step.
    (Adan's no_prox decay is the reference's own p *= 1 - lr * wd: both drift alike.)"""
    c = 1 - lr * weight_decay
    return abs(float(torch.tensor(c, dtype=torch.float32)) - c)


HF_FIXED = {"style": "hf", "eps1": 1e-30, "relative_step": False, "scale_parameter": False, "lr": 1e-3,
            "beta1": 0.9, "weight_decay": 0.01, "d": 0.5}
HF_FIXED_REF = {"lr": 1e-3, "relative_step": False, "scale_parameter": False, "beta1": 0.9, "weight_decay": 0.01,
                "clip_threshold": 0.5}

CASES = [
    # Adafactor: torch.optim.Adafactor, then Hugging Face's options
    Case("adafactor", {}, adafactor_torch, {},
         {"lr": 3e-3, "weight_decay": 0.01, "d": 0.5, "beta2_decay": -0.5, "eps2": 1e-2},
         {"lr": 3e-3, "weight_decay": 0.01, "d": 0.5, "beta2_decay": -0.5, "eps": (None, 1e-2)}),
    Case("adafactor", {"lr": 0.3, "weight_decay": 0.1, "eps1": 1e-3}, adafactor_torch,
         {"lr": 0.3, "weight_decay": 0.1, "eps": (1e-3, 1e-3)}, {"lr": 0.05}, {"lr": 0.05}, grad_scale=1e-3),
    Case("adafactor", {"style": "hf", "eps1": 1e-30}, mrefs.HFAdafactorRef, {},
         {"warmup_init": True, "weight_decay": 0.01}, {"warmup_init": True, "weight_decay": 0.01}),
    Case("adafactor", HF_FIXED, mrefs.HFAdafactorRef, HF_FIXED_REF,
         {"lr": 3e-3, "scale_parameter": True, "beta1": 0.0, "d": 1.0},
         {"lr": 3e-3, "scale_parameter": True, "beta1": None, "clip_threshold": 1.0}),
    Case("adafactor", {"style": "hf", "eps1": 1e-30, "scale_parameter": False, "beta1": 0.5}, mrefs.HFAdafactorRef,
         {"scale_parameter": False, "beta1": 0.5}, {"beta2_decay": -0.6}, {"decay_rate": -0.6}),
    # LAMB: timm's (global clipping on and off), cybertronai's, pytorch-optimizer's
    Case("lamb", {}, mrefs.LambTimmRef, {}, {"lr": 3e-3, "betas": (0.8, 0.99)}, {"lr": 3e-3, "betas": (0.8, 0.99)}),
    Case("lamb", {"max_grad_norm": 0.0, "weight_decay": 0.0, "trust_clip": True, "always_adapt": True},
         mrefs.LambTimmRef, {"max_grad_norm": None, "weight_decay": 0.0, "trust_clip": True, "always_adapt": True},
         {"weight_decay": 0.05, "decoupled_decay": True, "bias_correction": False},
         {"weight_decay": 0.05, "decoupled_decay": True, "bias_correction": False}, drift=2 * 200 * decay_rounding(1e-3, 0.05)),
    Case("lamb", {"max_grad_norm": 5.0, "grad_averaging": False, "decoupled_decay": True, "weight_decay": 0.1},
         mrefs.LambTimmRef, {"max_grad_norm": 5.0, "grad_averaging": False, "decoupled_decay": True, "weight_decay": 0.1},
         {"trust_clip": True, "lr": 1e-2}, {"trust_clip": True, "lr": 1e-2}, drift=2 * 200 * decay_rounding(1e-2, 0.1)),
    Case("lamb", {"style": "cybertronai"}, mrefs.LambCybertronaiRef, {"weight_decay": 0.01},
         {"lr": 3e-3, "betas": (0.8, 0.99), "weight_decay": 0.0}, {"lr": 3e-3, "betas": (0.8, 0.99), "weight_decay": 0.0}),
    Case("lamb", {"style": "cybertronai", "eps": 0.0}, lamb_po, {"eps": 0.0, "weight_decay": 0.01, "weight_decouple": False, "adam_debias": True},
         {"lr": 3e-3, "grad_averaging": False, "weight_decay": 0.0}, {"lr": 3e-3, "grad_averaging": False, "weight_decay": 0.0}),
    # AdamP and SGDP: the adamp package, on scale-invariant gradients
    Case("adamp", {"weight_decay": 0.01}, adamp_ref, {"weight_decay": 0.01},
         {"lr": 3e-3, "betas": (0.8, 0.99), "wd_ratio": 0.5}, {"lr": 3e-3, "betas": (0.8, 0.99), "wd_ratio": 0.5},
         grad_fn=scale_invariant_grads),
    Case("adamp", {"nesterov": True, "weight_decay": 0.1, "lr": 1e-2}, adamp_ref,
         {"nesterov": True, "weight_decay": 0.1, "lr": 1e-2}, {"delta": 0.3, "nesterov": False}, {"delta": 0.3, "nesterov": False},
         grad_fn=scale_invariant_grads),
    Case("adamp", {"weight_decay": 0.01}, adamp_ref, {"weight_decay": 0.01}, {"eps": 1e-6}, {"eps": 1e-6}),
    Case("sgdp", {"lr": 0.01, "momentum": 0.9, "weight_decay": 1e-3}, sgdp_ref,
         {"lr": 0.01, "momentum": 0.9, "weight_decay": 1e-3}, {"nesterov": True, "wd_ratio": 0.5}, {"nesterov": True, "wd_ratio": 0.5},
         grad_fn=scale_invariant_grads),
    Case("sgdp", {"lr": 0.01, "momentum": 0.5, "dampening": 0.5, "nesterov": False}, sgdp_ref,
         {"lr": 0.01, "momentum": 0.5, "dampening": 0.5}, {"lr": 0.02, "momentum": 0.0, "weight_decay": 0.01},
         {"lr": 0.02, "momentum": 0.0, "weight_decay": 0.01}, grad_fn=scale_invariant_grads),
    # Schedule-Free AdamW: warmup, decay, polynomial weighting (the mode switches: below)
    Case("schedule_free_adamw", {"warmup_steps": 20, "weight_decay": 0.01, "r": 0.5}, schedulefree_ref,
         {"warmup_steps": 20, "weight_decay": 0.01, "r": 0.5}, {"lr": 1e-3, "betas": (0.8, 0.99), "warmup_steps": 50},
         {"lr": 1e-3, "betas": (0.8, 0.99), "warmup_steps": 50}),
    Case("schedule_free_adamw", {"weight_lr_power": 0.0, "r": 1.0}, schedulefree_ref, {"weight_lr_power": 0.0, "r": 1.0},
         {"lr": 1e-2, "weight_decay": 0.1}, {"lr": 1e-2, "weight_decay": 0.1}),
    # Adan's global clipping (the norm over all groups)
    Case("adan", {"max_grad_norm": 1.0}, mrefs.AdanClipRef, {"max_grad_norm": 1.0},
         {"lr": 3e-3, "betas": (0.9, 0.9, 0.999)}, {"lr": 3e-3, "betas": (0.9, 0.9, 0.999)}, drift=0.0),
    Case("adan", {"max_grad_norm": 20.0, "weight_decay": 0.02, "no_prox": True}, mrefs.AdanClipRef,
         {"max_grad_norm": 20.0, "weight_decay": 0.02, "no_prox": True}, {"lr": 3e-3}, {"lr": 3e-3},
         drift=200 * max(decay_rounding(1e-3, 0.02), decay_rounding(3e-3, 0.02))),
]


def run_case(case: Case, foreach=True, steps=200, dtype=torch.float32, backend="torch", shapes=SHAPES, **pair):
    cls = optdsl.load(case.spec, backend=backend)
    return run_pair(
        lambda ps: cls(groups(ps, case.second), foreach=foreach, **case.ours),
        lambda ps: case.ref(groups(ps, case.second_ref), **case.ref_kw),
        steps=steps, dtype=dtype, shapes=shapes, grad_fn=case.grad_fn, grad_scale=case.grad_scale, **pair,
    )


def record(name: str, err: float) -> float:
    ERRORS[name] = max(err, ERRORS.get(name, 0.0))
    return err


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fp32_matches_reference(case):
    """Within 1e-6 of the reference; or, for the cases with a ``drift`` allowance, the same rule
    in float64 (1e-8: AdanClipRef sums the squared gradients in fp32 even there) and in fp32 as
    close to that exact run as the reference itself is, plus the allowance. Adan's clip factor
    (a norm of norms here, a sum of squares there) and timm's decoupled decay (see decay_rounding)
    round differently, and after 200 steps the two fp32 runs sit on either side of the exact one."""
    assert_matches(case, foreach=True)


def assert_matches(case: Case, foreach: bool) -> None:
    ours, ref = run_case(case, foreach=foreach)
    err = record(f"fp32 {'foreach' if foreach else 'for-loop'} {case.id}", max_relative_error(ours, ref))
    if case.drift is None:
        assert err <= FP32_TOL, f"{case.id}: max relative error {err:.3g}"
        return
    ours64, exact = run_case(case, foreach=foreach, dtype=torch.float64)
    assert record(f"fp64 {case.id}", max_relative_error(ours64, exact)) <= 1e-8
    ours_drift = max_relative_error(ours, exact)
    ref_drift = max_relative_error(ref, run_case(case, dtype=torch.float64)[1])
    record(f"fp32 drift from exact: ours {case.id}", ours_drift)
    record(f"fp32 drift from exact: reference {case.id}", ref_drift)
    assert ours_drift <= max(ref_drift, FP32_TOL) + case.drift, f"ours {ours_drift:.3g}, the reference {ref_drift:.3g}"


FIRST_OF_EACH_SPEC = list({c.spec: c for c in reversed(CASES)}.values())


@pytest.mark.parametrize("case", FIRST_OF_EACH_SPEC, ids=[c.id for c in FIRST_OF_EACH_SPEC])
def test_for_loop_path_matches_reference(case):
    """The per-tensor code path (foreach=False); rules with reductions or shape conditions
    always take it, so this repeats their case above."""
    assert_matches(case, foreach=False)


@pytest.mark.parametrize("case", FIRST_OF_EACH_SPEC, ids=[c.id for c in FIRST_OF_EACH_SPEC])
def test_bf16_params_match_the_rounded_reference(case):
    ours, ref = run_case(case, dtype=torch.bfloat16, ref_dtype=torch.float32, round_ref_to=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in ours)
    err = record(f"bf16 {case.id}", max_relative_error(ours, ref))
    assert err <= BF16_TOL, f"{case.id}: max relative error {err:.3g}"


TRITON_SHAPES = [(7,), (13, 5), (3, 5, 7), (4, 3, 3, 3)]


@pytest.mark.parametrize("case", FIRST_OF_EACH_SPEC, ids=[c.id for c in FIRST_OF_EACH_SPEC])
def test_triton_backend_matches_reference(case):
    """The Triton backend (interpreted on CPU) against the reference itself; 30 steps on four
    tensors keep the interpreter's time in bounds (the 200-step runs above are the torch backend's)."""
    pytest.importorskip("triton")
    ours, ref = run_case(case, backend="triton", steps=30, shapes=TRITON_SHAPES)
    err = record(f"triton {case.id}", max_relative_error(ours, ref))
    assert err <= FP32_TOL, f"{case.id}: max relative error {err:.3g}"


def test_parameters_really_move():
    """Guards the cases: a rule and a reference that both did nothing would pass them."""
    for case in CASES:
        ours, _ = run_case(case, steps=5)
        assert max_relative_error(ours, make_params(shapes=SHAPES)) > 1e-4, case.id


def test_projections_happen_on_scale_invariant_gradients():
    """Guards the AdamP/SGDP cases: on the gradients they get, the 2-D and 4-D tensors take the
    channel projection, the 3-D one the layer projection, and both change the step."""
    adamp = pytest.importorskip("adamp")
    p = make_params(shapes=SHAPES)
    for i, x in enumerate(p):
        if x.ndim < 2:
            continue
        g = scale_invariant_grads(i, x.detach(), torch.randn(x.shape))
        opt = adamp.AdamP([x])
        radial = g + x.detach()  # a step with a radial part: the projection removes it
        perturb, ratio = opt._projection(x, g, radial.clone(), 0.1, 0.1, 1e-8)
        assert ratio == 0.1 and not torch.allclose(perturb, radial), x.shape
        channel_cos = torch.nn.functional.cosine_similarity(g.reshape(len(g), -1), x.detach().reshape(len(x), -1), dim=1)
        assert (channel_cos.abs().max() < 1e-5) == (x.ndim != 3), x.shape


@pytest.fixture(scope="module", autouse=True)
def report_errors():
    """Print the measured errors after the module's tests (shown with ``pytest -s``)."""
    yield
    for name, err in sorted(ERRORS.items()):
        print(f"{err:10.3g}  {name}")


# --- Schedule-Free AdamW: the train/eval parameter swap ------------------------------------------


SF = next(c for c in CASES if c.spec == "schedule_free_adamw")


def _params(opt):
    return [p for group in opt.param_groups for p in group["params"]]


def test_schedule_free_eval_parameters_match_the_reference():
    """eval() at several points (p holds x there), train() again, and at the end: both sides agree."""
    errors = []

    def swap(step, ours, ref):
        if step in (0, 49, 120, 199):
            ours.eval()
            ref.eval()
            errors.append(max_relative_error(_params(ours), _params(ref)))
            if step != 199:
                ours.train()
                ref.train()

    ours, ref = run_case(SF, between=swap)
    errors.append(max_relative_error(ours, ref))
    record("schedule_free eval/train swaps (max over the eval points)", max(errors))
    assert len(errors) == 5 and max(errors) <= FP32_TOL, errors


def test_schedule_free_eval_moves_p_to_the_average():
    """Guards the test above: eval() really changes p (x != y once z has moved away from y;
    after the first step y == z) and train() brings y back."""
    cls = optdsl.load("schedule_free_adamw")
    ours = make_params(shapes=SHAPES)
    opt = cls(groups(ours, {}))
    for _ in range(5):
        for p in ours:
            p.grad = torch.randn(p.shape)
        opt.step()
    before = [p.detach().clone() for p in ours]
    opt.eval()
    assert max_relative_error(ours, before) > 1e-4
    opt.train()
    assert max_relative_error(ours, before) <= 1e-6


def test_schedule_free_step_in_eval_mode_raises():
    cls = optdsl.load("schedule_free_adamw")
    param = torch.nn.Parameter(torch.ones(3))
    opt = cls([param])
    param.grad = torch.ones(3)
    opt.step()
    opt.eval()
    with pytest.raises(RuntimeError, match=r"step\(\) was called in eval mode: call optimizer.train\(\) first"):
        opt.step()
    opt.train()
    opt.step()


@pytest.mark.parametrize("saved_in_eval", [True, False])
def test_schedule_free_state_dict_round_trips_the_mode(saved_in_eval):
    """Save after 60 steps (in eval or train mode), load into a fresh optimizer, and continue: the
    loaded one keeps the mode (a step in eval mode still raises) and then tracks the reference."""
    cls = optdsl.load("schedule_free_adamw")
    ours = make_params(shapes=SHAPES)
    ref = [p.detach().clone().requires_grad_(True) for p in ours]
    opt = cls(groups(ours, SF.second), **SF.ours)
    opt_ref = schedulefree_ref(groups(ref, SF.second_ref), **SF.ref_kw)
    gen = torch.Generator().manual_seed(5)

    def steps(n, a, b):
        for _ in range(n):
            for x, y in zip(ours, ref):
                g = torch.randn(x.shape, generator=gen)
                x.grad, y.grad = g.clone(), g.clone()
            a.step()
            b.step()

    steps(60, opt, opt_ref)
    if saved_in_eval:
        opt.eval()
        opt_ref.eval()
    saved = copy.deepcopy(opt.state_dict())
    loaded = cls(groups(ours, SF.second), **SF.ours)
    loaded.load_state_dict(saved)
    assert all(group["train_mode"] is not saved_in_eval for group in loaded.param_groups)
    if saved_in_eval:
        assert max_relative_error(ours, ref) <= FP32_TOL  # x on both sides
        with pytest.raises(RuntimeError, match="eval mode"):
            loaded.step()
        loaded.train()
        opt_ref.train()
    steps(60, loaded, opt_ref)
    err = record(f"schedule_free state_dict round trip (saved in {'eval' if saved_in_eval else 'train'})",
                 max_relative_error(ours, ref))
    assert err <= FP32_TOL


# --- hand-computed values where references disagree ------------------------------------------------


def one_step(spec, p0, g, **hypers):
    """``spec`` on one float64 tensor: the parameter after one step from ``p0`` with gradient ``g``."""
    param = torch.nn.Parameter(torch.tensor(p0, dtype=torch.float64))
    opt = optdsl.load(spec)([param], **hypers)
    param.grad = torch.tensor(g, dtype=torch.float64)
    opt.step()
    return param.detach().tolist()


def test_adafactor_torch_and_hf_disagree_on_eps_and_step_size():
    """p = (3, 4): rms(p) = sqrt(12.5); g = (1, 1e-20); first step (w = 1: v = g^2).
    torch: U = g / sqrt(max(g^2, eps1^2)) with eps1 = 1e-7: (1, 1e-13); alpha = rms(p) * min(lr, 1).
    Hugging Face: U = g / sqrt(g^2 + 1e-30): (1, 1e-5); relative_step: alpha = rms(p) * min(1e-2, 1),
    whatever lr is. rms(U) = sqrt(1/2) < 1: no clipping on either side."""
    rms_p = math.sqrt(12.5)
    torch_style = one_step("adafactor", [3.0, 4.0], [1.0, 1e-20], lr=0.1, eps1=1e-7)
    assert torch_style == pytest.approx([3 - 0.1 * rms_p, 4 - 0.1 * rms_p * 1e-13], rel=1e-12)
    hf = one_step("adafactor", [3.0, 4.0], [1.0, 1e-20], lr=0.1, eps1=1e-30, style="hf")
    assert hf == pytest.approx([3 - 1e-2 * rms_p / math.sqrt(1 + 1e-30), 4 - 1e-2 * rms_p * 1e-5], rel=1e-12)


def test_adafactor_hf_clips_the_update_rms_to_d():
    """A vector of length 4, g = (1, 0, 0, 0) after a first step with g = (1, 1, 1, 1): v = (1, 1, 1, 1) + 1e-30
    at t = 1; at t = 2, w = 2^-0.8, v = (1, 1 - w, 1 - w, 1 - w); U = (1, 0, 0, 0), rms(U) = 1/2 > d = 0.25:
    U * 0.25 / 0.5; lr fixed (relative_step off, scale_parameter off): p -= 1e-2 * U / 2."""
    param = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    opt = optdsl.load("adafactor")([param], style="hf", eps1=1e-30, relative_step=False, scale_parameter=False,
                                   lr=1e-2, d=0.25)
    param.grad = torch.ones(4, dtype=torch.float64)
    opt.step()  # U = 1 everywhere, rms 1 > 0.25: p = -1e-2 * 0.25
    assert param.tolist() == pytest.approx([-2.5e-3] * 4, rel=1e-12)
    param.grad = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    opt.step()
    assert param.tolist() == pytest.approx([-2.5e-3 - 1e-2 * 0.5, -2.5e-3, -2.5e-3, -2.5e-3], rel=1e-12)


def test_lamb_timm_and_cybertronai_trust_ratios():
    """p = (30, 40), |p| = 50; g = (1, 0); weight_decay 0, no clipping. Both steps are u * ratio with
    ratio = w / |u| and u = (x, 0): the step is lr * w in the first element.
    timm (always_adapt; bias correction: u = 1 / (1 + 1e-6)): w = |p| = 50.
    cybertronai: w = min(|p|, 10) = 10. (pytorch-optimizer's Lamb: 10 * |u| / (|u| + eps).)"""
    timm = one_step("lamb", [30.0, 40.0], [1.0, 0.0], weight_decay=0.0, max_grad_norm=0.0, always_adapt=True)
    assert timm == pytest.approx([30 - 1e-3 * 50, 40.0], rel=1e-12)
    cyber = one_step("lamb", [30.0, 40.0], [1.0, 0.0], weight_decay=0.0, style="cybertronai")
    assert cyber == pytest.approx([30 - 1e-3 * 10, 40.0], rel=1e-12)
    # timm without always_adapt and weight_decay 0: no trust ratio, p -= lr * u
    plain = one_step("lamb", [30.0, 40.0], [1.0, 0.0], weight_decay=0.0, max_grad_norm=0.0)
    assert plain == pytest.approx([30 - 1e-3 / (1 + 1e-6), 40.0], rel=1e-12)


def test_lamb_clips_by_the_norm_over_all_groups():
    """Two groups, one tensor each: g = (3,) and (4,), global norm 5, max_grad_norm 1: g / 5. timm's m
    and v then hold 0.1 * (0.6, 0.8) and 0.001 * (0.36, 0.64); a per-group norm would give 0.1 * (1, 1)."""
    a, b = (torch.nn.Parameter(torch.ones(1, dtype=torch.float64)) for _ in range(2))
    opt = optdsl.load("lamb")([{"params": [a]}, {"params": [b], "lr": 1e-2}])
    a.grad, b.grad = torch.tensor([3.0], dtype=torch.float64), torch.tensor([4.0], dtype=torch.float64)
    opt.step()
    assert opt.state[a]["m"].item() == pytest.approx(0.06, rel=1e-12)
    assert opt.state[b]["m"].item() == pytest.approx(0.08, rel=1e-12)
    assert opt.state[b]["v"].item() == pytest.approx(0.001 * 0.64, rel=1e-12)


@pytest.mark.parametrize("name", ["adamp", "sgdp"])
def test_float64_params_keep_float64_precision(name):
    """A per-tensor choice between two numbers (AdamP's wd_ratio or 1) stays in the compute dtype:
    torch.where of two Python numbers is float32, which once cost float64 params 3e-6."""
    adamp = pytest.importorskip("adamp")
    ref_cls = {"adamp": adamp.AdamP, "sgdp": adamp.SGDP}[name]
    kw = {"lr": 0.01, "weight_decay": 0.01, **({"momentum": 0.9} if name == "sgdp" else {})}
    cls = optdsl.load(name)
    gen = torch.Generator().manual_seed(0)
    ours = [torch.randn(s, generator=gen, dtype=torch.float64).requires_grad_(True) for s in [(7, 5), (4, 3, 3, 3), (9,)]]
    ref = [p.detach().clone().requires_grad_(True) for p in ours]
    opt_ours, opt_ref = cls(ours, **kw), ref_cls(ref, **kw)
    for step in range(200):
        for a, b in zip(ours, ref):
            g = torch.randn(a.shape, generator=gen, dtype=torch.float64)
            if step % 2:  # orthogonal to the weight: the projection (and wd_ratio) takes effect
                w = a.detach()
                g = g - (g * w).sum() / (w * w).sum() * w
            a.grad, b.grad = g.clone(), g.clone()
        opt_ours.step()
        opt_ref.step()
    assert max_relative_error(ours, ref) <= 1e-12
