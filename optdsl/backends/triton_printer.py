"""Printing IR expressions as Triton (``tl``) code: the Triton row of the printer table.

:class:`TritonPrinter` is :class:`pyexpr.PyPrinter` with Triton spellings:
``tl.sqrt`` for ``math.sqrt``, ``tl.where`` for a conditional, comparisons as
0/1 floats, and the device functions of ``triton_functions`` where
``triton.language`` has no equivalent. Arithmetic, precedence and
parenthesisation are PyPrinter's own. Numbers are ``pyexpr.py_number``'s,
always spelled as float literals; infinities and nans are module constants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..ir.nodes import HYPER, Node
from ..ir.ops import COMPARE_SYMBOLS
from .pyexpr import PyPrinter, py_number

NAN_PROPAGATING = "propagate_nan=tl.PropagateNan.ALL"


def kernel_number(x: float) -> str:
    """A float literal (``2.0``, ``1e-08``) or the module constant for inf and nan."""
    if math.isnan(x):
        return "_NAN"
    if math.isinf(x):
        return "_INF" if x > 0 else "-_INF"
    text = py_number(x)
    if not any(c in text for c in ".en"):
        text += ".0"
    return text


@dataclass
class TritonPrinter(PyPrinter):
    """Prints element-wise and per-tensor-scalar expressions inside a kernel."""

    functions: set[str] = field(default_factory=set)  # device functions used (triton_functions)
    constants: set[str] = field(default_factory=set)  # module constants used (_INF, _NAN)

    def __post_init__(self):
        self.device = True  # IEEE semantics: no host helpers, no interval checks

    def expr(self, node: Node, depth: int = 0) -> str:
        if node.op == "const" and isinstance(node.attr, float) and not (depth and id(node) in self.names):
            text = kernel_number(node.attr)
            if text.lstrip("-").startswith("_"):
                self.constants.add(text.lstrip("-"))
            return text
        return super().expr(node, depth)

    def _call(self, name: str, *args: str) -> str:
        self.functions.add(name)
        return f"{name}({', '.join(args)})"

    def _compound(self, node: Node, depth: int) -> str:
        o = node.op
        a = node.args
        if o in COMPARE_SYMBOLS:
            return f"tl.where({self.condition(node, depth)}, 1.0, 0.0)"
        if o == "where":
            return f"tl.where({self.condition(a[0], depth)}, {self.expr(a[1], depth + 1)}, {self.expr(a[2], depth + 1)})"
        if o == "pow":
            return self._pow(node, depth)
        return super()._compound(node, depth)

    def condition(self, node: Node, depth: int = 1) -> str:
        if node.op in ("eq", "ne") and id(node) not in self.names:
            choice = self._choice_compare(node, depth)
            if choice is not None:
                return choice
        return super().condition(node, depth)

    def _choice_compare(self, node: Node, depth: int) -> str | None:
        """``style == "hf"`` with the choice as its index (capturable host math reads indices)."""
        a, b = node.args
        if isinstance(b.attr, str) and b.op == "const":
            a, b = b, a
        if not (a.op == "const" and isinstance(a.attr, str) and b.op == "input" and b.role == HYPER):
            return None
        index = float(self.rule.hyper(b.name).choices.index(a.attr))
        return f"{self.expr(b, depth + 1)} {COMPARE_SYMBOLS[node.op]} {kernel_number(index)}"

    def _pow(self, node: Node, depth: int) -> str:
        base, exponent = node.args
        x = self.expr(base, depth + 1)
        simple = self._prec(base) >= 6
        if exponent.op == "const" and isinstance(exponent.attr, float):
            e = exponent.attr
            if e == 1.0:
                return x
            if e == 0.0:
                return "1.0"
            if e == 2.0:
                return f"({x} * {x})" if simple else self._call("_square", x)
            if e == 0.5:
                return f"tl.sqrt({x})"
            if e == -0.5:
                return f"tl.rsqrt({x})"
            if e == -1.0:
                return f"(1.0 / {x if simple else f'({x})'})"
            if e in (3.0, -2.0) and simple:
                return f"({x} * {x} * {x})" if e == 3.0 else f"(1.0 / ({x} * {x}))"
        return self._call("_tl_pow", x, self.expr(exponent, depth + 1))

    def _function(self, node: Node, args: list[str]) -> str:
        o = node.op
        if o in ("sqrt", "rsqrt", "exp", "log", "abs"):
            return f"tl.{o}({args[0]})"
        if o == "square":
            return f"({args[0]} * {args[0]})" if self._prec(node.args[0]) >= 6 else self._call("_square", args[0])
        if o in ("sign", "tanh", "cosh"):
            return self._call(f"_tl_{o}", args[0])
        if o in ("min", "max"):
            return f"tl.{o}imum({args[0]}, {args[1]}, {NAN_PROPAGATING})"
        if o == "clamp":
            low = f"tl.maximum({args[0]}, {args[1]}, {NAN_PROPAGATING})"
            return f"tl.minimum({low}, {args[2]}, {NAN_PROPAGATING})"
        if o == "lerp":
            return self._call("_lerp", *args)
        raise AssertionError(f"no in-kernel spelling of {o}: reductions and torch ops are bound before printing")
