"""Which of the parameter's dimensions a value spans, known without computing it.

A value spans the parameter's last dimension, its second-to-last, and its rank, or
not: ``rowsum(x)`` keeps the rank with size 1 in the last dimension, a per-tensor
scalar spans nothing. Row and column states span what a row or column reduction
does. Shared by the IR interpreter (the shape of a ``where`` whichever branch runs)
and the torch backend (when an in-place update would have to grow a value).
"""

from __future__ import annotations

from .nodes import STATE, Node, Rule
from .ops import GROUPS, Kind

Extent = tuple[bool, bool, bool]  # spans the last dimension, the second-to-last, the rank
FULL: Extent = (True, True, True)
NONE: Extent = (False, False, False)
STATE_EXTENT = {"row": (False, True, True), "col": (True, False, True)}
_ROW = frozenset(GROUPS["axis_reduce"][:5])
_COL = frozenset(GROUPS["axis_reduce"][5:])
_SAME = frozenset(GROUPS["chan_reduce"]) | {"newton_schulz"}


def union(*extents: Extent) -> Extent:
    return tuple(any(e[i] for e in extents) for i in range(3)) if extents else NONE


def buffer_extent(rule: Rule, name: str) -> Extent:
    if name in ("p", "g"):
        return FULL
    return STATE_EXTENT.get(rule.state(name).shape, FULL)


def extent(node: Node, rule: Rule, memo: dict[int, Extent]) -> Extent:
    hit = memo.get(id(node))
    if hit is not None:
        return hit
    if node.kind <= Kind.SCALAR:
        out = NONE
    elif node.op == "input":
        out = buffer_extent(rule, node.name) if node.attr[0] == STATE else FULL
    elif node.op == "randn":
        out = FULL
    else:
        a = [extent(x, rule, memo) for x in node.args]
        if node.op in _ROW:
            out = (False, a[0][1], a[0][2])
        elif node.op in _COL:
            out = (a[0][0], False, a[0][2])
        elif node.op == "transpose":
            out = (a[0][1], a[0][0], a[0][2])
        elif node.op == "matmul":
            out = (a[1][0], a[0][1], a[0][2] or a[1][2])
        elif node.op in _SAME:
            out = a[0]
        elif node.op == "where" and node.args[0].kind <= Kind.SHAPE:
            out = union(a[1], a[2])
        else:
            out = union(*a)
    memo[id(node)] = out
    return out


def shape_of(spans: Extent, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape a value spanning ``spans`` has, for a parameter of ``shape``."""
    last, second, rank = spans
    if not rank:
        return ()
    if last and second:
        return tuple(shape)
    if second:
        return (*shape[:-1], 1)
    if last:
        return (*shape[:-2], 1, shape[-1])
    return (*shape[:-2], *(1,) * min(len(shape), 2))
