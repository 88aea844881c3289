"""Variants: written once in the DSL, applied to any rule, checked against references.

References: pytorch-optimizer 4.1.0 (Lion/LaProp with cautious=True, the OrthoGrad
wrapper), grams-pytorch 0.0.2 (official Grams), and eager transcriptions of the
formulas where no package exists (C-AdamW, MGUP's CMGUP, Adaptive Braking,
per-tensor clip_grad_norm_), each citing its source.
"""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import pytest
import torch

import optdsl
import eager_references as eager
from eager_references import EagerCautiousAdamW
from harness import groups, max_relative_error, run_pair
from optdsl.compiler import SpecNotFound

# Hypers that make every variant matter: SGD, SGDP, RMSprop and LARS keep no velocity at momentum 0;
# without decay Adagrad's update has the sign of g, and with alpha >= 1 so has AddSign's
# (alpha + sign(g) sign(m)) g, so Grams would leave them unchanged.
INTERESTING = {
    "sgd": {"momentum": 0.9, "lr": 0.01},
    "rmsprop": {"momentum": 0.9},
    "adagrad": {"weight_decay": 0.1},
    "lars": {"momentum": 0.9, "lr": 0.1},
    "addsign": {"alpha": 0.5},
    "sgdp": {"momentum": 0.9},
    "adafactor": {"style": "hf", "beta1": 0.9},  # by default its update g / sqrt(v) has the sign of g
}
# Pairs a variant cannot apply to, by design: the located error must name what is missing.
# Schedule-Free has no update direction u (its step interpolates y toward z) and no velocity m;
# Adafactor keeps m only for style "hf" with beta1 > 0, SCALE only for the output layer and vectors,
# so Adaptive Braking's cosine with m has no m to read for their other tensors.
INCOMPATIBLE = {
    ("adagrad", "adaptive_braking"): "reads 'm', which optimizer 'Adagrad' does not have",
    ("schedule_free_adamw", "adaptive_braking"): "reads 'm', which optimizer 'ScheduleFreeAdamW' does not have",
    **{("schedule_free_adamw", v): "hooks u, but optimizer 'ScheduleFreeAdamW' never assigns u"
       for v in ("cautious", "grams", "cmgup")},
    ("adafactor", "adaptive_braking"): r"state 'm' exists only where \(style == \"hf\"\) \* \(beta1 > 0\)",
    ("scale", "adaptive_braking"): r"state 'm' exists only where max\(role == \"output\", ndim < 2\)",
}
# Pairs a variant applies to but cannot change, by design: the test checks it really does not.
NO_EFFECT = {
    ("grams", "grams"): "Grams' direction already is sign(g) * |u|",
    ("powersign", "grams"): "PowerSign's base^(sign(g) sign(m)) * g always has the sign of g",
}


@pytest.mark.parametrize("spec", optdsl.builtin_specs())
def test_every_variant_applies_to_every_rule_and_changes_the_update(spec):
    base = optdsl.load(spec)
    for variant in optdsl.builtin_variants():
        if (spec, variant) in INCOMPATIBLE:
            with pytest.raises(optdsl.SpecError, match=INCOMPATIBLE[(spec, variant)]):
                optdsl.load(spec, variants=[variant])
            continue
        cls = optdsl.load(spec, variants=[variant])
        assert cls.__name__.endswith(base.__name__) and cls.__name__ != base.__name__
        kw = INTERESTING.get(spec, {})
        ours, plain = run_pair(lambda ps: cls(ps, **kw), lambda ps: base(ps, **kw), steps=5, grad_scale=3.0)
        assert all(torch.isfinite(p).all() for p in ours), f"{spec}+{variant}"
        if (spec, variant) in NO_EFFECT:
            assert max_relative_error(ours, plain) <= 1e-6, f"{variant} changed {spec}: {NO_EFFECT[(spec, variant)]}?"
        else:
            assert max_relative_error(ours, plain) > 1e-5, f"{variant} did not change {spec}"


def test_incompatible_pairs_are_only_the_known_ones():
    failing = set()
    for spec, variant in itertools.product(optdsl.builtin_specs(), optdsl.builtin_variants()):
        try:
            optdsl.compile_spec(spec, variants=[variant])
        except optdsl.SpecError:
            failing.add((spec, variant))
    assert failing == set(INCOMPATIBLE)


# --- Cautious ---------------------------------------------------------------------------------


def _kozistr():
    return pytest.importorskip("pytorch_optimizer")


@pytest.mark.parametrize("foreach", [True, False])
def test_cautious_lion_matches_pytorch_optimizer(foreach):
    po = _kozistr()
    cls = optdsl.load("lion", variants=["cautious"])
    ours, ref = run_pair(
        lambda ps: cls(groups(ps, {"lr": 3e-4}), lr=1e-3, weight_decay=0.1, foreach=foreach),
        lambda ps: po.Lion(groups(ps, {"lr": 3e-4}), lr=1e-3, weight_decay=0.1, cautious=True),
    )
    assert max_relative_error(ours, ref) <= 1e-6


def test_cautious_laprop_matches_pytorch_optimizer():
    po = _kozistr()
    cls = optdsl.load("laprop", variants=["cautious"])
    ours, ref = run_pair(
        lambda ps: cls(groups(ps, {"lr": 1e-3}), lr=4e-3, weight_decay=0.01, decay_style="lr"),
        lambda ps: po.LaProp(groups(ps, {"lr": 1e-3}), lr=4e-3, weight_decay=0.01, cautious=True),
    )
    assert max_relative_error(ours, ref) <= 1e-6


def test_laprop_without_caution_matches_pytorch_optimizer_too():
    po = _kozistr()
    cls = optdsl.load("laprop")
    ours, ref = run_pair(
        lambda ps: cls(groups(ps, {"lr": 1e-3}), lr=4e-3, weight_decay=0.01, decay_style="lr"),
        lambda ps: po.LaProp(groups(ps, {"lr": 1e-3}), lr=4e-3, weight_decay=0.01),
    )
    assert max_relative_error(ours, ref) <= 1e-6


@pytest.mark.parametrize("norm", ["paper", "timm"])
def test_cautious_adamw_matches_eager_transcription(norm):
    cls = optdsl.load("adamw", variants=["cautious"])
    ours, ref = run_pair(
        lambda ps: cls(groups(ps, {"lr": 3e-3}), cautious_norm=norm),
        lambda ps: EagerCautiousAdamW(groups(ps, {"lr": 3e-3}), norm=norm),
    )
    assert max_relative_error(ours, ref) <= 1e-6


def test_cautious_normalisations_differ():
    cls = optdsl.load("adamw", variants=["cautious"])
    paper, timm = run_pair(lambda ps: cls(ps, cautious_norm="paper"), lambda ps: cls(ps, cautious_norm="timm"), steps=3)
    assert max_relative_error(paper, timm) > 1e-6


# --- Grams, OrthoGrad, CMGUP, Adaptive Braking, ClipNorm -----------------------------------------


def test_grams_matches_the_official_package():
    grams = pytest.importorskip("grams")
    cls = optdsl.load("adamw", variants=["grams"])
    ours, ref = run_pair(
        lambda ps: cls(groups(ps, {"lr": 3e-3}), eps=1e-6, weight_decay=0.0, eps_style="hf"),
        lambda ps: grams.Grams(groups(ps, {"lr": 3e-3}), eps=1e-6, weight_decay=0.0),
    )
    assert max_relative_error(ours, ref) <= 1e-6


@pytest.mark.parametrize("base", ["sgd", "adamw"])
def test_orthograd_matches_pytorch_optimizer_wrapper(base):
    po = _kozistr()
    kw = {"lr": 0.01, "momentum": 0.9} if base == "sgd" else {"lr": 1e-2}
    ref_cls = torch.optim.SGD if base == "sgd" else torch.optim.AdamW
    cls = optdsl.load(base, variants=["orthograd"])
    ours, ref = run_pair(
        lambda ps: cls(groups(ps, {"lr": 3e-3}), **kw),
        lambda ps: po.OrthoGrad(ref_cls, params=groups(ps, {"lr": 3e-3}), **kw),
    )
    assert max_relative_error(ours, ref) <= 1e-6


def test_orthograd_zeroes_a_gradient_parallel_to_the_parameter():
    cls = optdsl.load("sgd", variants=["orthograd"])
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0, -3.0]))
    opt = cls([p], lr=0.1)
    p.grad = 2.5 * p.detach().clone()
    opt.step()
    assert torch.equal(p.detach(), torch.tensor([1.0, 2.0, -3.0]))


class EagerCMGUPAdamW(torch.optim.Optimizer):
    """Transcription of MaeChd/MGUP MGUP/MGUP_AdamW.py, CMGUP branch: u = m / (sqrt(v) + eps),
    step = lr * sqrt(1 - b2^t) / (1 - b1^t), phi = alpha where u*g >= 0 else gamma, p -= step*phi*u."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, alpha=2.0, gamma=0.1):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, alpha=alpha, gamma=gamma))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                st = self.state[p]
                if not st:
                    st.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                st["t"] += 1
                g, t = p.grad, st["t"]
                st["m"].mul_(b1).add_(g, alpha=1 - b1)
                st["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
                u = st["m"] / (st["v"].sqrt() + group["eps"])
                step = group["lr"] * math.sqrt(1 - b2**t) / (1 - b1**t)
                a = (u * g >= 0).to(g.dtype)
                phi = a * group["alpha"] + (1 - a) * group["gamma"]
                p.add_(phi * u, alpha=-step)


def test_cmgup_matches_eager_transcription():
    cls = optdsl.load("adamw", variants=["cmgup"])
    ours, ref = run_pair(
        lambda ps: cls(groups(ps, {"lr": 3e-3}), eps=1e-6, weight_decay=0.0, eps_style="hf", mgup_gamma=0.2),
        lambda ps: EagerCMGUPAdamW(groups(ps, {"lr": 3e-3}), eps=1e-6, gamma=0.2),
    )
    assert max_relative_error(ours, ref) <= 1e-6


def _braking_hook(opt: torch.optim.SGD, rho: float):
    """Adaptive Braking before each torch SGD step: g <- g * (1 - rho * cos(g, velocity))."""

    def pre_step(optimizer, args, kwargs):
        for group in optimizer.param_groups:
            for p in group["params"]:
                buf = optimizer.state[p].get("momentum_buffer")
                m = torch.zeros_like(p) if buf is None else buf
                g = p.grad
                cos = torch.dot(g.reshape(-1), m.reshape(-1)) / (g.norm() * m.norm() + 1e-12)
                p.grad = g * (1 - rho * cos)

    opt.register_step_pre_hook(pre_step)
    return opt


def test_adaptive_braking_matches_eager_transcription():
    cls = optdsl.load("sgd", variants=["adaptive_braking"])
    kw = {"lr": 0.01, "momentum": 0.9}
    ours, ref = run_pair(
        lambda ps: cls(groups(ps, {"lr": 3e-3}), braking_rho=0.7, **kw),
        lambda ps: _braking_hook(torch.optim.SGD(groups(ps, {"lr": 3e-3}), **kw), 0.7),
    )
    assert max_relative_error(ours, ref) <= 1e-6


def _clip_hook(opt, max_norm):
    def pre_step(optimizer, args, kwargs):
        for group in optimizer.param_groups:
            for p in group["params"]:
                torch.nn.utils.clip_grad_norm_([p], max_norm)

    opt.register_step_pre_hook(pre_step)
    return opt


def test_clip_norm_matches_per_tensor_clip_grad_norm():
    cls = optdsl.load("adamw", variants=["clip_norm"])
    ours, ref = run_pair(
        lambda ps: cls(groups(ps, {"lr": 3e-3}), clip_max_norm=2.0),
        lambda ps: _clip_hook(torch.optim.AdamW(groups(ps, {"lr": 3e-3})), 2.0),
    )
    assert max_relative_error(ours, ref) <= 1e-6


# --- composition --------------------------------------------------------------------------------


@pytest.mark.parametrize("order", [("cautious", "grams"), ("grams", "cautious")])
def test_composition_follows_the_given_order(order):
    fns = {"cautious": eager.cautious, "grams": eager.grams}
    cls = optdsl.load("adamw", variants=list(order))
    assert cls.__name__ == "".join({"cautious": "Cautious", "grams": "Grams"}[v] for v in order) + "AdamW"
    ours, ref = run_pair(lambda ps: cls(ps), lambda ps: eager.EagerAdamW(ps, modifiers=[fns[v] for v in order]))
    assert max_relative_error(ours, ref) <= 1e-6


def test_the_two_orders_really_differ():
    a = optdsl.load("adamw", variants=["cautious", "grams"])
    b = optdsl.load("adamw", variants=["grams", "cautious"])
    pa, pb = run_pair(lambda ps: a(ps), lambda ps: b(ps), steps=5)
    assert max_relative_error(pa, pb) > 1e-6


def test_on_g_variants_compose_in_order():
    cls = optdsl.load("sgd", variants=["clip_norm", "orthograd"])
    po = _kozistr()
    kw = {"lr": 0.01, "momentum": 0.9}

    def ref(ps):
        inner = po.OrthoGrad(torch.optim.SGD, params=ps, **kw)
        orig = inner.step

        def step(closure=None):
            for p in ps:
                torch.nn.utils.clip_grad_norm_([p], 0.5)
            return orig(closure)

        inner.step = step
        return inner

    ours, theirs = run_pair(lambda ps: cls(ps, clip_max_norm=0.5, **kw), ref, grad_scale=3.0)
    assert max_relative_error(ours, theirs) <= 1e-6


# --- the language of variants: `use`, names, errors --------------------------------------------

NO_U = """optimizer NoU
hyper lr = 0.1
p = p - lr * g
"""

CLASH = """variant Clash on u
hyper lr = 0.5
u = u * lr
"""


def test_use_inside_a_spec_equals_the_command_line_variant():
    text = open(optdsl.compiler.builtin_specs()["adamw"]).read().replace("state m = zeros", "use cautious\n\nstate m = zeros")
    via_use = optdsl.load(source=text)
    via_api = optdsl.load("adamw", variants=["cautious"])
    assert via_use.__name__ == via_api.__name__ == "CautiousAdamW"
    a, b = run_pair(lambda ps: via_use(ps), lambda ps: via_api(ps), steps=10)
    assert max_relative_error(a, b) == 0.0


def test_variant_hypers_are_constructor_keywords_with_defaults():
    cls = optdsl.load("adamw", variants=["cautious", "cmgup"])
    opt = cls([torch.nn.Parameter(torch.zeros(2))], cautious_norm="timm", mgup_alpha=3.0)
    group = opt.param_groups[0]
    assert (group["cautious_norm"], group["mgup_alpha"], group["mgup_gamma"]) == ("timm", 3.0, 0.1)
    with pytest.raises(ValueError, match="Invalid cautious_norm"):
        cls([torch.nn.Parameter(torch.zeros(2))], cautious_norm="bogus")


def test_u_variant_on_a_rule_without_u_is_a_located_error():
    with pytest.raises(optdsl.SpecError) as err:
        optdsl.compile_spec(source=NO_U, variants=["cautious"])
    text = err.value.format()
    assert "specs/variants/cautious.opt:1:9: error: variant 'Cautious' hooks u, but optimizer 'NoU' never assigns u" in text
    assert "^^^^^^^^" in text and "hint: name the rule's update direction u" in text


def test_reading_a_state_the_rule_lacks_is_located_in_the_variant():
    with pytest.raises(optdsl.SpecError) as err:
        optdsl.compile_spec("adagrad", variants=["adaptive_braking"])
    d = err.value.diagnostics[0]
    assert (d.span.file, d.span.line, d.span.col) == ("specs/variants/adaptive_braking.opt", 11, 17)
    assert "its states: acc" in d.message
    assert "cosine = dot(g, m)" in err.value.format()


def test_variant_hyper_clashing_with_the_rule_is_located(tmp_path):
    path = tmp_path / "clash.opt"
    path.write_text(CLASH)
    with pytest.raises(optdsl.SpecError) as err:
        optdsl.compile_spec("adamw", variants=[str(path)])
    d = err.value.diagnostics[0]
    assert (d.span.file, d.span.line, d.span.col) == (str(path), 2, 7)
    assert "hyper 'lr' of variant 'Clash' clashes with 'lr' of optimizer 'AdamW'" in d.message


def test_unknown_variant_suggests_the_closest():
    with pytest.raises(SpecNotFound, match="did you mean cautious"):
        optdsl.compile_spec("adamw", variants=["cautous"])
    text = open(optdsl.compiler.builtin_specs()["sgd"]).read().replace("state m = zeros", "use cautous\nstate m = zeros")
    with pytest.raises(optdsl.SpecError, match="did you mean cautious"):
        optdsl.compile_spec(source=text)


def test_variant_applied_twice_is_an_error():
    with pytest.raises(optdsl.SpecError, match="applied twice"):
        optdsl.compile_spec("adamw", variants=["grams", "grams"])


def test_variant_locals_never_meet_the_rules():
    rule = """optimizer Shadow
state m = zeros
mask = g * 0 + 1
m = 0.9 * m + g
u = m
p = p - 0.1 * u * mask
"""
    cls = optdsl.load(source=rule, variants=["cautious"])
    base = optdsl.load(source=rule)
    ours, ref = run_pair(lambda ps: cls(ps), lambda ps: _with_cautious(base)(ps), steps=5)
    assert max_relative_error(ours, ref) <= 1e-6


def _with_cautious(base_cls):
    """The base rule with its update multiplied by the Cautious mask, eagerly (u = m here)."""

    class Eager(torch.optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, {})

        @torch.no_grad()
        def step(self):
            for group in self.param_groups:
                for p in group["params"]:
                    st = self.state[p]
                    st.setdefault("m", torch.zeros_like(p))
                    st["m"].mul_(0.9).add_(p.grad)
                    p.add_(eager.cautious(st["m"], p.grad), alpha=-0.1)

    return Eager


def test_cli_variant_flag_and_listing(tmp_path):
    out = tmp_path / "c.py"
    run = subprocess.run([sys.executable, "-m", "optdsl", "compile", "lion", "--variant", "cautious", "-o", str(out)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "class CautiousLion(torch.optim.Optimizer, metaclass=_SpecClass)" in out.read_text()
    listing = subprocess.run([sys.executable, "-m", "optdsl", "variants"], capture_output=True, text=True)
    names = [line.split()[0] for line in listing.stdout.splitlines()]
    assert names == sorted(optdsl.builtin_variants())
    bad = subprocess.run([sys.executable, "-m", "optdsl", "compile", "adamw", "-V", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown variant 'nope'" in bad.stderr


def test_explain_prints_the_combined_rule():
    text = optdsl.explain("adamw", variants=["cautious"])
    assert "variants: cautious" in text
    assert "cautious_mask = u * g > 0" in text


def test_variant_locals_may_share_a_name_with_a_rule_state_but_never_assign_it(tmp_path):
    """A name the variant assigns before reading is its own local (OrthoGrad's `n` beside a rule
    state `n` is fine); one it reads first is the rule's state, and assigning it is an error."""
    rule = open(optdsl.compiler.builtin_specs()["sgd"]).read()
    rule = rule.replace("state m = zeros", "state m = zeros\nstate n = zeros")
    rule = rule.replace("p = p - lr * u", "n = 0.5 * n + g\np = p - lr * u - 0 * n")
    local = tmp_path / "local.opt"
    local.write_text("variant Local on g\nn = norm(g)\ng = g / (n + 1)\n")
    cls = optdsl.load(source=rule, variants=[str(local)])
    assert cls.__name__ == "LocalSGD"
    p = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    opt = cls([p], lr=0.1, momentum=0.9)
    p.grad = torch.tensor([3.0, 4.0])
    opt.step()
    # the variant's n is norm(g) = 5 (its own local); the rule's state n saw the rescaled g
    torch.testing.assert_close(opt.state[p]["n"], torch.tensor([0.5, 4.0 / 6]))
    bad = tmp_path / "bad.opt"
    bad.write_text("variant Bad on u\nx = m\nm = u\nu = x\n")
    with pytest.raises(optdsl.SpecError, match="cannot assign 'm'"):
        optdsl.compile_spec("sgd", variants=[str(bad)])
