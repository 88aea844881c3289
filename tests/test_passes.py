"""Each pass tested twice: numerically (same outputs before and after on random
inputs, through the IR interpreter) and for its effect."""

from __future__ import annotations

import time

import pytest
import torch

import optdsl
from optdsl.compiler import from_text, lower, resolve
from optdsl.ir.evaluate import evaluate_reductions, evaluate_step
from optdsl.ir.nodes import Node, Rule, leaf, op, postorder
from optdsl.ir.ops import Kind
from optdsl.ir.verify import IRError, verify
from optdsl.passes import PIPELINE, describe, run_passes
from optdsl.passes.dead import eliminate_dead_code, eliminate_dead_state
from optdsl.passes.hoist import hoist_host_scalars
from optdsl.passes.sympy_simplify import simplify_with_sympy

EXTRA_SPECS = {
    "duplicated_sqrt": """optimizer Dup
hyper lr = 0.1
state v = zeros
v = 0.9 * v + 0.1 * g^2
p = p - lr * g / (sqrt(v) + 1e-8) - lr * sqrt(v) * 1e-3 / (sqrt(v) + 1)
""",
    "dead_state": """optimizer Dead
hyper lr = 0.1
state m = zeros
state unused = zeros
state feeds_unused = zeros
feeds_unused = 0.5 * feeds_unused + g
unused = unused + feeds_unused
m = 0.9 * m + g
p = p - lr * m
""",
    "algebra": """optimizer Algebra
hyper lr = 0.1 in (0, 1)
state m = zeros
m = 0.9 * m + 0.1 * g
u = sqrt(g * g) - abs(g) + m * 2 - m
p = p - lr * u - lr * 0 * g
""",
    "reductions": """optimizer Red
hyper lr = 0.01
state m = zeros
m = lerp(m, g, 0.1)
mask = m * g > 0
u = m * mask * numel / (sum(mask) + 1)
p = p - lr * u / (rms(u) + 1e-8) - lr * 1e-3 * rowmean(g) * (1 - 0.9^t)
""",
}


def _rules() -> list[tuple[str, Rule]]:
    out = [(name, lower(resolve(name))[0]) for name in optdsl.builtin_specs()]
    out += [(name, lower(from_text(text, name))[0]) for name, text in EXTRA_SPECS.items()]
    return out


RULES = _rules()


def _random_inputs(rule: Rule, seed: int):
    g = torch.Generator().manual_seed(seed)
    shape = (6, 5)
    p = torch.randn(shape, generator=g, dtype=torch.float64)
    grad = torch.randn(shape, generator=g, dtype=torch.float64)
    state = {}
    for s in rule.states:
        if s.shape == "tensor":
            state[s.name] = torch.rand(shape, generator=g, dtype=torch.float64) + 0.1
        else:
            state[s.name] = torch.tensor(0.5, dtype=torch.float64)
    return p, grad, state


def _reduced(rule: Rule, p, grad, t, state) -> dict | None:
    """The rule's group reductions over a group of this one tensor."""
    return evaluate_reductions(rule, [(0, p, grad, t, dict(state), None)])[0] if rule.reductions else None


def _assert_same(before: Rule, after: Rule, seed: int = 0, t: int = 3) -> None:
    p, grad, state = _random_inputs(before, seed)
    p1, s1 = evaluate_step(before, p.clone(), grad, t, dict(state), reduced=_reduced(before, p, grad, t, state))
    kept = {k: v for k, v in state.items() if k in {s.name for s in after.states}}
    p2, s2 = evaluate_step(after, p.clone(), grad, t, kept, reduced=_reduced(after, p, grad, t, kept))
    torch.testing.assert_close(p2, p1, rtol=1e-9, atol=1e-12)
    for name in s2:
        torch.testing.assert_close(torch.as_tensor(s2[name]), torch.as_tensor(s1[name]), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name,rule", RULES, ids=[n for n, _ in RULES])
def test_every_pass_keeps_what_the_rule_computes(name, rule):
    current = rule
    for p in PIPELINE:
        nxt = verify(p(current))
        for seed, t in ((0, 1), (1, 3), (2, 40)):
            _assert_same(current, nxt, seed, t)
        current = nxt


def _count(rule: Rule, opname: str, kinds=(Kind.TENSOR, Kind.SCALAR)) -> int:
    return sum(1 for n in postorder([v for _, v in rule.outputs]) if n.op == opname and n.kind in kinds)


def test_hoisting_leaves_no_step_power_per_element():
    rule, _ = lower(resolve("adamw"))
    group_pows = [n for n in postorder([v for _, v in rule.outputs]) if n.op == "pow" and n.kind == Kind.GROUP]
    assert group_pows, "the spec computes beta^t inside the per-element expression"
    hoisted = run_passes(rule)
    step_pows = [n for n in postorder([v for _, v in hoisted.outputs]) if n.op == "pow" and n.args[0].kind == Kind.GROUP]
    assert not step_pows
    assert any(n.op == "pow" and n.args[1].op == "input" and n.args[1].name == "t" for _, v in hoisted.host for n in postorder([v]))
    # and no host math of any kind remains per element
    for n in postorder([v for _, v in hoisted.outputs]):
        assert n.kind >= Kind.SCALAR or not n.args


def test_hoisting_gathers_host_factors_into_one_coefficient():
    rule, _ = lower(from_text("optimizer H\nhyper lr = 0.1\nstate m = zeros\nm = g\np = p - lr * (m / (1 - 0.9^t)) * 2\n"))
    hoisted = hoist_host_scalars(rule)
    muls = [n for n in postorder([v for _, v in hoisted.outputs]) if n.op in ("mul", "div") and n.kind == Kind.TENSOR]
    assert len(muls) == 1, "lr, 1/(1 - 0.9^t) and 2 should be one host coefficient: one multiply per element"


def test_cse_removes_a_duplicated_sqrt():
    rule, _ = lower(from_text(EXTRA_SPECS["duplicated_sqrt"]))
    assert _count(rule, "sqrt") == 3
    after = run_passes(rule)
    assert _count(after, "sqrt") == 1


def test_dead_state_is_gone_from_the_rule_and_the_state_dict():
    rule, _ = lower(from_text(EXTRA_SPECS["dead_state"]))
    after = eliminate_dead_state(rule)
    assert [s.name for s in after.states] == ["m"]
    assert [n for n, _ in after.outputs] == ["p", "m"]
    cls = optdsl.load(source=EXTRA_SPECS["dead_state"])
    p = torch.nn.Parameter(torch.randn(3))
    opt = cls([p])
    p.grad = torch.ones(3)
    opt.step()
    assert set(opt.state_dict()["state"][0]) == {"step", "m"}


def test_dead_code_drops_identity_updates_and_unused_host_values():
    rule, _ = lower(from_text("optimizer I\nstate m = zeros\nm = m\np = p - 0.1 * g * m\n"))
    assert [n for n, _ in rule.outputs] == ["p"], "lowering already drops a state assigned to itself"
    hoisted = run_passes(rule)
    extra = hoisted.with_(host=hoisted.host + (("unused", op("mul", leaf("step", "t", Kind.GROUP), leaf("step", "t", Kind.GROUP))),))
    assert "unused" not in dict(eliminate_dead_code(extra).host)


def test_sympy_simplification_removes_what_cancels():
    rule, _ = lower(from_text(EXTRA_SPECS["algebra"]))
    assert _count(rule, "abs") == 1 and _count(rule, "sqrt") == 1
    after = run_passes(rule)
    assert _count(after, "abs") == 0 and _count(after, "sqrt") == 0
    _assert_same(rule, after)


def test_sympy_pass_respects_its_time_budget():
    big = "optimizer Big\nstate m = zeros\n" + "".join(
        f"x{i} = sqrt(abs(g) + {i}) * exp(-g^2 / {i + 1}) + x{i - 1} * tanh(g)\n" if i else "x0 = g\n" for i in range(40)
    ) + "m = x39\np = p - 0.01 * m\n"
    rule, _ = lower(from_text(big))
    start = time.perf_counter()
    simplify_with_sympy(rule, budget_s=0.2)
    assert time.perf_counter() - start < 5.0


def test_verifier_rejects_a_broken_graph():
    rule, _ = lower(resolve("sgd"))
    bad = Node("add", (leaf("param", "p", Kind.TENSOR),), None, Kind.TENSOR)
    with pytest.raises(IRError):
        verify(rule.with_(outputs=(("p", bad),)))
    with pytest.raises(IRError):
        verify(rule.with_(outputs=(("p", leaf("state", "nope", Kind.TENSOR)),)))
    group_math_per_element = op("mul", leaf("hyper", "lr", Kind.GROUP), leaf("hyper", "lr", Kind.GROUP))
    with pytest.raises(IRError):
        verify(rule.with_(hoisted=True, outputs=(("p", op("mul", group_math_per_element, leaf("param", "p", Kind.TENSOR))),)))


def test_pipeline_is_printable():
    text = describe()
    for p in PIPELINE:
        assert p.__name__ in text
    assert len(text.splitlines()) == len(PIPELINE)
