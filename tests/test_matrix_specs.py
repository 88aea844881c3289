"""The spec library's matrix specs (muon, adamuon, auon, scale) against their references.

References: torch.optim.Muon with torch.optim.AdamW for the other tensors (TorchMuonPair),
and the eager transcriptions of tests/matrix_references.py (Keller Jordan's muon.py, the
official AdaMuon, ryyzn9/AuON's AuON and HybridAuON, OptimAI-Lab's SCALE), 200 steps on
random gradients, odd shapes (7x5, 5x7, a 4x3x3x3 conv weight, 1-D biases) in two param
groups with different hypers.

Tolerances:

* Rules without Newton-Schulz, or with it in fp32 (``ns_bf16=False`` against the reference
  run in fp32): 1e-6 relative to the parameter scale for elementwise rules, 1e-5 where
  Newton-Schulz's matrix products (whose summation order differs) are involved.
* Newton-Schulz in bfloat16 (the default): the quintic iteration amplifies a one-ulp change
  of its bf16 input up to ~3.4x per iteration along small singular directions, so two valid
  execution orders of the same reference differ by far more than a bf16 ulp (measured 1e-4
  to 5e-3 after 200 steps). Each such case therefore checks (a) against the reference run
  in the generated code's order (normalized in fp32, then cast; torch's addmm form):
  tight where the reference keeps everything else in fp32, else within the bf16 rounding of
  the parts the reference keeps in bf16; and (b) against the reference itself: no farther
  from it than that reordered reference is (twice its drift).
* bf16 parameters: against the fp32 reference rounded to bf16 each step, 4 bf16 ulps.

Every case runs on the foreach and the per-tensor path (these rules take the per-tensor path
for their whole-tensor reductions either way), and once on the Triton backend (20 steps under
the interpreter). The bad-input tests check which branch muon takes per style and rank, and
the ValueError a rule needing a matrix gives for a 1-D parameter.
"""

from __future__ import annotations

import functools

import matrix_references as mr
import pytest
import torch
from harness import make_params, max_relative_error, run_pair

import optdsl

ELEMENTWISE_TOL = 1e-6
NS_FP32_TOL = 1e-5
BF16_ULP = 2**-8
SHAPES = [(7, 5), (5, 7), (4, 3, 3, 3), (3, 5, 7), (7,), (1,)]
FLAT_SHAPES = [(7, 5), (5, 7), (7,), (1,)]  # where the reference orthogonalizes >2-D tensors otherwise (see below)
KELLER = {"style": "keller", "lr": 0.02, "weight_decay": 0.0, "adam_eps": 1e-10, "betas": (0.9, 0.95)}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: torch's intra-op threads only contend (on a shared 2-core machine,
    8x slower measured), so this module runs single-threaded and restores the setting after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def two_groups(params, second):
    return [{"params": params[:2]}, {"params": params[2:], **second}]


def case(spec, ours, ref, ref_kw, second, ref_second=None, shapes=SHAPES, tol=ELEMENTWISE_TOL, steps=200):
    """A comparison: ``ours``/``ref_kw`` constructor options; ``second``/``ref_second`` the second group's."""
    return {"spec": spec, "ours": ours, "ref": ref, "ref_kw": ref_kw, "second": second,
            "ref_second": second if ref_second is None else ref_second, "shapes": shapes, "tol": tol, "steps": steps}


def case_id(c):
    extra = ",".join(f"{k}={v}" for k, v in c["ours"].items() if k not in ("lr", "weight_decay", "adam_eps", "betas"))
    return f"{c['spec']}[{extra}]" if extra else c["spec"]


class AdaMuonWithoutSign(mr.AdaMuonRef):
    """The official AdaMuon without its sign before Newton-Schulz (the spec's sign_first=false, the
    timm / pytorch-optimizer choice; neither package is otherwise this rule)."""

    before_ns = staticmethod(lambda g: g)


# Cases whose every step is fp32 on both sides (no bf16 Newton-Schulz).
FP32_CASES = [
    case("muon", {"ns_bf16": False}, mr.TorchMuonRef, {"bf16": False}, {"lr": 3e-3, "momentum": 0.9, "betas": (0.8, 0.99)},
         tol=NS_FP32_TOL),
    case("muon", {"ns_bf16": False, "nesterov": False}, mr.TorchMuonRef, {"bf16": False, "nesterov": False},
         {"lr": 3e-3, "weight_decay": 0.01}, tol=NS_FP32_TOL),
    case("muon", {"ns_bf16": False, "adjust_lr": "match_rms_adamw"}, mr.TorchMuonRef,
         {"bf16": False, "adjust_lr_fn": "match_rms_adamw"}, {"lr": 3e-3}, tol=NS_FP32_TOL),
    case("muon", {**KELLER, "ns_bf16": False}, mr.KellerMuonRef, {"bf16": False}, {"lr": 3e-3, "momentum": 0.9},
         shapes=[(7, 5), (5, 7), (4, 3, 3, 3), (7,), (1,)], tol=NS_FP32_TOL),
    case("adamuon", {"ns_bf16": False}, mr.AdaMuonRef, {"bf16": False}, {"lr": 3e-3, "momentum": 0.9},
         shapes=FLAT_SHAPES, tol=NS_FP32_TOL),
    case("adamuon", {"ns_bf16": False, "nesterov": False, "weight_decay": 0.1}, mr.AdaMuonRef,
         {"bf16": False, "nesterov": False, "weight_decay": 0.1}, {"lr": 3e-3}, shapes=FLAT_SHAPES, tol=NS_FP32_TOL),
    case("adamuon", {"ns_bf16": False, "sign_first": False}, AdaMuonWithoutSign, {"bf16": False}, {"lr": 3e-3},
         shapes=FLAT_SHAPES, tol=NS_FP32_TOL),
    case("auon", {}, mr.AuONRef, {}, {"lr": 0.1, "gamma": 1.0}),
    case("auon", {"weight_decay": 0.05, "momentum": 0.9}, mr.AuONRef, {"weight_decay": 0.05, "momentum": 0.9},
         {"lr": 0.05, "gamma": 2.0}),
    case("auon", {"hybrid": True}, mr.AuONRef, {"hybrid": True}, {"lr": 0.1, "momentum": 0.9}, shapes=FLAT_SHAPES,
         tol=NS_FP32_TOL),
    case("scale", {}, mr.ScaleRef, {}, {"lr": 3e-4, "weight_decay": 0.1}, {"lr": 3e-4, "wd": 0.1}),
    case("scale", {"role": "output"}, mr.ScaleRef, {"role": "output"}, {"lr": 3e-4, "momentum": 0.5},
         shapes=[(7, 5), (5, 7), (4, 3, 3, 3), (7,), (1,)]),
    case("scale", {"role": "embedding", "adam_lr_factor": 3.0}, mr.ScaleRef, {"role": "embedding", "adam_lr": 3e-4},
         {"lr": 3e-4, "weight_decay": 0.1}, {"lr": 3e-4, "wd": 0.1}, shapes=FLAT_SHAPES),
]


def run_case(c, foreach=None, steps=200, dtype=torch.float32, backend="torch", **options):
    cls = optdsl.load(c["spec"], backend=backend)
    extra = {} if foreach is None else {"foreach": foreach}
    return run_pair(lambda ps: cls(two_groups(ps, c["second"]), **extra, **c["ours"]),
                    lambda ps: c["ref"](two_groups(ps, c["ref_second"]), **c["ref_kw"]),
                    steps=steps, dtype=dtype, shapes=c["shapes"], **options)


@pytest.mark.parametrize("c", FP32_CASES, ids=[case_id(c) for c in FP32_CASES])
@pytest.mark.parametrize("foreach", [True, False])
def test_fp32_matches_reference(c, foreach):
    err = max_relative_error(*run_case(c, foreach=foreach))
    assert err <= c["tol"], f"{case_id(c)}: max relative error {err:.3g}"


def test_parameters_really_move():
    """Guards the cases: a rule and a reference that both did nothing would pass them."""
    for c in FP32_CASES:
        ours, _ = run_case(c, steps=5)
        assert max_relative_error(ours, make_params(shapes=c["shapes"])) > 1e-4, case_id(c)


FIRST_OF_EACH_SPEC = list({c["spec"]: c for c in reversed(FP32_CASES)}.values())


# bf16 params: learning rates large enough that the updates exceed half a bf16 ulp of the parameters
BF16_PARAM_CASES = [
    case("muon", {"ns_bf16": False, "lr": 0.05}, mr.TorchMuonRef, {"bf16": False, "lr": 0.05}, {"lr": 0.02}, tol=NS_FP32_TOL),
    case("adamuon", {"ns_bf16": False, "lr": 0.05}, mr.AdaMuonRef, {"bf16": False, "lr": 0.05}, {"lr": 0.02},
         shapes=FLAT_SHAPES, tol=NS_FP32_TOL),
    case("auon", {"hybrid": True}, mr.AuONRef, {"hybrid": True}, {"lr": 0.1}, shapes=FLAT_SHAPES, tol=NS_FP32_TOL),
    case("scale", {"lr": 0.01, "role": "output"}, mr.ScaleRef, {"lr": 0.01, "role": "output"}, {"lr": 0.02}),
]


@pytest.mark.parametrize("c", BF16_PARAM_CASES, ids=[case_id(c) for c in BF16_PARAM_CASES])
def test_bf16_params_track_rounded_fp32_reference(c):
    """bf16 params, fp32 states: against the fp32 reference rounded to bf16 after every step,
    within a few bf16 ulps of the parameter scale (both round the same fp32 result, so a
    difference needs an fp32 result within its rounding error of a bf16 rounding boundary)."""
    ours, ref = run_case(c, dtype=torch.bfloat16, ref_dtype=torch.float32, round_ref_to=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in ours)
    err = max_relative_error(ours, ref)
    assert err <= 4 * BF16_ULP, f"{case_id(c)}: {err:.3g}"
    moved = max_relative_error(ours, make_params(torch.bfloat16, shapes=c["shapes"]))
    assert moved > 0.05, f"{case_id(c)}: the bf16 parameters barely moved ({moved:.3g})"


# --- Newton-Schulz in bfloat16 (the default) -----------------------------------------------------

# (case, the reference in the generated code's order, the tolerance against it)
BF16_NS_CASES = [
    (case("muon", {}, mr.TorchMuonPair, {}, {"lr": 3e-3, "weight_decay": 0.01, "momentum": 0.9}),
     functools.partial(mr.TorchMuonRef, normalize_first=True), ELEMENTWISE_TOL),
    # options against the real torch.optim.Muon; 100 steps (bf16 matrix products are slow on CPU), 200 in fp32 above
    (case("muon", {"nesterov": False}, mr.TorchMuonPair, {"muon": {"nesterov": False}}, {"lr": 3e-3}, steps=100,
          shapes=FLAT_SHAPES),
     functools.partial(mr.TorchMuonRef, normalize_first=True, nesterov=False), ELEMENTWISE_TOL),
    (case("muon", {"adjust_lr": "match_rms_adamw"}, mr.TorchMuonPair, {"muon": {"adjust_lr_fn": "match_rms_adamw"}},
          {"lr": 3e-3}, steps=100, shapes=FLAT_SHAPES),
     functools.partial(mr.TorchMuonRef, normalize_first=True, adjust_lr_fn="match_rms_adamw"), ELEMENTWISE_TOL),
    # Keller scales the bf16 update in bf16 (ours in fp32): up to half a bf16 ulp of the update per step
    (case("muon", KELLER, mr.KellerMuonRef, {}, {"lr": 3e-3}, shapes=[(7, 5), (5, 7), (4, 3, 3, 3), (7,), (1,)]),
     functools.partial(mr.KellerMuonRef, normalize_first=True, form="addmm"), "bf16 update"),
    # the official AdaMuon keeps v and the update in bf16 (ours in fp32)
    (case("adamuon", {}, mr.AdaMuonRef, {}, {"lr": 3e-3}, shapes=FLAT_SHAPES),
     functools.partial(mr.AdaMuonRef, normalize_first=True, form="addmm"), "bf16 update"),
]


def run_three(c, alt):
    """Ours, the reordered reference and the reference on identical gradients (the third one
    stepped from ``between``); also the drift that rounding each update to bf16 may cause: half
    a bf16 ulp of the reference's largest update element per step, summed, over the parameter scale."""
    cls = optdsl.load(c["spec"])
    alt_kw = c["ref_kw"].get("muon", {})
    lists, bound = {}, [0.0]

    def make_alt(ps):
        lists["alt"], lists["before"] = ps, [p.detach().clone() for p in ps]
        lists["ref"] = [p.detach().clone().requires_grad_(True) for p in ps]
        lists["opt_ref"] = c["ref"](two_groups(lists["ref"], c["ref_second"]), **c["ref_kw"])
        return alt(two_groups(ps, c["ref_second"]), **alt_kw)

    def step_ref(step, _ours, _alt):
        for a, b in zip(lists["alt"], lists["ref"]):
            b.grad = a.grad.clone()
        lists["opt_ref"].step()
        now = [p.detach().clone() for p in lists["ref"]]
        bound[0] += max((a - b).abs().max().item() for a, b in zip(now, lists["before"])) * BF16_ULP / 2
        lists["before"] = now

    ours, reordered = run_pair(lambda ps: cls(two_groups(ps, c["second"]), **c["ours"]), make_alt, steps=c["steps"],
                               shapes=c["shapes"], between=step_ref)
    ref = lists["ref"]
    return ours, reordered, ref, bound[0] / max(p.abs().max().item() for p in ref)


@pytest.mark.parametrize("c,alt,tol", BF16_NS_CASES, ids=[case_id(c[0]) for c in BF16_NS_CASES])
def test_bf16_newton_schulz(c, alt, tol):
    ours, reordered, ref, rounding = run_three(c, alt)
    limit = rounding if tol == "bf16 update" else tol
    against_alt = max_relative_error(ours, reordered)
    assert against_alt <= limit, f"{case_id(c)}: {against_alt:.3g} from the reordered reference (limit {limit:.3g})"
    drift, err = max_relative_error(reordered, ref), max_relative_error(ours, ref)
    assert drift <= 2**-5, f"the reference's own reordering drift {drift:.3g}"
    assert err <= 2 * drift, f"{case_id(c)}: {err:.3g} from the reference, whose own reordering drifts {drift:.3g}"


# --- tensors of more than two dimensions ----------------------------------------------------------

# The specs orthogonalize a >2-D tensor as its matrix view, output channels by the rest (their
# docstrings). Keller's muon.py does so for 4-D only (3-D: batched over the first dimension), so a
# 3-D tensor is checked against his code on the same values as a 4-D (d0, 1, d1, d2) weight, whose
# view and scale (from the last two dimensions) are the spec's. HybridAuON batches every >2-D
# tensor, and the official AdaMuon scales by sqrt(min(shape) * max(shape)) (for a matrix, numel):
# both against their references on the (d0, rest) matrix, as the docstrings say.
VIEW_CASES = [
    (case("muon", {**KELLER, "ns_bf16": False}, mr.KellerMuonRef, {"bf16": False}, {"lr": 3e-3}, shapes=[(3, 5, 7), (6, 2, 5)],
          tol=NS_FP32_TOL), [(3, 1, 5, 7), (6, 1, 2, 5)]),
    (case("adamuon", {"ns_bf16": False}, mr.AdaMuonRef, {"bf16": False}, {"lr": 3e-3}, shapes=[(4, 3, 3, 3), (3, 5, 7)],
          tol=NS_FP32_TOL), [(4, 27), (3, 35)]),
    (case("auon", {"hybrid": True}, mr.AuONRef, {"hybrid": True}, {"lr": 0.1}, shapes=[(4, 3, 3, 3), (3, 5, 7)],
          tol=NS_FP32_TOL), [(4, 27), (3, 35)]),
]


@pytest.mark.parametrize("c,ref_shapes", VIEW_CASES, ids=[case_id(c[0]) for c in VIEW_CASES])
def test_more_than_two_dimensions_as_matrix_view(c, ref_shapes):
    err = max_relative_error(*run_case(c, ref_shapes=ref_shapes))
    assert err <= c["tol"], f"{case_id(c)}: {err:.3g}"


@pytest.mark.parametrize("style,shape,newton_schulz", [
    ("torch", (7,), False), ("torch", (5, 7), True), ("torch", (3, 5, 7), False), ("torch", (4, 3, 3, 3), False),
    ("keller", (7,), False), ("keller", (5, 7), True), ("keller", (3, 5, 7), True), ("keller", (4, 3, 3, 3), True),
])
def test_muon_branch_by_style_and_rank(style, shape, newton_schulz):
    """style "torch": Newton-Schulz for exactly 2-D, AdamW otherwise; "keller": for 2-D and more.
    The Adam branch keeps a second moment v; each branch's first step matches its reference
    (AdamW's first step moves every element by lr; an orthogonalized one does not)."""
    cls = optdsl.load("muon")
    p = torch.nn.Parameter(torch.randn(shape, generator=torch.Generator().manual_seed(0)))
    p.grad = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    opt = cls([p], style=style, ns_bf16=False, weight_decay=0.0)
    before = p.detach().clone()
    opt.step()
    assert ("v" in opt.state[p]) == (not newton_schulz)
    ref_shape = (shape[0], 1, *shape[1:]) if len(shape) == 3 else shape  # a 3-D tensor as Keller's 4-D view
    q = torch.nn.Parameter(before.reshape(ref_shape).clone())
    q.grad = p.grad.reshape(ref_shape).clone()
    if newton_schulz and style == "torch":
        mr.TorchMuonRef([q], weight_decay=0.0, bf16=False).step()
    elif newton_schulz:
        mr.KellerMuonRef([q], lr=1e-3, bf16=False).step()
    else:
        torch.optim.AdamW([q], lr=1e-3, weight_decay=0.0).step()
    expected = q.detach().reshape(shape)
    assert max_relative_error([p], [expected]) <= NS_FP32_TOL


NEEDS_A_MATRIX = """optimizer Orthogonal
hyper lr = 0.01
state m = zeros
m = 0.9 * m + g
p = p - lr * newton_schulz(m / (norm(m) + 1e-7), 5, 3.4445, -4.775, 2.0315, false)
"""


@pytest.mark.parametrize("foreach", [True, False])
def test_newton_schulz_on_a_vector_is_a_clear_error_at_the_first_step(foreach):
    cls = optdsl.load(source=NEEDS_A_MATRIX)
    bias = torch.nn.Parameter(torch.zeros(7))
    opt = cls([torch.nn.Parameter(torch.zeros(3, 4)), bias], foreach=foreach)  # constructing is fine
    for p in opt.param_groups[0]["params"]:
        p.grad = torch.ones_like(p)
    with pytest.raises(ValueError) as err:
        opt.step()
    message = str(err.value)
    assert "newton_schulz" in message and "at least 2 dimensions" in message and "shape (7,)" in message, message
    assert torch.equal(bias.detach(), torch.zeros(7))


def test_auon_zero_update_still_decays():
    """A zero momentum-and-gradient G: the reference skips the step after its weight decay."""
    c = case("auon", {"weight_decay": 0.1, "hybrid": True}, mr.AuONRef, {"weight_decay": 0.1, "hybrid": True}, {},
             shapes=FLAT_SHAPES, tol=NS_FP32_TOL)
    ours, ref = run_case(c, steps=20, grad_fn=lambda i, p, g: g * 0 if i in (0, 2) else g)
    assert max_relative_error(ours, ref) <= NS_FP32_TOL
    start = make_params(shapes=FLAT_SHAPES)
    assert torch.allclose(ours[0], start[0] * (1 - 0.24 * 0.1) ** 20, rtol=1e-5)


# --- one optimizer object for a whole model ---------------------------------------------------------


class TinyModel(torch.nn.Module):
    """Embedding, Conv2d, Linear, LayerNorm and a Linear head with its bias: every kind of tensor."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(10, 4)
        self.conv = torch.nn.Conv2d(2, 3, 3)
        self.hidden = torch.nn.Linear(4 + 3 * 2 * 2, 6)
        self.norm = torch.nn.LayerNorm(6)
        self.head = torch.nn.Linear(6, 2)

    def forward(self, tokens, image):
        features = torch.cat([self.embed(tokens).mean(1), self.conv(image).flatten(1)], dim=1)
        return self.head(torch.tanh(self.norm(self.hidden(features))))


def by_role(model):
    """SCALE's param groups: the embedding, the output layer, the rest (hidden; 1-D take Adam)."""
    rest = [p for n, p in model.named_parameters() if not n.startswith(("embed.", "head."))]
    return [{"params": list(model.embed.parameters()), "role": "embedding"},
            {"params": list(model.head.parameters()), "role": "output", "lr": 2e-3},
            {"params": rest}]


def train_both(make_ours, make_refs, steps=60):
    """Two identical models on one random regression problem, real backward passes; each
    ``make_refs`` entry is a reference model's optimizer. Returns the parameters of all models."""
    torch.manual_seed(0)
    models = [TinyModel()]
    models += [TinyModel() for _ in make_refs]
    for m in models[1:]:
        m.load_state_dict(models[0].state_dict())
    opts = [make_ours(models[0])] + [f(m) for f, m in zip(make_refs, models[1:])]
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 10, (16, 3), generator=gen)
    image = torch.randn(16, 2, 4, 4, generator=gen)
    target = torch.randn(16, 2, generator=gen)
    for _ in range(steps):
        for model, opt in zip(models, opts):
            model.zero_grad()
            torch.nn.functional.mse_loss(model(tokens, image), target).backward()
            opt.step()
    return [list(m.parameters()) for m in models]


def test_one_muon_optimizer_serves_a_whole_model():
    """Muon for the 2-D weights (Linear, Embedding), AdamW for the conv weight, the LayerNorm and
    the biases, in one object; against torch.optim.Muon + AdamW. In fp32 Newton-Schulz, tight. In
    bf16, training feeds every bf16 rounding flip back through the gradients, so even the
    reference reordered drifts from itself: ours must stay within twice that drift of torch's."""
    cls = optdsl.load("muon")
    kw = {"lr": 0.02, "weight_decay": 0.01}
    ours, reordered, ref = train_both(lambda m: cls(m.parameters(), **kw),
                                      [lambda m: mr.TorchMuonRef(m.parameters(), normalize_first=True, **kw),
                                       lambda m: mr.TorchMuonPair([{"params": list(m.parameters())}], muon=kw)])
    drift = max_relative_error(reordered, ref)
    assert drift <= 2**-5 and max_relative_error(ours, ref) <= 2 * drift, drift
    fp32, fp32_ref = train_both(lambda m: cls(m.parameters(), ns_bf16=False, **kw),
                                [lambda m: mr.TorchMuonRef(m.parameters(), bf16=False, **kw)])
    assert max_relative_error(fp32, fp32_ref) <= NS_FP32_TOL
    assert max_relative_error(fp32, [p.detach() for p in TinyModel().parameters()]) > 1e-2  # it trained


def test_one_scale_optimizer_with_roles_serves_a_whole_model():
    cls = optdsl.load("scale")
    ours, ref = train_both(lambda m: cls(by_role(m), lr=1e-3, weight_decay=0.01, adam_lr_factor=0.5),
                           [lambda m: mr.ScaleRef(by_role(m), lr=1e-3, wd=0.01, adam_lr=5e-4)])
    assert max_relative_error(ours, ref) <= ELEMENTWISE_TOL


# --- the Triton backend (interpreted on CPU) ----------------------------------------------------------

TRITON_CASES = [c for c in FIRST_OF_EACH_SPEC] + [BF16_NS_CASES[0][0]]  # 20 steps: the interpreter is slow


@pytest.mark.parametrize("c", TRITON_CASES, ids=[case_id(c) for c in TRITON_CASES])
def test_triton_backend_matches_reference(c):
    pytest.importorskip("triton")
    if c["ref"] is mr.TorchMuonPair:  # bf16 Newton-Schulz: against the reference in the generated order
        c = {**c, "ref": functools.partial(mr.TorchMuonRef, normalize_first=True), "ref_kw": {}}
    err = max_relative_error(*run_case(c, backend="triton", steps=20))
    assert err <= c["tol"], f"{case_id(c)}: {err:.3g}"
