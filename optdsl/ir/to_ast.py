"""IR rule -> syntax tree: "raise" a (simplified) rule back into a spec.

The inverse of lowering, up to names: ``lower(check(raise_rule(rule)))``
computes what ``rule`` computes. Statements come from the same schedule the
backends use (:func:`ir.schedule.schedule`), so values used more than once
become locals and a state's new value is written only once nothing needs its
old one; hoisted host values come first. ``optdsl search --export`` prints
found rules this way after the compiler passes.
"""

from __future__ import annotations

import math

from ..frontend import ast
from ..frontend.names import FUNCTIONS
from .nodes import REDUCED, Node, Rule
from .ops import ARITH_SYMBOLS, COMPARE_SYMBOLS, GROUPS
from .schedule import schedule

# IR op -> DSL function name (inverse of frontend.names.FUNCTIONS).
_FUNCTION_OF = {op: name for name, table in FUNCTIONS.items() for op in table.values()}
_SHAPE_OPS = GROUPS["shape"]


def raise_rule(rule: Rule, name: str | None = None, doc: str | None = None) -> ast.Spec:
    """The spec of ``rule`` (optionally renamed / re-documented) as a syntax tree."""
    items: list[ast.Item] = []
    text = rule.doc if doc is None else doc
    if text:
        items.append(ast.Doc(text))
    items += [_hyper(h) for h in rule.hypers]
    reduced = {r.name: r for r in rule.reductions}
    items += [
        ast.State(s.name, s.shape, _state_init(s.init, reduced),
                  when=expr_of(s.when, {}, reduced=reduced) if s.when is not None else None,
                  alias=s.alias, optional=s.optional)
        for s in rule.states
    ]
    items += [ast.Keyword(k.name, _keyword_value(k.value), k.message) for k in rule.keywords]
    items += [ast.Require(expr_of(r.condition, {}), r.message) for r in rule.requirements]
    items += _statements(rule)
    items += [ast.OnBlock(event, tuple(_statements(body))) for event, body in rule.events]
    return ast.Spec("optimizer", name or rule.name, None, tuple(items))


def _hyper(h) -> ast.Hyper:
    if h.type == "bool":
        return ast.Hyper(h.name, ast.Bool(bool(h.default)), None)
    if h.type == "choice":
        return ast.Hyper(h.name, ast.Str(h.default), ast.Choices(tuple(h.choices)))
    domain = None
    if h.low is not None:
        domain = ast.Interval(h.low, h.high, h.low_closed, h.high_closed)
    return ast.Hyper(h.name, ast.Num(float(h.default)), domain, role=h.role)


def _keyword_value(value) -> ast.Num | ast.Bool | ast.Str | None:
    if value is None or isinstance(value, bool):
        return None if value is None else ast.Bool(value)
    return ast.Str(value) if isinstance(value, str) else ast.Num(float(value))


def _state_init(node: Node, reduced: dict) -> ast.Expr:
    if node.op == "const" and node.attr == 0.0:
        return ast.Name("zeros")
    if node.op == "const" and node.attr == 1.0:
        return ast.Name("ones")
    return expr_of(node, {}, reduced=reduced)


def _statements(rule: Rule) -> list[ast.Assign]:
    taken = {h.name for h in rule.hypers} | {s.name for s in rule.states} | {n for n, _ in rule.host}
    sched = schedule(rule, taken)
    reduced = {r.name: r for r in rule.reductions}
    out = [ast.Assign(name, expr_of(node, {}, reduced=reduced)) for name, node in rule.host]
    for st in sched.statements:
        if st.kind == "copy":
            out.append(ast.Assign(st.buffer, ast.Name(st.name)))
        else:
            out.append(ast.Assign(st.name, expr_of(st.node, sched.names, top=True, reduced=reduced)))
    return out


def expr_of(node: Node, names: dict[int, str], top: bool = False, reduced: dict | None = None) -> ast.Expr:
    """The expression of ``node``; nodes in ``names`` (below the top) are read by name, and a
    group reduction's leaf (``reduced``: name -> Reduction) as the call that computes it."""
    reduced = reduced or {}
    if not top and id(node) in names:
        return ast.Name(names[id(node)])
    if node.op == "const":
        return _constant(node.attr)
    if node.op == "input" and node.attr[0] == REDUCED:
        r = reduced[node.attr[1]]
        return ast.Call(r.op, (expr_of(r.arg, {}, reduced=reduced),))
    if node.op == "input":
        return ast.Name(node.attr[1])
    if node.op in _SHAPE_OPS:
        return ast.Name(node.op)
    args = tuple(expr_of(a, names, reduced=reduced) for a in node.args)
    if node.op == "neg":
        return ast.Unary("-", args[0])
    symbol = ARITH_SYMBOLS.get(node.op) or COMPARE_SYMBOLS.get(node.op)
    if symbol is not None:
        return ast.Binary(symbol, args[0], args[1])
    return ast.Call(_FUNCTION_OF[node.op], args)


def _constant(value: float | str) -> ast.Expr:
    if isinstance(value, str):
        return ast.Str(value)
    if math.isnan(value):
        raise ValueError("a NaN constant has no spelling in a spec")
    if value < 0 or (value == 0 and math.copysign(1.0, value) < 0):
        return ast.Unary("-", ast.Num(-value))
    return ast.Num(value)
