"""`optdsl explain` figures and the canonical hash."""

from __future__ import annotations

import pytest

import optdsl
from optdsl.compiler import from_text, lower, optimize, resolve
from optdsl.ir.cost import flops, traffic


def _optimized(name_or_text: str):
    src = resolve(name_or_text) if "\n" not in name_or_text else from_text(name_or_text)
    return optimize(lower(src)[0])


@pytest.mark.parametrize(
    "spec,fp32,bf16",
    [("adamw", 28, 22), ("lion", 20, None), ("adam", 28, 22)],
)
def test_bytes_per_parameter(spec, fp32, bf16):
    rule = _optimized(spec)
    assert traffic(rule, 4, 4, 4).total == fp32
    if bf16 is not None:
        assert traffic(rule, 2, 2, 4).total == bf16


def test_sgd_with_momentum_moves_20_bytes():
    rule = _optimized("sgd")
    t = traffic(rule)
    assert [n for n, _ in t.reads] == ["p", "g", "m"]
    assert [n for n, _ in t.writes] == ["p", "m"]
    assert t.total == 20


def test_reductions_cost_a_second_pass():
    rule = _optimized("optimizer C\nstate m = zeros\nm = 0.9 * m + g\nu = m * numel / (sum(m * g > 0) + 1)\np = p - 0.1 * u\n")
    t = traffic(rule)
    assert t.total == 20
    assert {n for n, _ in t.reduction_reads} == {"g", "m"}


def test_explain_text_has_the_rule_states_traffic_and_latex():
    text = optdsl.explain("adamw")
    assert "m = lerp(m, g," in text
    assert "fp32 params and states: read 16 B (p, g, m, v), write 12 B (p, m, v): 28 B" in text
    assert "bf16 params and grads, fp32 states: read 12 B (p, g, m, v), write 10 B (p, m, v): 22 B" in text
    assert "\\begin{aligned}" in text and "\\sqrt{v}" in text
    assert f"flops per parameter: {flops(_optimized('adamw'))}" in text
    assert "states:\n  m: tensor, starts at 0\n  v: tensor, starts at 0" in text


BASE = """optimizer A
hyper lr = 0.001
hyper beta = 0.9
state m = zeros
state v = zeros
m = beta * m + (1 - beta) * g
v = 0.99 * v + 0.01 * g^2
p = p - lr * m / (sqrt(v) + 1e-8)
"""

RENAMED = """optimizer B
hyper learning_rate = 0.001
hyper momentum = 0.9
state second = zeros
state first = zeros
second = 0.99 * second + 0.01 * g^2
first = momentum * first + (1 - momentum) * g
direction = first / (sqrt(second) + 1e-8)
p = p - learning_rate * direction
"""

WITH_DEAD_CODE = BASE.replace("p = p", "junk = g * 3\nstate z = zeros\nz = z + junk\np = p")

REORDERED_SUM = BASE.replace("m = beta * m + (1 - beta) * g", "m = (1 - beta) * g + m * beta")

DIFFERENT = BASE.replace("sqrt(v) + 1e-8", "sqrt(v) + 1e-6")

DIFFERENT_STATE_FLOW = BASE.replace("v = 0.99 * v + 0.01 * g^2", "v = 0.99 * v + 0.01 * m^2")


def test_canonical_hash_ignores_names_order_and_dead_code():
    h = optdsl.rule_hash(source=BASE)
    assert optdsl.rule_hash(source=RENAMED) == h
    assert optdsl.rule_hash(source=WITH_DEAD_CODE) == h
    assert optdsl.rule_hash(source=REORDERED_SUM) == h


def test_canonical_hash_tells_different_rules_apart():
    h = optdsl.rule_hash(source=BASE)
    assert optdsl.rule_hash(source=DIFFERENT) != h
    assert optdsl.rule_hash(source=DIFFERENT_STATE_FLOW) != h
    assert optdsl.rule_hash("adamw") != optdsl.rule_hash("adam")
