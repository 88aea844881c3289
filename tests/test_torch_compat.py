"""Generated optimizers as drop-ins for their ``torch.optim`` counterparts (issue 15, items 3, 5-8).

Every built-in spec whose docstring names a ``torch.optim`` class it matches runs here beside
that class: torch's state_dicts load into the generated class (its state names mapped by the
spec's ``state NAME = ... as TORCH_NAME``) and the step continues as torch's would; the way
back goes through ``torch_state_dict()``; state_dicts from other optimizers are refused;
checkpoints whose param groups lack keys take the spec's defaults; bad hyperparameters are
refused before the parameters are looked at, as torch refuses them; torch's keywords are
accepted or refused with what to use instead; and LR schedulers that cycle momentum cycle
the hyper that plays it (``hyper momentum = ... as momentum``), or are refused where the
rule ignores it. References are always the real torch classes, run on the same inputs.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field

import pytest
import torch
from torch.optim.lr_scheduler import CyclicLR, OneCycleLR

import optdsl
from optdsl import SpecError
from optdsl.compiler import from_text, lower, resolve
from optdsl.frontend.parser import parse
from optdsl.frontend.printer import print_spec
from optdsl.ir.hashing import canonical_hash


@dataclass
class Pair:
    """A spec and its torch.optim counterpart, with options for both (torch's spelling in
    ``theirs`` where it differs) and parameter shapes the counterpart takes."""

    spec: str
    torch_cls: type
    ours: dict = field(default_factory=dict)
    theirs: dict | None = None
    shapes: tuple = ((5, 3), (4,), (2, 3, 2))
    tol: float = 1e-6

    @property
    def torch_kw(self) -> dict:
        return self.ours if self.theirs is None else self.theirs

    @property
    def id(self) -> str:
        extra = ",".join(f"{k}={v}" for k, v in self.ours.items() if k != "lr")
        return f"{self.spec}[{extra}]" if extra else self.spec


MATRIX = ((6, 4), (4, 6))
PAIRS = [
    Pair("adamw", torch.optim.AdamW, {"lr": 0.01}),
    Pair("adam", torch.optim.Adam, {"lr": 0.01, "weight_decay": 0.01}),
    Pair("amsgrad", torch.optim.Adam, {"lr": 0.01}, {"lr": 0.01, "amsgrad": True}),
    Pair("sgd", torch.optim.SGD, {"lr": 0.01, "momentum": 0.9, "nesterov": True}),
    Pair("sgd", torch.optim.SGD, {"lr": 0.01, "momentum": 0.8, "dampening": 0.1, "weight_decay": 0.01}),
    Pair("rmsprop", torch.optim.RMSprop, {"lr": 0.01}),
    Pair("rmsprop", torch.optim.RMSprop, {"lr": 0.01, "momentum": 0.9, "centered": True}),
    Pair("adagrad", torch.optim.Adagrad, {"lr": 0.05, "lr_decay": 0.01, "initial_accumulator_value": 0.1}),
    Pair("adamax", torch.optim.Adamax, {"lr": 0.01}),
    Pair("nadam", torch.optim.NAdam, {"lr": 0.01, "weight_decay": 0.01}),
    Pair("radam", torch.optim.RAdam, {"lr": 0.01}),
    Pair("radam", torch.optim.RAdam, {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    Pair("adafactor", torch.optim.Adafactor, {"lr": 0.01}),
    # torch.optim.Muon takes matrices only; its Newton-Schulz runs in bfloat16 as ours does
    # (ours normalizes in fp32 first: differences within bfloat16 rounding)
    Pair("muon", torch.optim.Muon, {"lr": 0.01}, shapes=MATRIX, tol=2e-2),
]
IDS = [p.id for p in PAIRS]
COUNTERPARTS = list({p.spec: p for p in reversed(PAIRS)}.values())[::-1]
COUNTERPART_IDS = [p.spec for p in COUNTERPARTS]


def test_every_spec_naming_a_torch_counterpart_is_here():
    """The matrix covers each built-in spec whose docstring says it matches a torch.optim class."""
    import re

    from optdsl.compiler import builtin_specs

    claims = set()
    for name, path in builtin_specs().items():
        doc = path.read_text(encoding="utf-8")
        if re.search(r"[Mm]atches torch\.optim\.\w+", doc):
            claims.add(name)
    assert claims <= {p.spec for p in PAIRS}, claims - {p.spec for p in PAIRS}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def params_for(pair: Pair, seed: int = 0) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in pair.shapes]


def grads_for(pair: Pair, steps: int, seed: int = 1) -> list[list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(s, generator=gen) for s in pair.shapes] for _ in range(steps)]


def twin(params) -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(p.detach().clone()) for p in params]


def run(opt, params, grads) -> None:
    for step in grads:
        for p, g in zip(params, step):
            p.grad = g.clone()
        opt.step()


def assert_close(ours, theirs, tol):
    for a, b in zip(ours, theirs):
        scale = b.detach().abs().max().clamp_min(1e-3)
        assert ((a.detach() - b.detach()).abs().max() / scale).item() <= tol


# --------------------------------------------------------------------------------------
# State dicts: torch -> optdsl, optdsl -> torch, other optimizers refused (item 6)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("pair", PAIRS, ids=IDS)
def test_torch_state_dict_continues_as_torch(pair):
    """A torch optimizer steps; the generated class loads its state_dict and goes on exactly as
    the torch optimizer goes on (today: AdamW loads silently, then KeyError 'm')."""
    start = params_for(pair)
    grads = grads_for(pair, 8)
    theirs_p = twin(start)
    theirs = pair.torch_cls(theirs_p, **pair.torch_kw)
    run(theirs, theirs_p, grads[:4])
    ours_p = twin(theirs_p)
    ours = optdsl.load(pair.spec)(ours_p, **pair.ours)
    ours.load_state_dict(theirs.state_dict())
    run(theirs, theirs_p, grads[4:])
    run(ours, ours_p, grads[4:])
    assert_close(ours_p, theirs_p, pair.tol)


@pytest.mark.parametrize("pair", PAIRS, ids=IDS)
def test_torch_state_dict_helper_continues_in_torch(pair):
    """The way back: ``torch_state_dict(like=...)`` loads into the torch class, which goes on as
    the generated optimizer goes on."""
    start = params_for(pair)
    grads = grads_for(pair, 8)
    ours_p = twin(start)
    ours = optdsl.load(pair.spec)(ours_p, **pair.ours)
    run(ours, ours_p, grads[:4])
    theirs_p = twin(ours_p)
    theirs = pair.torch_cls(theirs_p, **pair.torch_kw)
    theirs.load_state_dict(copy.deepcopy(ours.torch_state_dict(like=theirs)))  # torch would share the tensors
    run(ours, ours_p, grads[4:])
    run(theirs, theirs_p, grads[4:])
    assert_close(ours_p, theirs_p, pair.tol)


@pytest.mark.parametrize("pair", [p for p in PAIRS if p.spec in ("adamw", "adam", "sgd", "adagrad")],
                         ids=lambda p: p.id)
def test_torch_state_dict_helper_without_like(pair):
    """Where the groups' keys are torch's already, the helper's own groups load as they are."""
    start = params_for(pair)
    grads = grads_for(pair, 6)
    ours_p = twin(start)
    ours = optdsl.load(pair.spec)(ours_p, **pair.ours)
    run(ours, ours_p, grads[:3])
    theirs_p = twin(ours_p)
    theirs = pair.torch_cls(theirs_p, **pair.torch_kw)
    theirs.load_state_dict(copy.deepcopy(ours.torch_state_dict()))
    run(ours, ours_p, grads[3:])
    run(theirs, theirs_p, grads[3:])
    assert_close(ours_p, theirs_p, pair.tol)


def _torch_state(cls, shapes, **kw):
    params = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    opt = cls(params, **kw)
    run(opt, params, [[torch.randn(s) for s in shapes]])
    return opt.state_dict()


# (spec, a torch optimizer whose state it cannot continue, what the refusal names: a state, or
# the saved param group's hyper when that does not fit either)
MISMATCHES = [
    ("adamw", torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}, "momentum_buffer"),
    ("adamw", torch.optim.Adagrad, {"lr": 0.1}, "sum"),
    ("nadam", torch.optim.Adam, {}, "mu_product"),
    ("amsgrad", torch.optim.Adam, {}, "amsgrad=False"),  # its group is refused first
    ("adamax", torch.optim.Adam, {}, "exp_avg_sq"),
    ("rmsprop", torch.optim.Adagrad, {}, "sum"),
    ("sgd", torch.optim.AdamW, {}, "exp_avg"),
    ("adagrad", torch.optim.RMSprop, {}, "square_avg"),
    ("adafactor", torch.optim.Adam, {}, "betas must have 1 values"),  # its group is refused first
    ("adafactor", torch.optim.SGD, {"momentum": 0.9}, "momentum_buffer"),
    ("muon", torch.optim.AdamW, {}, "exp_avg"),
    ("radam", torch.optim.Adamax, {}, "exp_inf"),
]


@pytest.mark.parametrize("spec,cls,kw,named", MISMATCHES, ids=[f"{m[0]}<-{m[1].__name__}" for m in MISMATCHES])
def test_state_dict_of_another_optimizer_is_refused(spec, cls, kw, named):
    saved = _torch_state(cls, [(4, 3)], **kw)
    ours = optdsl.load(spec)([torch.nn.Parameter(torch.randn(4, 3))])
    with pytest.raises(ValueError, match=named):
        ours.load_state_dict(saved)
    assert not ours.state  # nothing half-loaded


def test_refused_state_dict_names_missing_and_unknown_states():
    saved = _torch_state(torch.optim.Adamax, [(3,)])
    ours = optdsl.load("adamw")([torch.nn.Parameter(torch.randn(3))])
    with pytest.raises(ValueError) as info:
        ours.load_state_dict(saved)
    message = str(info.value)
    assert "missing ['v']" in message and "unknown ['exp_inf']" in message
    assert "exp_avg_sq" in message  # what this optimizer would accept


def test_integer_states_are_cast_like_torch_does():
    """torch casts an int64 state to the parameter's dtype; keeping it int64 would truncate
    every later update. Floating states keep their stored dtype (that is on purpose)."""
    pair = PAIRS[0]
    start = params_for(pair)
    grads = grads_for(pair, 4)
    source = pair.torch_cls(twin(start), lr=0.01)
    run(source, source.param_groups[0]["params"], grads[:2])
    saved = source.state_dict()
    for state in saved["state"].values():
        state["exp_avg"] = (state["exp_avg"] * 10).round().to(torch.int64)
    theirs_p, ours_p = twin(start), twin(start)
    theirs = pair.torch_cls(theirs_p, lr=0.01)
    theirs.load_state_dict(copy.deepcopy(saved))
    ours = optdsl.load("adamw")(ours_p, lr=0.01)
    ours.load_state_dict(copy.deepcopy(saved))
    assert all(ours.state[p]["m"].dtype == torch.float32 for p in ours_p)
    run(theirs, theirs_p, grads[2:])
    run(ours, ours_p, grads[2:])
    assert_close(ours_p, theirs_p, 1e-6)


def test_floating_states_keep_their_stored_dtype():
    p = torch.nn.Parameter(torch.randn(4))
    opt = optdsl.load("adamw")([p], state_dtype=torch.float64)
    run(opt, [p], [[torch.randn(4)]])
    fresh = optdsl.load("adamw")([torch.nn.Parameter(p.detach().clone())])
    fresh.load_state_dict(opt.state_dict())
    assert next(iter(fresh.state.values()))["m"].dtype == torch.float64


def test_sgd_state_without_step_count_continues():
    """torch's SGD keeps no step count: a loaded momentum buffer means at least one step."""
    pair = PAIRS[3]
    start = params_for(pair)
    grads = grads_for(pair, 5)
    theirs_p = twin(start)
    theirs = torch.optim.SGD(theirs_p, **pair.ours)
    run(theirs, theirs_p, grads[:1])
    assert "step" not in theirs.state_dict()["state"][0]
    ours_p = twin(theirs_p)
    ours = optdsl.load("sgd")(ours_p, **pair.ours)
    ours.load_state_dict(theirs.state_dict())
    run(theirs, theirs_p, grads[1:])
    run(ours, ours_p, grads[1:])
    assert_close(ours_p, theirs_p, 1e-6)


# --------------------------------------------------------------------------------------
# Checkpoints from before a hyper existed (item 7)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("pair", COUNTERPARTS, ids=COUNTERPART_IDS)
def test_group_keys_missing_from_a_checkpoint_take_their_defaults(pair):
    """A param group saved without any hyper (every key but params and lr removed) loads and
    steps as the spec's defaults do, as torch fills missing keys in __setstate__."""
    cls = optdsl.load(pair.spec)
    start = params_for(pair)
    grads = grads_for(pair, 6)
    first_p = twin(start)
    first = cls(first_p, lr=0.01)
    run(first, first_p, grads[:3])
    saved = copy.deepcopy(first.state_dict())
    for group in saved["param_groups"]:
        for key in [k for k in group if k not in ("params", "lr")]:
            del group[key]
    second_p = twin(first_p)
    second = cls(second_p, lr=0.5)
    second.load_state_dict(saved)
    assert second.param_groups[0]["lr"] == 0.01
    run(first, first_p, grads[3:])
    run(second, second_p, grads[3:])
    for a, b in zip(first_p, second_p):
        assert torch.equal(a, b)


def test_group_keys_missing_load_with_the_triton_backend_too():
    """The Triton class has a __setstate__ of its own: load_state_dict fills the keys itself."""
    pytest.importorskip("triton")
    cls = optdsl.load("adamw", backend="triton")
    p = torch.nn.Parameter(torch.randn(3))
    opt = cls([p])
    run(opt, [p], [[torch.randn(3)]])
    saved = opt.state_dict()
    for key in ("eps_style", "foreach", "maximize", "state_dtype"):
        del saved["param_groups"][0][key]
    q = torch.nn.Parameter(p.detach().clone())
    fresh = cls([q])
    fresh.load_state_dict(saved)
    run(fresh, [q], [[torch.randn(3)]])
    assert fresh.param_groups[0]["eps_style"] == "torch"


def test_missing_keys_use_the_spec_defaults_not_the_constructor_arguments():
    """A checkpoint from before eps_style existed was computed with the default style."""
    p = torch.nn.Parameter(torch.randn(3))
    opt = optdsl.load("adamw")([p])
    saved = opt.state_dict()
    del saved["param_groups"][0]["eps_style"]
    other = optdsl.load("adamw")([torch.nn.Parameter(torch.randn(3))], eps_style="hf")
    other.load_state_dict(saved)
    assert other.param_groups[0]["eps_style"] == "torch"


def test_loaded_groups_are_checked():
    p = torch.nn.Parameter(torch.randn(3))
    opt = optdsl.load("adamw")([p])
    saved = opt.state_dict()
    saved["param_groups"][0]["lr"] = "0.1"
    with pytest.raises(TypeError, match="lr"):
        optdsl.load("adamw")([torch.nn.Parameter(torch.randn(3))]).load_state_dict(saved)


# --------------------------------------------------------------------------------------
# Validation: before the params, with torch's conditions (items 6 and 8)
# --------------------------------------------------------------------------------------


BAD = {
    "lr": [-1.0],
    "eps": [-1e-3],
    "weight_decay": [-0.1],
    "momentum": [-0.5],
    "alpha": [-0.5],
    "lr_decay": [-0.1],
    "initial_accumulator_value": [-0.1],
    "momentum_decay": [-0.1],
    "betas": [(1.0, 0.5), (0.9, 1.0), (-0.1, 0.9)],
}


def _bad_cases():
    out = []
    for pair in COUNTERPARTS:
        names = set(inspect.signature(pair.torch_cls.__init__).parameters)
        ours = set(inspect.signature(optdsl.load(pair.spec).__init__).parameters)
        for key, values in BAD.items():
            if key in names and key in ours and not (pair.spec == "adafactor" and key == "eps"):  # a tuple there
                out += [(pair, key, v) for v in values]
    return out


BAD_CASES = _bad_cases()


@pytest.mark.parametrize("pair,key,value", BAD_CASES, ids=[f"{p.spec}-{k}={v}" for p, k, v in BAD_CASES])
def test_bad_hypers_are_refused_before_the_params(pair, key, value):
    """torch checks hyperparameters first: ``AdamW(None, betas=(1.0, 0.0))`` is a ValueError
    about beta, not a TypeError about None. Ours raises a ValueError naming the hyper wherever
    torch does (and also where torch checks nothing, e.g. Muon's eps, and fails on None)."""
    kw = {**pair.torch_kw, key: value}
    with pytest.raises(Exception) as theirs:
        pair.torch_cls(None, **kw)
    with pytest.raises(ValueError) as ours:
        optdsl.load(pair.spec)(None, **{**pair.ours, key: value})
    label = "beta" if key == "betas" else key
    assert label in str(ours.value)
    if "must be iterable" not in str(theirs.value) and "not iterable" not in str(theirs.value):
        assert type(theirs.value) is ValueError, theirs.value


@pytest.mark.parametrize("kw,match", [
    ({"lr": torch.tensor(0.01), "foreach": True}, "lr as a Tensor is not supported for capturable=False and foreach=True"),
    ({"lr": torch.tensor([0.01, 0.02])}, "Tensor lr must be 1-element"),
    ({"betas": (0.9, torch.tensor(0.999))}, "betas must be either"),
    ({"betas": (torch.tensor(0.9), torch.tensor(0.999)), "foreach": True}, r"betas\[0\] as a Tensor is not supported"),
    ({"betas": (torch.tensor(0.9), torch.tensor([0.99, 0.9]))}, None),
], ids=["lr-tensor-foreach", "lr-2-elements", "betas-mixed", "betas-tensor-foreach", "beta-2-elements"])
@pytest.mark.parametrize("spec,cls", [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam)])
def test_tensor_hypers_follow_torchs_conditions(spec, cls, kw, match):
    """torch's conditions on tensor hyperparameters, with its messages (a 2-element beta: torch
    fails on its range check first, with a RuntimeError; ours says what is wrong)."""
    with pytest.raises((ValueError, RuntimeError), match=match) as theirs:
        cls([torch.nn.Parameter(torch.randn(2))], **kw)
    with pytest.raises(ValueError, match=match or r"Tensor betas\[1\] must be 1-element"):
        optdsl.load(spec)([torch.nn.Parameter(torch.randn(2))], **kw)
    assert match is None or type(theirs.value) is ValueError


@pytest.mark.parametrize("pair", [p for p in COUNTERPARTS if p.spec in ("adamw", "adam", "sgd", "nadam", "adafactor")],
                         ids=lambda p: p.spec)
def test_one_element_tensor_lr_on_the_per_tensor_path(pair):
    start = params_for(pair)
    grads = grads_for(pair, 4)
    ours_p, theirs_p = twin(start), twin(start)
    kw = {**pair.ours, "lr": torch.tensor([0.01]), "foreach": False}
    ours = optdsl.load(pair.spec)(ours_p, **kw)
    theirs = pair.torch_cls(theirs_p, **{**pair.torch_kw, "lr": torch.tensor(0.01), "foreach": False})
    run(ours, ours_p, grads)
    run(theirs, theirs_p, grads)
    assert_close(ours_p, theirs_p, pair.tol)


@pytest.mark.parametrize("kw,error", [
    ({"lr": "0.1"}, TypeError),
    ({"eps": "1e-8"}, TypeError),
    ({"lr": True}, TypeError),
    ({"betas": ("0.9", 0.999)}, TypeError),
    ({"eps_style": 1}, ValueError),
])
def test_hyper_types_are_checked_at_construction(kw, error):
    with pytest.raises(error):
        optdsl.load("adamw")([torch.nn.Parameter(torch.randn(2))], **kw)


def test_flags_must_be_booleans():
    """``nesterov='false'`` would count as true: a flag is a bool (or the int 0 or 1)."""
    cls = optdsl.load("sgd")
    with pytest.raises(TypeError, match="nesterov"):
        cls([torch.nn.Parameter(torch.randn(2))], momentum=0.9, nesterov="false")
    with pytest.raises(TypeError, match="centered"):
        optdsl.load("rmsprop")([torch.nn.Parameter(torch.randn(2))], centered="yes")
    cls([torch.nn.Parameter(torch.randn(2))], momentum=0.9, nesterov=1)


def test_param_groups_are_checked_too():
    opt = optdsl.load("adamw")([torch.nn.Parameter(torch.randn(2))])
    with pytest.raises(TypeError, match="lr"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.randn(2))], "lr": "0.1"})


# --------------------------------------------------------------------------------------
# torch's keywords (item 5)
# --------------------------------------------------------------------------------------


def _torch_keywords(pair):
    sig = inspect.signature(pair.torch_cls.__init__)
    return [(name, p.default) for name, p in sig.parameters.items()
            if name not in ("self", "params") and p.default is not inspect.Parameter.empty]


KEYWORD_CASES = [(pair, name, default) for pair in COUNTERPARTS for name, default in _torch_keywords(pair)]


@pytest.mark.parametrize("pair,name,default", KEYWORD_CASES,
                         ids=[f"{p.spec}-{n}" for p, n, _ in KEYWORD_CASES])
def test_torch_keywords_at_their_defaults(pair, name, default):
    """Every keyword torch's counterpart takes is one the generated class takes (no TypeError):
    accepted at torch's default, or refused with a message saying what to use instead."""
    cls = optdsl.load(pair.spec)
    spec_default = pair.ours.get(name, default)
    if name in ("amsgrad",) and pair.spec == "amsgrad":
        spec_default = True
    try:
        # with the pair's other settings: a keyword may only make sense with them (nesterov needs momentum)
        cls([torch.nn.Parameter(torch.randn(2))], **{**pair.ours, name: spec_default})
    except ValueError as exc:
        assert f"{name}=" in str(exc) and " here" in str(exc), str(exc)


@pytest.mark.parametrize("spec,kw,match", [
    ("adamw", {"fused": True}, 'backend="triton"'),
    ("sgd", {"fused": True}, 'backend="triton"'),
    ("adamw", {"capturable": True}, 'backend="triton"'),
    ("adamw", {"differentiable": True}, "differentiable"),
    ("adamw", {"amsgrad": True}, 'optdsl.load\\("amsgrad"\\)'),
    ("adam", {"amsgrad": True}, 'optdsl.load\\("amsgrad"\\)'),
    ("adam", {"decoupled_weight_decay": True}, 'optdsl.load\\("adamw"\\)'),
    ("amsgrad", {"amsgrad": False}, 'optdsl.load\\("adam"\\)'),
    ("nadam", {"decoupled_weight_decay": True}, "decoupled"),
    ("adafactor", {"eps": (None, 1e-3)}, "eps1= and eps2="),
    ("muon", {"ns_coefficients": (3.4445, -4.775, 2.0315)}, "ns_a="),
    ("muon", {"adjust_lr_fn": "match_rms_adamw"}, "adjust_lr="),
])
def test_torch_keywords_refused_say_what_to_use(spec, kw, match):
    with pytest.raises(ValueError, match=match):
        optdsl.load(spec)([torch.nn.Parameter(torch.randn(2, 2))], **kw)


def test_torch_keywords_accepted_at_their_defaults_keep_the_class_working():
    p = torch.nn.Parameter(torch.randn(3))
    opt = optdsl.load("adamw")([p], lr=0.01, amsgrad=False, fused=None, capturable=False, differentiable=False,
                               foreach=False, maximize=False)
    assert opt.param_groups[0]["amsgrad"] is False
    run(opt, [p], [[torch.randn(3)]])


def test_a_torch_group_with_amsgrad_true_is_refused_at_load():
    saved = _torch_state(torch.optim.AdamW, [(3,)], amsgrad=True)
    with pytest.raises(ValueError, match="amsgrad"):
        optdsl.load("adamw")([torch.nn.Parameter(torch.randn(3))]).load_state_dict(saved)


# --------------------------------------------------------------------------------------
# Schedulers that cycle momentum (item 3)
# --------------------------------------------------------------------------------------


def _schedulers():
    return {
        "onecycle": lambda opt: OneCycleLR(opt, max_lr=0.05, total_steps=20),
        "cyclic": lambda opt: CyclicLR(opt, base_lr=0.001, max_lr=0.05, step_size_up=3,
                                        base_momentum=0.8, max_momentum=0.9),
    }


SCHEDULED = [p for p in COUNTERPARTS if p.spec in ("muon", "adamw", "sgd", "rmsprop", "nadam")]


@pytest.mark.parametrize("scheduler", ["onecycle", "cyclic"])
@pytest.mark.parametrize("pair", SCHEDULED, ids=lambda p: p.spec)
def test_schedulers_cycle_the_momentum_hyper_as_torch(pair, scheduler):
    """Muon cycles momentum (not its AdamW part's beta1), AdamW betas[0], SGD momentum: the
    cycled value and the parameters follow the torch class under the same scheduler."""
    make = _schedulers()[scheduler]
    start = params_for(pair)
    grads = grads_for(pair, 8)
    kw = {**pair.ours, "momentum": 0.9} if pair.spec in ("sgd", "rmsprop") else pair.ours
    ours_p, theirs_p = twin(start), twin(start)
    ours = optdsl.load(pair.spec)(ours_p, **kw)
    theirs = pair.torch_cls(theirs_p, **{**pair.torch_kw, **kw})
    ours_s, theirs_s = make(ours), make(theirs)
    key = "betas" if "betas" in theirs.defaults else "momentum"
    for step in grads:
        for p, q, g in zip(ours_p, theirs_p, step):
            p.grad, q.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
        ours_s.step()
        theirs_s.step()
        assert ours.param_groups[0][key] == theirs.param_groups[0][key]
        assert ours.param_groups[0]["lr"] == theirs.param_groups[0]["lr"]
    assert_close(ours_p, theirs_p, pair.tol)


def test_muon_cycles_momentum_and_leaves_adamw_beta1():
    cls = optdsl.load("muon")
    opt = cls([torch.nn.Parameter(torch.randn(4, 4))], betas=(0.8, 0.99))
    assert "betas" not in opt.defaults and opt.defaults["beta1"] == 0.8
    OneCycleLR(opt, max_lr=0.05, total_steps=10, base_momentum=0.5, max_momentum=0.7)
    assert opt.param_groups[0]["momentum"] == 0.7
    assert opt.param_groups[0]["beta1"] == 0.8


def test_muon_keeps_accepting_betas():
    """``betas=`` (and beta1=) still set the AdamW part, in the constructor and in param groups;
    an old checkpoint that kept them as one ``betas`` key loads."""
    cls = optdsl.load("muon")
    a, b = torch.nn.Parameter(torch.randn(3, 3)), torch.nn.Parameter(torch.randn(3))
    opt = cls([{"params": [a]}, {"params": [b], "betas": (0.7, 0.95)}], betas=(0.8, 0.99), beta2=0.9)
    assert (opt.param_groups[0]["beta1"], opt.param_groups[0]["beta2"]) == (0.8, 0.9)
    assert (opt.param_groups[1]["beta1"], opt.param_groups[1]["beta2"]) == (0.7, 0.95)
    run(opt, [a, b], [[torch.randn(3, 3), torch.randn(3)]])
    saved = opt.state_dict()
    for group in saved["param_groups"]:
        group["betas"] = (group.pop("beta1"), group.pop("beta2"))
    fresh = cls([{"params": [a]}, {"params": [b]}])
    fresh.load_state_dict(saved)
    assert (fresh.param_groups[1]["beta1"], fresh.param_groups[1]["beta2"]) == (0.7, 0.95)


@pytest.mark.parametrize("scheduler", ["onecycle", "cyclic"])
def test_scheduler_cycling_an_ignored_momentum_is_refused(scheduler):
    """Adafactor's beta1 matters only with style="hf": torch's Adafactor has no momentum and
    OneCycleLR refuses it; ours refuses a cycled beta1 at the first step under style="torch"."""
    make = _schedulers()[scheduler]
    with pytest.raises(ValueError):
        make(torch.optim.Adafactor([torch.nn.Parameter(torch.randn(3, 3))]))
    p = torch.nn.Parameter(torch.randn(3, 3))
    opt = optdsl.load("adafactor")([p])
    make(opt)
    p.grad = torch.randn(3, 3)
    with pytest.raises(ValueError, match=r"beta1.*style='torch'.*cycle_momentum=False.*style='hf'"):
        opt.step()


def test_scheduler_cycling_momentum_where_the_rule_reads_it():
    p = torch.nn.Parameter(torch.randn(3, 3))
    opt = optdsl.load("adafactor")([p], style="hf", beta1=0.9)
    OneCycleLR(opt, max_lr=0.05, total_steps=10)
    p.grad = torch.randn(3, 3)
    opt.step()
    opt2 = optdsl.load("adafactor")([p])
    OneCycleLR(opt2, max_lr=0.05, total_steps=10, cycle_momentum=False)
    opt2.step()


def test_the_ignored_momentum_check_survives_copies():
    opt = optdsl.load("adafactor")([torch.nn.Parameter(torch.randn(3, 3))])
    clone = copy.deepcopy(opt)
    OneCycleLR(clone, max_lr=0.05, total_steps=10)
    clone.param_groups[0]["params"][0].grad = torch.randn(3, 3)
    with pytest.raises(ValueError, match="beta1"):
        clone.step()


# --------------------------------------------------------------------------------------
# The language: ``as`` on hypers and states, ``keyword`` items
# --------------------------------------------------------------------------------------


ANNOTATED = '''optimizer X
  "doc"

hyper lr = 0.001 in [0, inf)
hyper mu = 0.9 in [0, 1)
hyper beta1 = 0.9 in [0, 1) as momentum
hyper beta2 = 0.99 in [0, 1)

keyword amsgrad = false "no maximum here"
keyword eps "use mu"

state m = zeros as exp_avg
state v = zeros when ndim > 1 as second?

m = lerp(m, g, 1 - beta1)
v = where(ndim > 1, lerp(v, g ^ 2, 1 - beta2), v)
p = p - lr * where(ndim > 1, m / (sqrt(v) + 1e-8), mu * m)
'''


def test_annotations_print_back_as_written():
    tree = parse(ANNOTATED)
    assert print_spec(tree) == ANNOTATED
    assert parse(print_spec(tree)) == tree
    state = tree.states[1]
    assert (state.alias, state.optional) == ("second", True)
    assert tree.hypers[2].role == "momentum"
    assert [(k.name, k.message) for k in tree.keywords] == [("amsgrad", "no maximum here"), ("eps", "use mu")]


def test_annotations_reach_the_ir_but_not_the_hash():
    plain = "\n".join(
        line.split(" as ")[0] if line.startswith(("hyper", "state")) else line
        for line in ANNOTATED.splitlines() if not line.startswith("keyword")
    ) + "\n"
    rule, _ = lower(from_text(ANNOTATED))
    assert rule.hyper("beta1").role == "momentum"
    assert [(s.alias, s.optional) for s in rule.states] == [("exp_avg", False), ("second", True)]
    assert [k.name for k in rule.keywords] == ["amsgrad", "eps"]
    assert canonical_hash(rule) == canonical_hash(lower(from_text(plain))[0])
    assert " as " not in plain and "keyword" not in plain


def test_builtin_annotations_print_back():
    for spec in ("adamw", "muon", "rmsprop", "adafactor", "adam"):
        text = resolve(spec).text
        tree = parse(text)
        assert parse(print_spec(tree)) == tree


@pytest.mark.parametrize("source,message", [
    ("hyper momentum = 0.9 as speed", "unknown role 'speed'"),
    ("hyper momentum = true as momentum", "only a number hyper can play the momentum role"),
    ("hyper momentum = 0.9 as momentum\nhyper beta1 = 0.9 as momentum", "a second hyper as momentum"),
    ("hyper mu = 0.9 as momentum", "'mu' cannot play the momentum role"),
    ("hyper beta1 = 0.9 as momentum\nhyper beta3 = 0.9", "needs the number hypers beta1..betaN"),
    ("state w = zeros as step", "'step' is the step count's key"),
    ("state w = zeros as x__", "no double underscores"),
    ("state w = zeros as m", "'m' is the name of another state"),
    ("state w = zeros as exp_avg\nstate z = zeros as exp_avg", "already known as 'exp_avg'"),
    ('keyword fused "no"', "'fused' is used by the generated optimizer"),
    ('keyword m "no"', "duplicate declaration of 'm'"),
    ('keyword amsgrad = false ""', "needs a message"),
])
def test_misused_annotations_are_located_errors(source, message):
    text = f"optimizer X\nhyper lr = 0.1\nstate m = zeros\n{source}\np = p - lr * m\nm = m + g\n"
    with pytest.raises(SpecError) as info:
        optdsl.load(source=text)
    assert message in str(info.value)
    line = text.splitlines().index(source.splitlines()[-1]) + 1 if message.startswith(("a second", "already")) \
        else text.splitlines().index(source.splitlines()[0]) + 1
    assert info.value.diagnostics[0].span.line == line


def test_a_variant_cannot_declare_keywords(tmp_path):
    variant = tmp_path / "kw.opt"
    variant.write_text('variant kw on u\nkeyword amsgrad = false "no"\nu = u\n')
    with pytest.raises(SpecError, match="cannot declare keyword"):
        optdsl.load("adamw", variants=[str(variant)])


def test_scheduler_may_cycle_a_momentum_some_groups_use():
    """SCALE uses its momentum only in the group marked role="output": a scheduler cycling it
    changes that group, so it is not refused for the hidden groups that ignore it."""
    scale = optdsl.load("scale")
    hidden, head = torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(2, 4))
    opt = scale([{"params": [hidden]}, {"params": [head], "role": "output"}])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=10)
    hidden.grad, head.grad = torch.randn_like(hidden), torch.randn_like(head)
    opt.step()
    sched.step()
    assert opt.param_groups[1]["momentum"] != opt.param_groups[1]["max_momentum"]
    only_hidden = scale([hidden])
    torch.optim.lr_scheduler.OneCycleLR(only_hidden, max_lr=1e-2, total_steps=10)
    with pytest.raises(ValueError, match="the rule ignores momentum"):
        only_hidden.step()
