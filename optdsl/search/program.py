"""Candidate programs: specs in *search form*, and the tree edits mutations use.

Search form is an ordinary spec with one hyper, ``lr`` (the scorer sweeps it),
tensor states, and assignments; every other number is a constant the search
may perturb. A warm start becomes search form by inlining its other hypers
(their defaults, or the values the space file gives) and folding what that
makes constant: SGD with ``momentum = 0.9`` loses its ``where(momentum == 0, ...)``.
Everything goes through the compiler's public frontend: ``parse``, ``check``,
``print_spec``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterator

from ..compiler import resolve
from ..frontend import ast
from ..frontend.checker import check
from ..frontend.parser import parse
from ..frontend.printer import print_spec
from .space import WarmStart

CANDIDATE_NAME = "Candidate"
LR_DOMAIN = ast.Interval(0.0, math.inf, True, False)

Path = tuple[int, ...]  # child indices from a statement's value down to a node


# --- warm starts -------------------------------------------------------------------------


class WarmStartError(ValueError):
    """A warm-start spec that cannot be put in search form."""


def warm_start_source(entry: WarmStart) -> str:
    """The search-form text of a warm start (checked)."""
    text = entry.source if entry.source is not None else resolve(entry.spec).text
    spec = parse(text, entry.spec or "<warm start>")
    check(spec)
    overrides = dict(entry.hypers)
    hypers = {h.name: h for h in spec.hypers}
    if "lr" not in hypers:
        raise WarmStartError(f"warm start {entry.spec or spec.name!r} has no hyper named lr")
    unknown = set(overrides) - set(hypers)
    if unknown:
        raise WarmStartError(f"warm start {entry.spec or spec.name!r} has no hyper(s) {', '.join(sorted(unknown))}")
    values = {name: _literal(overrides.get(name, _default(h))) for name, h in hypers.items() if name != "lr"}
    lr = float(overrides.get("lr", hypers["lr"].default.value))
    items: list[ast.Item] = [ast.Hyper("lr", ast.Num(lr), LR_DOMAIN)]
    items += [ast.State(s.name, "tensor", fold(inline(s.init, values))) for s in spec.states]
    items += [ast.Assign(a.target, fold(inline(a.value, values))) for a in spec.statements]
    return canonical_text(tidy(ast.Spec("optimizer", CANDIDATE_NAME, None, tuple(items))))


def _default(h: ast.Hyper):
    return h.default.value


def _literal(value) -> ast.Expr:
    if isinstance(value, bool):
        return ast.Num(1.0 if value else 0.0)
    if isinstance(value, str):
        return ast.Str(value)
    return number(float(value))


def inline(expr: ast.Expr, values: dict[str, ast.Expr]) -> ast.Expr:
    """``expr`` with the names in ``values`` replaced by their values."""
    return map_expr(expr, lambda e: values.get(e.id, e) if isinstance(e, ast.Name) else e)


# --- constant folding ----------------------------------------------------------------------

_ARITH = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv, "^": math.pow}
_COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq, "!=": operator.ne}


def number(value: float) -> ast.Expr:
    """A constant as the parser would read it back (negatives are a unary minus)."""
    if value < 0 or (value == 0 and math.copysign(1.0, value) < 0):
        return ast.Unary("-", ast.Num(-value))
    return ast.Num(value)


def constant_value(e: ast.Expr):
    """The number or text ``e`` stands for, or None."""
    if isinstance(e, (ast.Num, ast.Str)):
        return e.value
    if isinstance(e, ast.Unary) and isinstance(e.operand, ast.Num):
        return -e.operand.value
    return None


def fold(expr: ast.Expr) -> ast.Expr:
    """Fold constant arithmetic, constant ``where`` conditions and 0/1 identities."""
    return map_expr(expr, _fold_node)


def _fold_node(e: ast.Expr) -> ast.Expr:
    if isinstance(e, ast.Unary):
        inner = constant_value(e.operand)
        return number(-inner) if isinstance(inner, float) else e
    if isinstance(e, ast.Binary):
        return _fold_binary(e)
    if isinstance(e, ast.Call) and e.func == "where":
        condition = constant_value(e.args[0])
        if isinstance(condition, float):
            return e.args[1] if condition != 0 else e.args[2]
    return e


def _fold_binary(e: ast.Binary) -> ast.Expr:
    a, b = constant_value(e.left), constant_value(e.right)
    if e.op in _COMPARE and a is not None and b is not None and type(a) is type(b):
        return ast.Num(1.0 if _COMPARE[e.op](a, b) else 0.0)
    if isinstance(a, float) and isinstance(b, float) and e.op in _ARITH:
        try:
            value = _ARITH[e.op](a, b)
        except (ArithmeticError, ValueError):
            return e
        return number(float(f"{value:.12g}")) if math.isfinite(value) else e
    if e.op == "*" and (a == 0 or b == 0):
        return ast.Num(0.0)
    if (e.op == "*" and a == 1) or (e.op == "+" and a == 0):
        return e.right
    if (e.op in ("*", "/", "^") and b == 1) or (e.op in ("+", "-") and b == 0):
        return e.left
    return e


# --- tree edits ---------------------------------------------------------------------------


def children(e: ast.Expr) -> tuple[ast.Expr, ...]:
    if isinstance(e, ast.Unary):
        return (e.operand,)
    if isinstance(e, ast.Binary):
        return (e.left, e.right)
    if isinstance(e, ast.Call):
        return e.args
    return ()


def with_children(e: ast.Expr, kids: tuple[ast.Expr, ...]) -> ast.Expr:
    if isinstance(e, ast.Unary):
        return ast.Unary(e.op, kids[0])
    if isinstance(e, ast.Binary):
        return ast.Binary(e.op, kids[0], kids[1])
    if isinstance(e, ast.Call):
        return ast.Call(e.func, tuple(kids))
    return e


def map_expr(expr: ast.Expr, fn) -> ast.Expr:
    """Rebuild ``expr`` bottom-up with ``fn`` applied to every node."""
    kids = children(expr)
    if kids:
        expr = with_children(expr, tuple(map_expr(k, fn) for k in kids))
    return fn(expr)


def paths(expr: ast.Expr, prefix: Path = ()) -> Iterator[tuple[Path, ast.Expr]]:
    """Every node of ``expr`` with its path, parents first."""
    yield prefix, expr
    for i, kid in enumerate(children(expr)):
        yield from paths(kid, prefix + (i,))


def replace_at(expr: ast.Expr, path: Path, new: ast.Expr) -> ast.Expr:
    if not path:
        return new
    kids = list(children(expr))
    kids[path[0]] = replace_at(kids[path[0]], path[1:], new)
    return with_children(expr, tuple(kids))


def size(expr: ast.Expr) -> int:
    return 1 + sum(size(k) for k in children(expr))


def names_read(expr: ast.Expr) -> set[str]:
    return {e.id for _, e in paths(expr) if isinstance(e, ast.Name)}


# --- whole programs ---------------------------------------------------------------------


def rebuild(spec: ast.Spec, statements: list[ast.Assign], states: list[ast.State] | None = None) -> ast.Spec:
    """``spec`` with new statements (and states); hypers and docs kept."""
    head = [i for i in spec.items if isinstance(i, (ast.Doc, ast.Hyper))]
    states = list(spec.states) if states is None else states
    return ast.Spec(spec.kind, spec.name, spec.hook, tuple(head + states + statements))


def tidy(spec: ast.Spec) -> ast.Spec:
    """Drop state declarations nothing reads or writes."""
    used = {a.target for a in spec.statements}
    for a in spec.statements:
        used |= names_read(a.value)
    states = [s for s in spec.states if s.name in used]
    return rebuild(spec, list(spec.statements), states)


def canonical_text(spec: ast.Spec) -> str:
    """The printed spec: the one text a candidate is stored and compiled as."""
    return print_spec(spec)


def checked_spec(text: str) -> ast.Spec:
    """Parse and check candidate text; raises SpecError when the checker rejects it."""
    spec = parse(text, "<candidate>")
    check(spec)
    return spec


def renamed(text: str, name: str, doc: str | None = None) -> str:
    """Candidate text under another optimizer name (and docstring)."""
    spec = parse(text)
    items = [i for i in spec.items if not isinstance(i, ast.Doc)]
    if doc:
        items.insert(0, ast.Doc(doc))
    return print_spec(ast.Spec(spec.kind, name, spec.hook, tuple(items)))
