"""The spec library, part 1: each spec against an independent reference over 200 steps.

fp32, max |ours - ref| <= 1e-6 relative to the parameter scale, five shapes in two
param groups with different hypers (tests/harness.py). References: the pip packages
where one exists (torch.optim.Adamax, adabelief-pytorch 0.2.1, grams-pytorch 0.0.2,
ano-optimizer 1.0.0, pytorch-optimizer 4.1.0's SignSGD and Gravity), otherwise the
eager transcriptions in tests/spec_references.py, each citing repo/path@commit.
Both sides run with torch's RNG seeded at their first step (Gravity draws its initial
velocity there). Each known disagreement between references (or between a reference and its docs)
gets a hand-computed check of the side the spec takes.
"""

from __future__ import annotations

import math

import pytest
import torch

import optdsl
import spec_references as refs
from harness import groups, make_params, max_relative_error, run_pair

FP32_TOL = 1e-6


def _po():
    return pytest.importorskip("pytorch_optimizer")


def sign_sgd(params, **kw):
    return _po().SignSGD(params, **kw)


def gravity_ref(params, **kw):
    return _po().Gravity(params, **kw)


def adabelief_ref(params, **kw):
    adabelief_pytorch = pytest.importorskip("adabelief_pytorch")
    return adabelief_pytorch.AdaBelief(params, print_change_log=False, **kw)


def grams_ref(params, **kw):
    return pytest.importorskip("grams").Grams(params, **kw)


def ano_ref(params, **kw):
    return pytest.importorskip("ano_optimizer").Ano(params, **kw)


def powersign_ref(params, **kw):
    return refs.TFSignRef(params, "powersign", **kw)


def addsign_ref(params, **kw):
    return refs.TFSignRef(params, "addsign", **kw)


# (spec, our kwargs, reference factory, reference kwargs, second group: ours, second group: reference)
CASES = [
    ("signum", {}, sign_sgd, {}, {"lr": 3e-3, "momentum": 0.5}, {"lr": 3e-3, "momentum": 0.5}),
    ("signum", {"momentum": 0.0}, sign_sgd, {"momentum": 0.0}, {"lr": 3e-3}, {"lr": 3e-3}),
    ("signum", {"weight_decay": 0.1}, sign_sgd, {"weight_decay": 0.1}, {"lr": 3e-3}, {"lr": 3e-3}),
    ("signum", {"weight_decay": 0.01, "weight_decouple": False}, sign_sgd,
     {"weight_decay": 0.01, "weight_decouple": False}, {"momentum": 0.0}, {"momentum": 0.0}),
    ("adamax", {"weight_decay": 0.01}, torch.optim.Adamax, {"weight_decay": 0.01},
     {"lr": 3e-3, "betas": (0.8, 0.99)}, {"lr": 3e-3, "betas": (0.8, 0.99)}),
    ("adabelief", {"weight_decay": 0.01}, adabelief_ref, {"weight_decay": 0.01}, {"lr": 3e-3}, {"lr": 3e-3}),
    ("adabelief", {"rectify": False, "eps": 1e-8, "weight_decouple": False, "weight_decay": 0.01}, adabelief_ref,
     {"rectify": False, "eps": 1e-8, "weight_decouple": False, "weight_decay": 0.01},
     {"betas": (0.8, 0.99)}, {"betas": (0.8, 0.99)}),
    ("adabelief", {"degenerated_to_sgd": False, "fixed_decay": True, "weight_decay": 1e-4, "eps": 1e-10},
     adabelief_ref, {"degenerated_to_sgd": False, "fixed_decay": True, "weight_decay": 1e-4, "eps": 1e-10},
     {"lr": 3e-3}, {"lr": 3e-3}),
    ("adamomentum", {"weight_decay": 0.01}, refs.AdaMomentumRef, {"weight_decay": 0.01}, {"lr": 3e-3}, {"lr": 3e-3}),
    ("adamomentum", {"weight_decay": 5e-4, "weight_decouple": False}, refs.AdaMomentumRef,
     {"weight_decay": 5e-4, "weight_decouple": False}, {"betas": (0.8, 0.99)}, {"betas": (0.8, 0.99)}),
    ("ademamix", {}, refs.AdEMAMixRef, {}, {"lr": 3e-3}, {"lr": 3e-3}),
    ("ademamix", {"lr": 1e-2, "alpha_warmup": 50, "beta3_warmup": 80, "alpha": 5.0}, refs.AdEMAMixRef,
     {"lr": 1e-2, "alpha_warmup": 50, "beta3_warmup": 80, "alpha": 5.0},
     {"betas": (0.8, 0.99, 0.999)}, {"betas": (0.8, 0.99, 0.999)}),
    ("ademamix", {"betas": (0.0, 0.999, 0.999), "beta3_warmup": 300}, refs.AdEMAMixRef,
     {"betas": (0.0, 0.999, 0.999), "beta3_warmup": 300}, {"lr": 3e-3}, {"lr": 3e-3}),
    ("grams", {"weight_decay": 0.01}, grams_ref, {"weight_decay": 0.01}, {"lr": 3e-3}, {"lr": 3e-3}),
    ("ano", {"lr": 1e-3, "weight_decay": 0.01}, ano_ref, {"lr": 1e-3, "weight_decay": 0.01},
     {"lr": 3e-4, "betas": (0.9, 0.999)}, {"lr": 3e-4, "betas": (0.9, 0.999)}),
    ("anolog", {"lr": 1e-3, "weight_decay": 0.01}, ano_ref, {"lr": 1e-3, "weight_decay": 0.01, "logarithmic_schedule": True},
     {"lr": 3e-4}, {"lr": 3e-4}),
    ("anolog", {"lr": 1e-3, "beta2": 0.999, "bias_correction": False}, refs.AnologExperimentsRef, {"lr": 1e-3},
     {"lr": 3e-4}, {"lr": 3e-4}),
    ("powersign", {"lr": 0.01}, powersign_ref, {"lr": 0.01}, {"lr": 0.03, "beta": 0.5}, {"lr": 0.03, "beta": 0.5}),
    ("powersign", {"lr": 0.01, "base": 2.0, "sign_decay": "linear", "decay_steps": 150}, powersign_ref,
     {"lr": 0.01, "base": 2.0, "decay_steps": 150}, {"lr": 0.03}, {"lr": 0.03}),
    ("addsign", {"lr": 0.01}, addsign_ref, {"lr": 0.01}, {"lr": 0.03, "beta": 0.5}, {"lr": 0.03, "beta": 0.5}),
    ("addsign", {"lr": 0.01, "alpha": 0.5, "sign_decay": "linear", "decay_steps": 150}, addsign_ref,
     {"lr": 0.01, "alpha": 0.5, "decay_steps": 150}, {"lr": 0.03}, {"lr": 0.03}),
    ("gravity", {}, gravity_ref, {}, {"lr": 3e-3}, {"lr": 3e-3}),
    ("gravity", {"alpha": 0.05, "beta": 0.5}, gravity_ref, {"alpha": 0.05, "beta": 0.5}, {"lr": 0.05}, {"lr": 0.05}),
    ("lars", {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}, refs.LarsRef,
     {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}, {"lr": 0.05}, {"lr": 0.05}),
    ("lars", {"momentum": 0.9, "nesterov": True, "always_adapt": True, "trust_clip": True}, refs.LarsRef,
     {"momentum": 0.9, "nesterov": True, "always_adapt": True, "trust_clip": True}, {"lr": 1e-3}, {"lr": 1e-3}),
    ("lars", {"lr": 0.01, "momentum": 0.9, "dampening": 0.1}, refs.LarsRef, {"lr": 0.01, "momentum": 0.9, "dampening": 0.1},
     {"momentum": 0.0}, {"momentum": 0.0}),
    ("adan", {}, refs.AdanRef, {}, {"lr": 3e-3}, {"lr": 3e-3}),  # proximal decay: test_adan_proximal_decay
    ("adan", {"weight_decay": 0.02, "no_prox": True}, refs.AdanRef, {"weight_decay": 0.02, "no_prox": True},
     {"betas": (0.9, 0.9, 0.999)}, {"betas": (0.9, 0.9, 0.999)}),
    ("mars", {}, refs.MarsRef, {}, {"lr": 1e-3}, {"lr": 1e-3}),
    ("mars", {"mars_type": "lion", "lr": 1e-3, "weight_decay": 0.01, "lr_1d_factor": 3.0}, refs.MarsRef,
     {"mars_type": "mars-lion", "lr": 1e-3, "weight_decay": 0.01, "lr_1d": 3e-3}, {"betas": (0.9, 0.99)}, {"betas": (0.9, 0.99)}),
    ("mars", {"optimize_1d": True, "weight_decay": 0.01}, refs.MarsRef, {"optimize_1d": True, "weight_decay": 0.01},
     {"lr": 1e-3}, {"lr": 1e-3}),
]


def _ids(case):
    spec, ours, *_ = case
    extra = ",".join(f"{k}={v}" for k, v in ours.items())
    return f"{spec}[{extra}]" if extra else spec


def seeded_at_first_step(opt, seed=1234):
    """``opt`` with torch's global RNG seeded right before its first step, when states are
    created: Gravity's random velocity is then the same draw on both sides."""
    def seed_once(optimizer, args, kwargs):
        if not getattr(optimizer, "_seeded", False):
            torch.manual_seed(seed)
            optimizer._seeded = True

    opt.register_step_pre_hook(seed_once)
    return opt


def run_case(case, foreach=True, steps=200, dtype=torch.float32):
    spec, our_kw, ref_factory, ref_kw, second_ours, second_ref = case
    cls = optdsl.load(spec)
    return run_pair(
        lambda ps: seeded_at_first_step(cls(groups(ps, second_ours), foreach=foreach, **our_kw)),
        lambda ps: seeded_at_first_step(ref_factory(groups(ps, second_ref), **ref_kw)),
        steps=steps,
        dtype=dtype,
    )


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_fp32_matches_reference(case):
    ours, ref = run_case(case)
    err = max_relative_error(ours, ref)
    assert err <= FP32_TOL, f"{_ids(case)}: max relative error {err:.3g}"


FIRST_OF_EACH_SPEC = list({c[0]: c for c in reversed(CASES)}.values())


@pytest.mark.parametrize("case", FIRST_OF_EACH_SPEC, ids=[_ids(c) for c in FIRST_OF_EACH_SPEC])
def test_for_loop_path_matches_reference(case):
    """The per-tensor code path (foreach=False); rules with reductions or shape conditions
    always take it, so this repeats their case above."""
    ours, ref = run_case(case, foreach=False)
    err = max_relative_error(ours, ref)
    assert err <= FP32_TOL, f"{_ids(case)}: max relative error {err:.3g}"


def test_parameters_really_move():
    """Guards the cases: a rule and a reference that both did nothing would pass them."""
    for case in FIRST_OF_EACH_SPEC:
        ours, _ = run_case(case, steps=5)
        assert max_relative_error(ours, make_params()) > 1e-4, case[0]


# --- Adan's proximal weight decay: a reference inexact in fp32 ------------------------------------


def test_adan_proximal_decay():
    """p = (p - step) / (1 + lr * weight_decay), the default.

    sail-sg/Adan divides by fp32(1 + lr * weight_decay) every step and the generated code
    multiplies by the reciprocal: a constant that fp32 cannot hold exactly, applied to the
    same element step after step, rounds the same way each time, so each fp32 run drifts
    from the exact rule (9e-6 relative after 200 steps at lr 1e-3, weight_decay 0.02, measured
    for both), each in its own direction (1.3e-5 apart), so 1e-6 between the two is out of reach. The rule is checked in
    float64, where both agree to 1e-12; in fp32 the generated code must stay as close to
    the exact (float64) rule as the reference itself does. The rest of Adan is checked in
    fp32 above (weight_decay = 0, and no_prox, whose decay p *= 1 - lr * weight_decay is the
    reference's own operation).
    """
    case = ("adan", {"weight_decay": 0.02}, refs.AdanRef, {"weight_decay": 0.02}, {"lr": 3e-3}, {"lr": 3e-3})
    ours64, ref64 = run_case(case, dtype=torch.float64)
    assert max_relative_error(ours64, ref64) <= 1e-12
    cls = optdsl.load("adan")
    ours32, exact = run_pair(lambda ps: cls(groups(ps, {"lr": 3e-3}), weight_decay=0.02),
                             lambda ps: refs.AdanRef(groups(ps, {"lr": 3e-3}), weight_decay=0.02), ref_dtype=torch.float64)
    ref32, exact2 = run_pair(lambda ps: refs.AdanRef(groups(ps, {"lr": 3e-3}), weight_decay=0.02),
                             lambda ps: refs.AdanRef(groups(ps, {"lr": 3e-3}), weight_decay=0.02), ref_dtype=torch.float64)
    ours_drift, ref_drift = max_relative_error(ours32, exact), max_relative_error(ref32, exact2)
    assert ours_drift <= max(1.5 * ref_drift, FP32_TOL), f"ours {ours_drift:.3g} vs the reference's own {ref_drift:.3g}"


# --- hand-computed values where references disagree ------------------------------------------------


def run_single(spec, p0, grads, **hypers):
    """``spec`` on one float64 tensor starting at ``p0``, one step per gradient; returns the
    parameter after each step and the final state."""
    cls = optdsl.load(spec)
    param = torch.nn.Parameter(torch.tensor(p0, dtype=torch.float64))
    opt = cls([param], **hypers)
    history = []
    for g in grads:
        param.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        history.append(param.detach().clone())
    return history, opt.state[param]


def close(actual, expected, rel=1e-9):
    expected = torch.as_tensor(expected, dtype=torch.float64)
    torch.testing.assert_close(torch.as_tensor(actual, dtype=torch.float64), expected, rtol=rel, atol=1e-15)


def test_adabelief_accumulates_eps_in_its_state():
    # g = 0: m = 0 and s = beta2 * s + eps: 1e-3, 0.9e-3 + 1e-3, 1.71e-3 + 1e-3 (an Adam-style
    # eps outside the state would leave s at 0).
    history, state = run_single("adabelief", [1.0], [[0.0]] * 3, betas=(0.9, 0.9), eps=1e-3)
    close(state["s"], [2.71e-3])
    close(history[-1], [1.0])
    # rectify = False, one step, g = 1: m = 0.1, s = 0.1 * 0.9^2 + 1e-3 = 0.082,
    # p = 1 - 0.1 * (0.1 / 0.1) / (sqrt(0.082 / 0.1) + 1e-3) = 0.88969029062...
    history, _ = run_single("adabelief", [1.0], [[1.0]], lr=0.1, betas=(0.9, 0.9), eps=1e-3, rectify=False)
    close(history[0], [0.8896902906206298])


def test_adabelief_rectify_warm_up_steps():
    # beta2 = 0.999: rho_1 = 1999 - 2 * 0.999 / 0.001 = 1 < 5: an SGD step lr * m / (1 - beta1) = lr * g
    # with degenerated_to_sgd (default), no step at all without.
    history, _ = run_single("adabelief", [1.0], [[2.0]], lr=0.1)
    close(history[0], [0.8])
    history, _ = run_single("adabelief", [1.0], [[2.0]], lr=0.1, degenerated_to_sgd=False)
    close(history[0], [1.0])


def test_adamomentum_eps_in_state_and_none_outside():
    # g = 1, betas (0.9, 0.9), eps 0.01: m = 0.1, v = 0.1 * 0.1^2 + 0.01 = 0.011,
    # p = 1 - (0.1 / 0.1) * 0.1 / sqrt(0.011 / 0.1) = 0.69848865542...
    history, state = run_single("adamomentum", [1.0], [[1.0]], lr=0.1, betas=(0.9, 0.9), eps=0.01)
    close(state["v"], [0.011])
    close(history[0], [0.6984886554222364])


def test_ademamix_warm_ups_count_steps_from_one():
    """apple/ml-ademamix's PyTorch schedules at t (1-based): alpha_t = alpha * t / T while t < T;
    beta3_t interpolates the half-life from beta1's to beta3's. optax evaluates them at t - 1
    (alpha 0 on the first step). Each step here starts from zero states, p = 0 and g = 1, so
    m_slow = 1 - beta3_t, and the step lr * (0.1 / bc1 + alpha_t * m_slow) / sqrt(0.001 / bc2)
    gives alpha_t back."""
    cls = optdsl.load("ademamix")
    param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = cls([param], lr=1.0, eps=0.0, alpha=5.0, alpha_warmup=50, beta3_warmup=100)

    def f(beta):  # half-life minus one, as the reference's linear_hl_warmup_scheduler
        return math.log(0.5) / math.log(beta + 1e-8) - 1

    alphas, beta3s = {}, {}
    for t in range(1, 121):
        for value in opt.state[param].values():
            if value.dim() > 0:
                value.zero_()
        with torch.no_grad():
            param.zero_()
        param.grad = torch.ones(1, dtype=torch.float64)
        opt.step()
        m_slow = opt.state[param]["m_slow"].item()
        beta3s[t] = 1 - m_slow
        den = math.sqrt(0.001) / math.sqrt(1 - 0.999**t)
        alphas[t] = (-param.item() * den - 0.1 / (1 - 0.9**t)) / m_slow
    assert alphas[1] == pytest.approx(0.1, rel=1e-9)  # 5 * 1/50; optax: 0
    assert alphas[25] == pytest.approx(2.5, rel=1e-9)
    assert alphas[49] == pytest.approx(4.9, rel=1e-9)
    assert alphas[50] == pytest.approx(5.0, rel=1e-9) and alphas[120] == pytest.approx(5.0, rel=1e-9)
    for t in (1, 50, 99):
        a = t / 100
        expected = 0.5 ** (1 / ((1 - a) * f(0.9) + a * f(0.9999) + 1))
        assert beta3s[t] == pytest.approx(expected, rel=1e-9), t
    assert beta3s[1] < beta3s[50] < beta3s[99] < 0.9999  # at t = 1 already a = 1/100 (optax: a = 0, beta3 = beta1)
    assert beta3s[100] == pytest.approx(0.9999, rel=1e-12) and beta3s[120] == pytest.approx(0.9999, rel=1e-12)


def test_grams_eps_on_the_uncorrected_root():
    # g = 0.01, eps = 1e-3: m = 0.001, v = 1e-7; official: lr * sqrt(0.001) / 0.1 * 0.001 / (sqrt(1e-7) + 1e-3)
    # -> p = 0.99975974692...; pytorch-optimizer 4.1.0 (eps after the bias correction) gives 0.99909090909.
    history, _ = run_single("grams", [1.0], [[0.01]], eps=1e-3)
    close(history[0], [0.9997597469266479])


def test_ano_takes_the_sign_against_the_old_second_moment():
    # beta2 = 0.5. Step 1, g = 1: v = 0.5 * sign(1 - 0) * 1 = 0.5. Step 2, g^2 = 0.4: the official
    # sign(0.4 - 0.5) = -1 gives v = 0.25 - 0.2 = 0.05; pytorch-optimizer's sign(0.4 - 0.5 * 0.5) = +1 gives 0.45.
    _, state = run_single("ano", [1.0], [[1.0], [math.sqrt(0.4)]], betas=(0.9, 0.5))
    close(state["v"], [0.05])


def test_anolog_first_beta1_is_negative():
    # beta1 = 1 - 1 / ln(max(2, 1)) = -0.44269504...: m = (1 - beta1) * g = 1.44269504... * 0.5
    _, state = run_single("anolog", [1.0], [[0.5]])
    close(state["m"], [0.7213475204444817])


@pytest.mark.parametrize("spec,expected", [
    # g = 1 throughout, so sign(g) sign(m) = 1; decay_steps = 2: decay 1, 1/2, 0 at t = 1, 2, 3
    # (the global step before its increment). PowerSign: p -= 0.1 * e^decay; AddSign: p -= 0.1 * (1 + decay).
    ("powersign", [-0.27182818284590454, -0.43670030991591735, -0.5367003099159173]),
    ("addsign", [-0.2, -0.35, -0.45]),
])
def test_sign_decay_reads_the_step_before_its_increment(spec, expected):
    history, _ = run_single(spec, [0.0], [[1.0]] * 3, lr=0.1, sign_decay="linear", decay_steps=2)
    close(torch.cat(history), expected)


def test_gravity_counts_steps_from_one():
    # alpha = 0: m starts at 0. beta_1 = (0.9 * 1 + 1) / (1 + 2) (TensorFlow's t = 0 gives 1/2);
    # max|g| = 1, zeta = g / (1 + g^2) = (0.4, -0.5); m = (1 - 19/30) * zeta; p = 1 - 0.1 * m.
    history, state = run_single("gravity", [1.0, 1.0], [[0.5, -1.0]], lr=0.1, alpha=0.0)
    close(state["m"], [0.1466666666666667, -0.18333333333333335])
    close(history[0], [0.9853333333333333, 1.0183333333333333])


def test_lars_trust_ratio():
    # |p| = 5, |g| = 1: r = 0.001 * 5 / (1 + 0.1 * 5) = 1/300, p -= (g + 0.1 p) / 300.
    history, _ = run_single("lars", [3.0, 4.0], [[0.0, 1.0]], weight_decay=0.1, eps=0.0)
    close(history[0], [2.999, 3.9953333333333334])
    # g = 0: r = 1, a plain decay step p -= 0.1 p.
    history, _ = run_single("lars", [3.0, 4.0], [[0.0, 0.0]], weight_decay=0.1, eps=0.0)
    close(history[0], [2.7, 3.6])
    # trust_clip (LARC): min(r / lr, 1) = min(3.33, 1) = 1 at lr = 1e-3.
    history, _ = run_single("lars", [3.0, 4.0], [[0.0, 1.0]], lr=1e-3, weight_decay=0.1, eps=0.0, trust_clip=True)
    close(history[0], [2.9997, 3.9986])


def test_adan_first_difference_is_zero():
    # Step 1, g = 2: m / (1 - 0.98) = 2, m_diff = 0, sqrt(v / (1 - 0.99)) = 2: p = 1 - 1e-3 * 2 / (2 + 1e-8).
    # Step 2, g = 0 (difference -2): m = 0.0392, m_diff = -0.16, v = 0.0396 + 0.01 * 1.84^2 = 0.073456;
    # p -= 1e-3 * (0.0392 / 0.0396 + 0.92 * -0.16 / 0.1536) / (sqrt(0.073456 / 0.0199) + 1e-8).
    history, state = run_single("adan", [1.0], [[2.0], [0.0]])
    p1 = 1 - 1e-3 * 2 / (2 + 1e-8)
    close(history[0], [p1])
    close(state["v"], [0.073456])
    close(history[1], [p1 - 1e-3 * (0.0392 / 0.0396 - 0.92 * 0.16 / 0.1536) / (math.sqrt(0.073456 / 0.0199) + 1e-8)])
    # proximal decay divides after the step: (p - lr * u) / (1 + lr * weight_decay)
    history, _ = run_single("adan", [1.0], [[2.0]], weight_decay=0.5)
    close(history[0], [p1 / (1 + 1e-3 * 0.5)])


def test_mars_paths_by_exact_dimension():
    # 2-D takes MARS from the first step: c = 1.475 * (3, 4), norm 7.375 > 1, so c = (0.6, 0.8)
    # (timm: c_1 = g, unclipped); m / ((sqrt(v / 0.01) + eps) * 0.05) = 0.6 / (0.6 + 1e-8) per element.
    history, _ = run_single("mars", [[1.0, 1.0]], [[[3.0, 4.0]]])
    close(history[0], [[1 - 3e-3 * 0.6 / (0.6 + 1e-8)] * 2])
    # 1-D and 3-D take AdamW with betas_1d = (0.9, 0.95) and weight_decay_1d = 0.1 although
    # weight_decay = 0: p = 1 - 3e-3 * (0.1 + 1 / (1 + 1e-8)).
    for p0, g in (([1.0], [1.0]), ([[[1.0]]], [[[1.0]]])):
        history, _ = run_single("mars", p0, [g])
        close(history[0].flatten(), [1 - 3e-3 * (0.1 + 1 / (1 + 1e-8))])


# --- randn(): the init-only random function ----------------------------------------------------------


RANDOM_INIT = """optimizer RandomInit
hyper lr = 0.1 in (0, inf)
hyper scale = 2 in [0, inf)
state a = randn() * scale
state b = randn()
a = 0.9 * a + g
b = 0.9 * b + g
u = a + b
p = p - lr * u
"""


def test_randn_draws_each_state_separately_from_the_global_rng():
    cls = optdsl.load(source=RANDOM_INIT)
    param = torch.nn.Parameter(torch.zeros(4, 3))
    opt = cls([param], scale=0.5)
    param.grad = torch.zeros(4, 3)
    torch.manual_seed(7)
    opt.step()
    torch.manual_seed(7)
    first, second = torch.randn(4, 3), torch.randn(4, 3)
    close(opt.state[param]["a"], 0.9 * 0.5 * first.double(), rel=1e-6)
    close(opt.state[param]["b"], 0.9 * second.double(), rel=1e-6)


def test_randn_in_the_ir_interpreter_matches_the_generated_code():
    from optdsl.compiler import from_text, lower
    from optdsl.ir.evaluate import evaluate_step

    rule, _ = lower(from_text(RANDOM_INIT))
    p, g = torch.zeros(5), torch.ones(5)
    torch.manual_seed(3)
    _, state = evaluate_step(rule, p, g, 1, {})
    cls = optdsl.load(source=RANDOM_INIT)
    param = torch.nn.Parameter(torch.zeros(5))
    opt = cls([param])
    param.grad = torch.ones(5)
    torch.manual_seed(3)
    opt.step()
    for name in ("a", "b"):
        close(opt.state[param][name], state[name], rel=1e-6)


@pytest.mark.parametrize("text,message", [
    ("optimizer R\nstate m = zeros\nm = randn()\np = p - 0.1 * m\n",
     "3:5: error: randn() is only allowed in a state initializer"),
    ("optimizer R\nstate s: scalar = randn()\np = p - s * g\n", "scalar state 's' cannot start as a tensor"),
    ("optimizer R\nstate m = randn(1)\np = p - 0.1 * m\n", "randn() takes 0 arguments, got 1"),
])
def test_randn_misuse_is_a_located_error(text, message):
    with pytest.raises(optdsl.SpecError) as err:
        optdsl.compile_spec(source=text)
    assert message in err.value.format()


def test_gravity_velocity_starts_at_alpha_over_lr_standard_deviations():
    cls = optdsl.load("gravity")
    param = torch.nn.Parameter(torch.zeros(200, 200))
    opt = cls([param], lr=0.01, alpha=0.05)
    param.grad = torch.zeros(200, 200)
    torch.manual_seed(0)
    opt.step()  # g = 0: zeta = 0, so m = beta_1 * m0
    m0 = opt.state[param]["m"] / ((0.9 + 1) / 3)
    assert m0.std().item() == pytest.approx(0.05 / 0.01, rel=0.02)
    assert abs(m0.mean().item()) < 0.05


def test_host_where_with_a_number_beside_a_tensor():
    """A group-scalar where whose branches are a tensor and a number (AdaBelief's
    "no step" branch): both code paths give the number as a tensor."""
    text = "optimizer W\nhyper enabled = true\nstate m = zeros\nm = 0.5 * m + g\nu = where(enabled, m, 0)\np = p - 0.1 * u\n"
    cls = optdsl.load(source=text)
    for foreach in (True, False):
        for enabled, expected in ((True, [0.9, 1.2]), (False, [1.0, 1.0])):
            param = torch.nn.Parameter(torch.ones(2))
            param.grad = torch.tensor([1.0, -2.0])
            cls([param], enabled=enabled, foreach=foreach).step()
            close(param.detach(), expected, rel=1e-6)


# --- the library as a whole ------------------------------------------------------------------

import ast as pyast  # noqa: E402
import re  # noqa: E402
from pathlib import Path  # noqa: E402

from optdsl.compiler import builtin_specs, parse, resolve  # noqa: E402
from optdsl.frontend import ast as spec_ast  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
# Not compiler code: optdsl/search/ runs the rule search, which scores candidates against a
# tuned AdamW baseline and warm-starts from SGD by name; optdsl/demo.py is the `optdsl demo`
# command, whose job is to train the adamw spec beside torch.optim.AdamW.
NOT_COMPILER = ("optdsl/search/", "optdsl/demo.py")


def spec_names() -> set[str]:
    """Every built-in spec's file stem and optimizer class name, lower-cased."""
    names = set()
    for stem, path in builtin_specs().items():
        names.add(stem.lower())
        names.add(re.search(r"^optimizer\s+(\w+)", path.read_text(encoding="utf-8"), re.M).group(1).lower())
    return names


def _docstrings(tree: pyast.AST) -> set[int]:
    out = set()
    for node in pyast.walk(tree):
        if isinstance(node, (pyast.Module, pyast.ClassDef, pyast.FunctionDef, pyast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, pyast.Expr) and isinstance(first.value, pyast.Constant) and isinstance(first.value.value, str):
                out.add(id(first.value))
    return out


def code_words(source: str) -> list[tuple[int, str]]:
    """(line, text) of a Python file's code: names, attributes, parameters, imports and string
    constants (f-string parts too); not comments or docstrings, which may cite an optimizer."""
    tree = pyast.parse(source)
    docs = _docstrings(tree)
    out = []
    for node in pyast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, pyast.Name):
            out.append((line, node.id))
        elif isinstance(node, pyast.Attribute):
            out.append((line, node.attr))
        elif isinstance(node, (pyast.FunctionDef, pyast.AsyncFunctionDef, pyast.ClassDef)):
            out.append((line, node.name))
        elif isinstance(node, pyast.arg):
            out.append((line, node.arg))
        elif isinstance(node, pyast.keyword) and node.arg:
            out.append((line, node.arg))
        elif isinstance(node, pyast.alias):
            out += [(line, node.name), (line, node.asname or "")]
        elif isinstance(node, pyast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            out.append((line, node.value))
    return out


def whole_word(name: str) -> re.Pattern:
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", re.IGNORECASE)


def name_hits(words: list[tuple[int, str]], names: set[str]) -> list[tuple[int, str, str]]:
    """Whole words (letters and digits; ``_`` separates words) equal to a spec name, any case."""
    patterns = {n: whole_word(n) for n in names}
    return [(line, n, text) for line, text in words for n, pattern in patterns.items() if pattern.search(text)]


def test_the_name_check_finds_names_in_code():
    """The scan itself: a name in an identifier, an attribute, a string or an f-string part is
    found in any case; a name inside a longer word or in a docstring or comment is not."""
    source = ('"""Adam is cited here."""\nimport math\n# lion\n\n\ndef f(x, beta_Lion=1):\n'
              '    """AdamW too."""\n    y = x.RADAM + math.adamwx\n    return f"{y} SGD-like"\n')
    hits = name_hits(code_words(source), {"adam", "adamw", "lion", "radam", "sgd"})
    assert sorted((line, n) for line, n, _ in hits) == [(6, "lion"), (8, "radam"), (9, "sgd")]


def test_no_builtin_spec_name_in_the_compiler():
    """The compiler knows no optimizer: nothing in its code, templates or grammar names a
    built-in spec (file stem or class name, any case, as a whole word)."""
    names = spec_names()
    assert {"adamw", "lion", "muon", "sgd", "schedule_free_adamw", "schedulefreeadamw"} <= names
    hits = []
    for path in sorted((REPO / "optdsl").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith(NOT_COMPILER):
            continue
        hits += [(rel, *hit) for hit in name_hits(code_words(path.read_text(encoding="utf-8")), names)]
    for path in sorted((REPO / "templates").iterdir()) + sorted((REPO / "grammars").iterdir()):
        lines = list(enumerate(path.read_text(encoding="utf-8").splitlines(), 1))
        hits += [(path.relative_to(REPO).as_posix(), *hit) for hit in name_hits(lines, names)]
    assert not hits, "\n".join(f"{f}:{line}: {n!r} in {text[:80]!r}" for f, line, n, text in hits)


# "(Authors, Year" in parentheses, e.g. (Kingma & Ba, 2015, ...) or (Hinton, Lecture 6e of "...", 2012)
CITATION = re.compile(r"\((?:[A-Z][\w'-]*|[a-z][a-z0-9]+)[^()]*?,\s*(?:[^()]*?,\s*)?(?:19|20)\d\d\b")
# and what identifies the work: a quoted title, an arXiv id, a venue or a link
WORK = re.compile(r'"[^"]{12,}"|arXiv:\d{4}\.\d{4,5}|\b(?:JMLR|NeurIPS|ICLR|ICML|TPAMI)\b|\w\.github\.io/\S+')


def spec_doc(name: str) -> str:
    docs = [item for item in parse(resolve(name)).items if isinstance(item, spec_ast.Doc)]
    return docs[0].text if docs else ""


def cites_a_paper(doc: str) -> bool:
    return any(WORK.search(doc[m.start():m.start() + 400]) for m in CITATION.finditer(doc))


def test_citation_check():
    assert cites_a_paper('X (Kingma & Ba, 2015, arXiv:1412.6980).')
    assert cites_a_paper('X (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms").')
    assert cites_a_paper('X (Duchi, Hazan & Singer, 2011, JMLR 12).')
    assert not cites_a_paper("Stochastic gradient descent with momentum (torch.optim.SGD).")
    assert not cites_a_paper("X (Kingma & Ba, 2015).")  # nothing to find the paper by
    assert not cites_a_paper("X, see arXiv:1412.6980 (2015).")  # no authors


def test_at_least_30_specs_cite_a_paper():
    citing = [name for name in builtin_specs() if cites_a_paper(spec_doc(name))]
    assert len(citing) >= 30, sorted(set(builtin_specs()) - set(citing))
