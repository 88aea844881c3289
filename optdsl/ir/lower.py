"""Checked syntax tree -> IR rule.

Statements run top to bottom; each assignment rebinds a name, so after lowering
only dataflow is left: the new ``p`` and the new value of every assigned state,
as graphs over the inputs. Lowering trusts the checker: it runs only on specs
that passed ``frontend.checker.check``.

Group reductions (``global_norm(g)``) become GROUP leaves of role REDUCED, their
arguments kept in ``Rule.reductions``; each ``on EVENT:`` block becomes a rule of
its own in ``Rule.events``.
"""

from __future__ import annotations

from ..frontend import ast
from ..frontend.checker import Checked
from ..frontend.names import FUNCTIONS, GIVEN, INIT_CONSTANTS, SHAPE_NAMES
from .guards import structural_key
from .nodes import (
    GRAD, HYPER, PARAM, REDUCED, STATE, STEP, HyperDecl, KeywordDecl, Node, RequireDecl, Reduction, Rule, StateDecl, const, leaf, op,
    random_normal, shape_scalar,
)
from .ops import GROUPS, SYMBOL_ARITH, SYMBOL_COMPARES, Kind

_ROLES = {"p": PARAM, "g": GRAD, "t": STEP}


class _Lowering:
    """Shared state of one lowering: randn draws, group reductions, and (optionally) the
    source span of every node built, for located errors about the IR."""

    def __init__(self, spans: dict[int, object] | None):
        self.draws: list[Node] = []
        self.reductions: list[Reduction] = []
        self.reduction_keys: dict[tuple, Node] = {}
        self.spans = spans

    def expr(self, e: ast.Expr, env: dict[str, Node]) -> Node:
        node = self._expr(e, env)
        if self.spans is not None:
            self.spans.setdefault(id(node), e.span)
        return node

    def _expr(self, e: ast.Expr, env: dict[str, Node]) -> Node:
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
            return op("neg", self.expr(e.operand, env))
        if isinstance(e, ast.Binary):
            name = SYMBOL_COMPARES.get(e.op) or SYMBOL_ARITH[e.op]
            return op(name, self.expr(e.left, env), self.expr(e.right, env))
        if isinstance(e, ast.Call):
            name = FUNCTIONS[e.func][len(e.args)]
            if name == "randn":
                self.draws.append(random_normal(len(self.draws)))
                return self.draws[-1]
            args = [self.expr(a, env) for a in e.args]
            if name in GROUPS["group_reduce"]:
                return self.reduction(name, args[0])
            return op(name, *args)
        raise AssertionError(e)  # pragma: no cover

    def reduction(self, name: str, arg: Node) -> Node:
        key = (name, structural_key(arg, {}))
        if key not in self.reduction_keys:
            label = f"_{name}{len(self.reductions)}"
            self.reductions.append(Reduction(label, name, arg))
            self.reduction_keys[key] = leaf(REDUCED, label, Kind.GROUP)
        return self.reduction_keys[key]


def lower(checked: Checked, origin: str = "", spans: dict[int, object] | None = None) -> Rule:
    """The IR rule of a checked spec; ``spans`` (if given) collects the source span of each node."""
    spec = checked.spec
    work = _Lowering(spans)
    hypers = tuple(_hyper_decl(h) for h in spec.hypers)
    env: dict[str, Node] = {name: leaf(_ROLES[name], name, kind) for name, kind in GIVEN.items()}
    for h in hypers:
        env[h.name] = leaf(HYPER, h.name, Kind.GROUP)
    init_env = dict(env)
    states = []
    for s in spec.states:
        on_host = checked.scalar_kinds.get(s.name) == Kind.SHAPE
        when = work.expr(s.when, init_env) if s.when is not None else None
        decl = StateDecl(s.name, s.shape, work.expr(s.init, init_env), on_host, when, s.alias, s.optional)
        states.append(decl)
        env[s.name] = leaf(STATE, s.name, decl.kind)
    outputs = _run(spec.statements, env, states, work)
    source = spec.source if isinstance(spec.source, str) else "\n".join((spec.source or {}).values())
    events = []
    for block in spec.blocks:
        block_env = {k: v for k, v in env.items() if k != "g"}
        block_outputs = _run(block.statements, block_env, states, work)
        events.append((block.event, Rule(spec.name, "", hypers, tuple(states), block_outputs, source=source)))
    return Rule(
        name=spec.name,
        doc=spec.doc,
        hypers=hypers,
        states=tuple(states),
        outputs=outputs,
        source=source,
        origin=origin,
        reductions=tuple(work.reductions),
        events=tuple(events),
        keywords=tuple(KeywordDecl(k.name, _literal(k.value), k.message) for k in spec.keywords),
        requirements=tuple(RequireDecl(work.expr(r.condition, init_env), r.message) for r in spec.requirements),
    )


def _literal(value: ast.Num | ast.Bool | ast.Str | None) -> float | bool | str | None:
    return None if value is None else value.value


def _run(statements, env: dict[str, Node], states: list[StateDecl], work: _Lowering) -> tuple:
    """Run ``statements`` over a copy of ``env``: the new p and the changed states."""
    env = dict(env)
    initial = dict(env)
    for stmt in statements:
        node = work.expr(stmt.value, env)
        if node.hint is None and node.op not in ("input", "const"):
            node.hint = stmt.target
        env[stmt.target] = node
    outputs = [("p", env["p"])]
    outputs += [(s.name, env[s.name]) for s in states if env[s.name] is not initial[s.name]]
    return tuple(outputs)


def _hyper_decl(h: ast.Hyper) -> HyperDecl:
    if isinstance(h.default, ast.Bool):
        return HyperDecl(h.name, "bool", h.default.value)
    if isinstance(h.default, ast.Str):
        return HyperDecl(h.name, "choice", h.default.value, choices=h.domain.options)
    d = h.domain
    if d is None:
        return HyperDecl(h.name, "float", h.default.value, role=h.role)
    return HyperDecl(h.name, "float", h.default.value, d.low, d.high, d.low_closed, d.high_closed, role=h.role)
