"""Constant folding in pure Python (the compile path never imports torch)."""

from __future__ import annotations

import math
import operator


def _sign(x: float) -> float:
    return float((x > 0) - (x < 0))


_FOLD = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "div": operator.truediv,
    "pow": lambda a, b: math.pow(a, b),
    "neg": operator.neg,
    "abs": abs,
    "sign": _sign,
    "sqrt": math.sqrt,
    "rsqrt": lambda a: 1.0 / math.sqrt(a),
    "exp": math.exp,
    "log": math.log,
    "tanh": math.tanh,
    "cosh": math.cosh,
    "square": lambda a: a * a,
    "min": min,
    "max": max,
    "clamp": lambda x, lo, hi: min(max(x, lo), hi),
    "lerp": lambda a, b, w: a + w * (b - a),
    "where": lambda c, a, b: a if c != 0 else b,
    "lt": lambda a, b: float(a < b),
    "le": lambda a, b: float(a <= b),
    "gt": lambda a, b: float(a > b),
    "ge": lambda a, b: float(a >= b),
    "eq": lambda a, b: float(a == b),
    "ne": lambda a, b: float(a != b),
}


def fold(op: str, args: tuple) -> float | None:
    """``op`` applied to constant floats, or None when it cannot be folded exactly here."""
    fn = _FOLD.get(op)
    if fn is None or not all(isinstance(a, float) for a in args):
        return None
    try:
        value = fn(*args)
    except (ArithmeticError, ValueError):
        return None
    if not isinstance(value, float) or math.isnan(value):
        return None
    return value
