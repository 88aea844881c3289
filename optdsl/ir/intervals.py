"""Interval arithmetic over host values: bounds from the hypers' declared ranges.

Used to prove host math safe (no division by zero, no sqrt of a negative) so the
printer can emit plain Python, and by passes that need a sign (a nonnegative
factor may leave ``abs``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .nodes import HOST, HYPER, STEP, Node, Rule
from .ops import COMPARE_SYMBOLS

INF = math.inf

@dataclass(frozen=True)
class Interval:
    """Bounds on a host value; an open end excludes the bound itself."""

    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False

    def excludes_zero(self) -> bool:
        return self.lo > 0 or self.hi < 0 or (self.lo == 0 and self.lo_open) or (self.hi == 0 and self.hi_open)

    def positive(self) -> bool:
        return self.lo > 0 or (self.lo == 0 and self.lo_open)

    def nonnegative(self) -> bool:
        return self.lo >= 0


EVERYTHING = Interval(-INF, INF)
FLOAT16_MAX = 65504.0


def fits_float16(iv: Interval) -> bool:
    """Whether every value in ``iv`` is a finite float16 (so also a finite float32, float64, bfloat16)."""
    return -FLOAT16_MAX <= iv.lo and iv.hi <= FLOAT16_MAX


def _mul_iv(a: Interval, b: Interval) -> Interval:
    if a.nonnegative() and b.nonnegative():
        lo = a.lo * b.lo
        hi = a.hi * b.hi if not (a.hi == 0 or b.hi == 0) else 0.0
        if math.isnan(hi):
            hi = INF
        return Interval(lo, hi, (a.lo_open or b.lo_open) and lo == 0 and a.positive() and b.positive(), a.hi_open or b.hi_open)
    products = []
    for x in (a.lo, a.hi):
        for y in (b.lo, b.hi):
            products.append(0.0 if (x == 0 and math.isinf(y)) or (y == 0 and math.isinf(x)) else x * y)
    return Interval(min(products), max(products))


def interval(node: Node, rule: Rule, cache: dict | None = None) -> Interval:
    """Bounds that certainly contain the host value ``node``, given the hypers' ranges."""
    cache = {} if cache is None else cache
    key = id(node)
    if key not in cache:
        try:
            cache[key] = _interval(node, rule, cache)
        except (OverflowError, ValueError, ZeroDivisionError):
            cache[key] = EVERYTHING
    return cache[key]


def _leaf_interval(node: Node, rule: Rule, cache: dict) -> Interval:
    if node.op == "const":
        return Interval(node.attr, node.attr) if isinstance(node.attr, float) else EVERYTHING
    if node.op in ("numel", "rows", "cols", "channels"):
        return Interval(1.0, INF)
    if node.op == "ndim":
        return Interval(0.0, INF)
    role, name = node.attr
    if role == STEP:
        return Interval(1.0, INF)
    if role == HOST:
        return interval(dict(rule.host)[name], rule, cache)
    if role == HYPER:
        h = rule.hyper(name)
        if h.type == "bool":
            return Interval(0.0, 1.0)
        if h.type == "float" and h.low is not None:
            return Interval(h.low, h.high, not h.low_closed, not h.high_closed)
    return EVERYTHING


def _interval(node: Node, rule: Rule, cache: dict) -> Interval:
    if not node.args:
        return _leaf_interval(node, rule, cache)
    a = [interval(x, rule, cache) for x in node.args]
    o = node.op
    if o == "add":
        return Interval(a[0].lo + a[1].lo, a[0].hi + a[1].hi, a[0].lo_open or a[1].lo_open, a[0].hi_open or a[1].hi_open)
    if o == "sub":
        return Interval(a[0].lo - a[1].hi, a[0].hi - a[1].lo, a[0].lo_open or a[1].hi_open, a[0].hi_open or a[1].lo_open)
    if o == "neg":
        return Interval(-a[0].hi, -a[0].lo, a[0].hi_open, a[0].lo_open)
    if o == "mul":
        return _mul_iv(a[0], a[1])
    if o == "div":
        d = a[1]
        if not d.excludes_zero():
            return EVERYTHING
        if d.positive():
            inv = Interval(1 / d.hi if d.hi != INF else 0.0, 1 / d.lo if d.lo else INF, d.hi_open or d.hi == INF, False)
            return _mul_iv(a[0], inv)
        return EVERYTHING
    if o == "sqrt":
        x = a[0]
        return Interval(math.sqrt(max(x.lo, 0.0)), math.sqrt(x.hi) if x.hi >= 0 else 0.0, x.lo_open and x.lo >= 0, x.hi_open)
    if o in ("abs", "square"):
        x = a[0]
        if x.nonnegative():
            return x if o == "abs" else _mul_iv(x, x)
        m = max(abs(x.lo), abs(x.hi))
        return Interval(0.0, m if o == "abs" else m * m)
    if o == "pow":
        b, e = a
        if b.nonnegative() and (b.hi < 1 or (b.hi == 1 and b.hi_open)) and e.positive():
            return Interval(0.0, 1.0, b.positive(), True)
        if b.nonnegative() and b.hi <= 1 and e.nonnegative():
            return Interval(0.0, 1.0)
        if b.lo >= 1 and e.nonnegative():
            return Interval(1.0, INF)
        if b.positive():
            return Interval(0.0, INF, True, False)
        return EVERYTHING
    if o == "sign":
        return Interval(-1.0, 1.0)
    if o in COMPARE_SYMBOLS:
        return Interval(0.0, 1.0)
    if o == "exp":
        return Interval(math.exp(min(a[0].lo, 700)), math.exp(a[0].hi) if a[0].hi < 700 else INF, True, False)
    if o == "tanh":
        return Interval(-1.0, 1.0)
    if o == "cosh":
        return Interval(1.0, INF)
    if o in ("min", "max"):
        f = min if o == "min" else max
        return Interval(f(a[0].lo, a[1].lo), f(a[0].hi, a[1].hi))
    if o == "where":
        return Interval(min(a[1].lo, a[2].lo), max(a[1].hi, a[2].hi))
    if o == "clamp":
        return Interval(max(a[0].lo, a[1].lo), min(max(a[0].hi, a[1].lo), a[2].hi))
    return EVERYTHING


