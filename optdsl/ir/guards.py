"""When each value of a rule is computed: the host conditions on the paths to it.

A ``where`` whose condition is a host value (group or shape kind) takes one branch
per tensor: everything below a branch is computed only where the condition holds
(or fails). The *guard* of a node is that knowledge as a disjunction of
conjunctions of literals, a literal being a host condition and its truth value:
``where(ndim == 2, newton_schulz(m, ...), adam)`` guards the Newton-Schulz call
with ``ndim == 2`` and the Adam branch with ``ndim != 2``.

Used to check that states declared ``when COND`` are only read and written where
COND holds, that rank-dependent operations (matrix ops, column reductions) are
reachable for the ranks they need, and by the backends to compute a shared value
or run a torch op only for the tensors that need it.

The analysis is sound, not complete: a guard may say less than is true (then a
check reports an error the author can fix by guarding more plainly), never more.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .nodes import HOST, Node, postorder
from .nodes import op as make_op
from .ops import Kind

Literal = tuple[tuple, bool]  # (structural key of a condition, the truth value it has)
Conjunction = frozenset  # of Literal
Guard = frozenset  # of Conjunction; a disjunction

TRUE: Guard = frozenset({frozenset()})
FALSE: Guard = frozenset()
MAX_TERMS = 64  # a guard with more conjunctions is widened to TRUE (sound: it only says less)

_NEGATED = {"lt": "ge", "ge": "lt", "le": "gt", "gt": "le", "eq": "ne", "ne": "eq"}
_COMPARE = {"lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge, "eq": operator.eq, "ne": operator.ne}


def conjoin(a: Guard, b: Guard) -> Guard:
    return _simplify(frozenset(x | y for x in a for y in b))


def disjoin(a: Guard, b: Guard) -> Guard:
    return _simplify(a | b)


def _simplify(guard: Guard) -> Guard:
    """Drop contradictory conjunctions and those implied by a smaller one (absorption), and merge
    two that differ in one literal's truth only ((c and l) or (c and not l) is c)."""
    terms = {c for c in guard if not any((key, not truth) in c for key, truth in c)}
    merged = True
    while merged and len(terms) <= MAX_TERMS:
        merged = False
        for c in list(terms):
            for key, truth in c:
                twin = (c - {(key, truth)}) | {(key, not truth)}
                if twin in terms:
                    terms -= {c, twin}
                    terms.add(c - {(key, truth)})
                    merged = True
                    break
            if merged:
                break
    terms = sorted(terms, key=len)
    kept: list[frozenset] = []
    for c in terms:
        if not any(k <= c for k in kept):
            kept.append(c)
    if len(kept) > MAX_TERMS:
        return TRUE
    return frozenset(kept)


@dataclass
class Guards:
    """The guard of every node reachable from some roots, with the conditions' nodes for printing."""

    of: dict[int, Guard]
    conditions: dict[tuple, Node] = field(default_factory=dict)  # literal key -> a node testing it
    host: dict[str, Node] = field(default_factory=dict)

    def __getitem__(self, node: Node) -> Guard:
        return self.of.get(id(node), FALSE)

    # literals ---------------------------------------------------------------------------
    def literal(self, cond: Node, truth: bool) -> Literal:
        """The literal "``cond`` is nonzero" (``truth``) or "is zero", comparisons normalized so
        that ``not (a < b)`` and ``a >= b`` are the same literal."""
        resolved = resolve(cond, self.host)
        if resolved.op in _NEGATED and not truth:
            key = (_NEGATED[resolved.op], *structural_key(resolved, self.host)[1:])
            self.conditions.setdefault(key, make_op(_NEGATED[resolved.op], *resolved.args))
            return key, True
        key = structural_key(resolved, self.host)
        self.conditions.setdefault(key, cond)
        return key, truth

    def condition_of(self, cond: Node) -> Guard:
        """``cond`` (a host value used as a truth value) as a guard: a product of truth values is a
        conjunction, their ``max`` a disjunction, ``where(c, a, b)`` of them (c and a) or (not c
        and b); anything else one literal."""
        resolved = resolve(cond, self.host)
        if resolved.op == "mul" and self._truths(resolved.args):
            return conjoin(self.condition_of(resolved.args[0]), self.condition_of(resolved.args[1]))
        if resolved.op == "max" and self._truths(resolved.args):
            return disjoin(self.condition_of(resolved.args[0]), self.condition_of(resolved.args[1]))
        if resolved.op == "where" and self._truths(resolved.args[1:]):
            c, a, b = resolved.args
            return disjoin(conjoin(self.condition_of(c), self.condition_of(a)),
                           conjoin(self.negation_of(c), self.condition_of(b)))
        if resolved.op == "const" and isinstance(resolved.attr, float):
            return TRUE if resolved.attr != 0 else FALSE
        return frozenset({frozenset({self.literal(cond, True)})})

    def negation_of(self, cond: Node) -> Guard:
        resolved = resolve(cond, self.host)
        if resolved.op == "mul" and self._truths(resolved.args):
            return disjoin(self.negation_of(resolved.args[0]), self.negation_of(resolved.args[1]))
        if resolved.op == "max" and self._truths(resolved.args):
            return conjoin(self.negation_of(resolved.args[0]), self.negation_of(resolved.args[1]))
        if resolved.op == "where" and self._truths(resolved.args[1:]):
            c, a, b = resolved.args
            return disjoin(conjoin(self.condition_of(c), self.negation_of(a)),
                           conjoin(self.negation_of(c), self.negation_of(b)))
        if resolved.op == "const" and isinstance(resolved.attr, float):
            return FALSE if resolved.attr != 0 else TRUE
        return frozenset({frozenset({self.literal(cond, False)})})

    def _truths(self, nodes) -> bool:
        return all(_is_truth_value(a, self.host) for a in nodes)


def _is_truth_value(node: Node, host: dict[str, Node]) -> bool:
    """A host value that is 0 or 1: a comparison, a flag, or products, maxima and wheres of them."""
    node = resolve(node, host)
    if node.op in _NEGATED:
        return True
    if node.op == "const" and isinstance(node.attr, float):
        return node.attr in (0.0, 1.0)
    if node.op == "input" and node.attr[0] == "hyper" and node.kind == Kind.GROUP:
        return False  # a flag is a truth value, but a float hyper is not: unknown here, a literal
    if node.op in ("mul", "max"):
        return all(_is_truth_value(a, host) for a in node.args)
    if node.op == "where":
        return all(_is_truth_value(a, host) for a in node.args[1:])
    return False


def resolve(node: Node, host: dict[str, Node]) -> Node:
    """A hoisted host value's definition (through chains of them)."""
    while node.op == "input" and node.attr[0] == HOST and node.attr[1] in host:
        node = host[node.attr[1]]
    return node


def structural_key(node: Node, host: dict[str, Node], memo: dict[int, tuple] | None = None) -> tuple:
    """A key equal for structurally equal expressions, hoisted host values inlined."""
    memo = {} if memo is None else memo
    node = resolve(node, host)
    hit = memo.get(id(node))
    if hit is None:
        attr = node.attr
        if node.op == "const" and isinstance(attr, float):
            attr = ("f", attr.hex()) if attr == attr else ("f", "nan")
        hit = (node.op, attr, *(structural_key(a, host, memo) for a in node.args))
        memo[id(node)] = hit
    return hit


def is_host_where(node: Node) -> bool:
    return node.op == "where" and node.args[0].kind <= Kind.SHAPE


def compute(roots: Iterable[tuple[Node, Guard]], host: dict[str, Node] | None = None,
            skip: Callable[[Node, int], bool] | None = None) -> Guards:
    """Guards of every node reachable from ``roots`` (each with the guard it is computed under).

    Hoisted host values (``input(HOST, name)``) are followed into their definitions, so
    a value read only by host math inside a branch is guarded by it too. ``skip(node, i)``
    says that argument ``i`` of ``node`` is not evaluated (a state output's "keep the old
    value" branch does not read the old value).
    """
    host = dict(host or {})
    guards = Guards({}, {}, host)
    roots = list(roots)

    def children(node: Node) -> list[Node]:
        if node.op == "input" and node.attr[0] == HOST and node.attr[1] in host:
            return [host[node.attr[1]]]
        return list(node.args)

    order = list(postorder([r for r, _ in roots], children))
    for root, guard in roots:
        guards.of[id(root)] = disjoin(guards.of.get(id(root), FALSE), guard)
    for node in reversed(order):
        g = guards.of.get(id(node), FALSE)
        if not g:
            continue
        kids = children(node)
        if node.op == "where" and node.args[0].kind <= Kind.SHAPE and kids == list(node.args):
            cond = node.args[0]
            branches = [(kids[0], g), (kids[1], conjoin(g, guards.condition_of(cond))),
                        (kids[2], conjoin(g, guards.negation_of(cond)))]
        else:
            branches = [(k, g) for k in kids]
        for i, (child, cg) in enumerate(branches):
            if skip is not None and kids == list(node.args) and skip(node, i):
                continue
            guards.of[id(child)] = disjoin(guards.of.get(id(child), FALSE), cg)
    return guards


def implies(guard: Guard, condition: Guard) -> bool:
    """Whether ``guard`` certainly implies ``condition`` (every conjunction of the guard
    contains some conjunction of the condition)."""
    return all(any(c <= g for c in condition) for g in guard)


# --- ranks -------------------------------------------------------------------------------


def _ndim_literal(key: tuple) -> tuple[Callable, float, bool] | None:
    """(comparison, number, ndim on the left) for a literal on ``ndim`` against a number."""
    op, _, *args = key
    if op not in _COMPARE or len(args) != 2:
        return None
    left, right = args
    if left[0] == "ndim" and right[0] == "const" and isinstance(right[1], tuple):
        return _COMPARE[op], float.fromhex(right[1][1]), True
    if right[0] == "ndim" and left[0] == "const" and isinstance(left[1], tuple):
        return _COMPARE[op], float.fromhex(left[1][1]), False
    return None


def possible_ranks(conjunction: frozenset, ranks: range = range(0, 9)) -> set[int]:
    """The ranks (ndim values) a conjunction allows, judging only its literals on ndim."""
    out = set()
    for n in ranks:
        ok = True
        for key, truth in conjunction:
            lit = _ndim_literal(key)
            if lit is None:
                continue
            cmp, number, left = lit
            value = cmp(float(n), number) if left else cmp(number, float(n))
            if value != truth:
                ok = False
                break
        if ok:
            out.add(n)
    return out


def reachable_ranks(guard: Guard) -> set[int]:
    """The ranks for which a node under ``guard`` may be computed (ranks 0 to 8; 8 stands for more)."""
    out: set[int] = set()
    for c in guard:
        out |= possible_ranks(c)
    return out


# --- printing ------------------------------------------------------------------------------


def condition_text(guard: Guard, guards: Guards, literal_text: Callable[[Node], str]) -> str:
    """The guard as a Python condition; ``literal_text(node)`` prints a condition node as a bool."""
    if guard == TRUE:
        return "True"
    if not guard:
        return "False"
    terms = []
    for conj in sorted(guard, key=lambda c: sorted(map(repr, c))):
        parts = []
        for key, truth in sorted(conj, key=repr):
            text = literal_text(guards.conditions[key])
            parts.append(f"({text})" if not truth or len(conj) > 1 or len(guard) > 1 else text)
            if not truth:
                parts[-1] = "not " + parts[-1]
        terms.append(" and ".join(parts))
    if len(terms) == 1:
        return terms[0]
    return " or ".join(f"({t})" if " and " in t else t for t in terms)
