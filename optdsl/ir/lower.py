"""Checked syntax tree -> IR rule.

Statements run top to bottom; each assignment rebinds a name, so after lowering
only dataflow is left: the new ``p`` and the new value of every assigned state,
as graphs over the inputs. Lowering trusts the checker: it runs only on specs
that passed ``frontend.checker.check``.
"""

from __future__ import annotations

from ..frontend import ast
from ..frontend.checker import Checked
from ..frontend.names import FUNCTIONS, GIVEN, INIT_CONSTANTS, SHAPE_NAMES
from .nodes import GRAD, HYPER, PARAM, STATE, STEP, HyperDecl, Node, Rule, StateDecl, const, leaf, op, random_normal, shape_scalar
from .ops import SYMBOL_ARITH, SYMBOL_COMPARES, Kind

_ROLES = {"p": PARAM, "g": GRAD, "t": STEP}


def lower(checked: Checked, origin: str = "") -> Rule:
    spec = checked.spec
    hypers = tuple(_hyper_decl(h) for h in spec.hypers)
    env: dict[str, Node] = {name: leaf(_ROLES[name], name, kind) for name, kind in GIVEN.items()}
    for h in hypers:
        env[h.name] = leaf(HYPER, h.name, Kind.GROUP)
    init_env = dict(env)
    draws: list[Node] = []  # randn() calls so far: each is its own draw
    states = []
    for s in spec.states:
        on_host = checked.scalar_kinds.get(s.name) == Kind.SHAPE
        decl = StateDecl(s.name, s.shape, _expr(s.init, init_env, hypers, draws), on_host)
        states.append(decl)
        env[s.name] = leaf(STATE, s.name, decl.kind)
    initial = dict(env)
    for stmt in spec.statements:
        node = _expr(stmt.value, env, hypers, draws)
        if node.hint is None and node.op not in ("input", "const"):
            node.hint = stmt.target
        env[stmt.target] = node
    outputs = [("p", env["p"])]
    outputs += [(s.name, env[s.name]) for s in states if env[s.name] is not initial[s.name]]
    return Rule(
        name=spec.name,
        doc=spec.doc,
        hypers=hypers,
        states=tuple(states),
        outputs=tuple(outputs),
        source=spec.source if isinstance(spec.source, str) else "\n".join((spec.source or {}).values()),
        origin=origin,
    )


def _hyper_decl(h: ast.Hyper) -> HyperDecl:
    if isinstance(h.default, ast.Bool):
        return HyperDecl(h.name, "bool", h.default.value)
    if isinstance(h.default, ast.Str):
        return HyperDecl(h.name, "choice", h.default.value, choices=h.domain.options)
    d = h.domain
    if d is None:
        return HyperDecl(h.name, "float", h.default.value)
    return HyperDecl(h.name, "float", h.default.value, d.low, d.high, d.low_closed, d.high_closed)


def _expr(e: ast.Expr, env: dict[str, Node], hypers, draws: list[Node]) -> Node:
    if isinstance(e, ast.Num):
        return const(e.value)
    if isinstance(e, ast.Bool):
        return const(1.0 if e.value else 0.0)
    if isinstance(e, ast.Str):
        return const(e.value)
    if isinstance(e, ast.Name):
        if e.id in env:
            return env[e.id]
        if e.id in SHAPE_NAMES:
            return shape_scalar(e.id)
        if e.id in INIT_CONSTANTS:
            return const(INIT_CONSTANTS[e.id])
        raise AssertionError(f"unchecked name {e.id!r}")  # pragma: no cover
    if isinstance(e, ast.Unary):
        return op("neg", _expr(e.operand, env, hypers, draws))
    if isinstance(e, ast.Binary):
        name = SYMBOL_COMPARES.get(e.op) or SYMBOL_ARITH[e.op]
        return op(name, _expr(e.left, env, hypers, draws), _expr(e.right, env, hypers, draws))
    if isinstance(e, ast.Call):
        name = FUNCTIONS[e.func][len(e.args)]
        if name == "randn":
            draws.append(random_normal(len(draws)))
            return draws[-1]
        return op(name, *(_expr(a, env, hypers, draws) for a in e.args))
    raise AssertionError(e)  # pragma: no cover
