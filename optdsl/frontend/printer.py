"""Syntax tree -> canonical `.opt` text (``optdsl fmt``).

``parse(print_spec(tree)) == tree`` for every tree the parser produces: items
keep their order, expressions get the fewest parentheses that parse back to
the same tree, numbers their shortest exact spelling.
"""

from __future__ import annotations

import math

from . import ast

# Binding strength; higher binds tighter.
_COMPARE, _SUM, _PRODUCT, _UNARY, _POWER, _ATOM = 1, 2, 3, 4, 5, 6
_PREC = {"+": _SUM, "-": _SUM, "*": _PRODUCT, "/": _PRODUCT, "@": _PRODUCT, "^": _POWER}


def format_number(x: float) -> str:
    """Shortest round-tripping spelling: 0.001, 1e-8, 2, inf."""
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == int(x) and abs(x) < 1e16:
        return str(int(x)) if not (x == 0 and math.copysign(1, x) < 0) else "-0"
    text = repr(float(x))
    if "e" in text:
        mantissa, exp = text.split("e")
        if mantissa.endswith(".0"):
            mantissa = mantissa[:-2]
        return f"{mantissa}e{int(exp)}"
    return text


def quote(text: str) -> str:
    """A double-quoted string literal that the grammar accepts and reads back as ``text``."""
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _doc_literal(text: str) -> str:
    simple = "\\" not in text and '"""' not in text and not text.endswith('"') and not any(
        (ord(ch) < 32 and ch not in "\n\t") or ord(ch) == 127 for ch in text  # a NUL cannot be read back raw
    )
    if "\n" in text and simple:
        return '"""' + text + '"""'
    return quote(text)


def expr_prec(e: ast.Expr) -> int:
    if isinstance(e, ast.Binary):
        return _COMPARE if e.op in ast.COMPARISONS else _PREC[e.op]
    if isinstance(e, ast.Unary):
        return _UNARY
    if isinstance(e, ast.Num) and (e.value < 0 or (e.value == 0 and math.copysign(1, e.value) < 0)):
        return _UNARY
    return _ATOM


def print_expr(e: ast.Expr) -> str:
    if isinstance(e, ast.Num):
        return format_number(e.value)
    if isinstance(e, ast.Bool):
        return "true" if e.value else "false"
    if isinstance(e, ast.Str):
        return quote(e.value)
    if isinstance(e, ast.Name):
        return e.id
    if isinstance(e, ast.Call):
        return f"{e.func}({', '.join(print_expr(a) for a in e.args)})"
    if isinstance(e, ast.Unary):
        return "-" + _wrap(e.operand, expr_prec(e.operand) < _UNARY)
    if isinstance(e, ast.Binary):
        prec = expr_prec(e)
        lp, rp = expr_prec(e.left), expr_prec(e.right)
        if e.op == "^":
            left_paren, right_paren = lp < _ATOM, rp < _UNARY
        elif prec == _COMPARE:
            left_paren, right_paren = lp <= _COMPARE, rp <= _COMPARE
        else:
            left_paren, right_paren = lp < prec, rp <= prec
        return f"{_wrap(e.left, left_paren)} {e.op} {_wrap(e.right, right_paren)}"
    raise TypeError(f"not an expression: {e!r}")


def _wrap(e: ast.Expr, paren: bool) -> str:
    text = print_expr(e)
    return f"({text})" if paren else text


def _print_item(item: ast.Item) -> str:
    if isinstance(item, ast.Doc):
        return "  " + _doc_literal(item.text)
    if isinstance(item, ast.Hyper):
        text = f"hyper {item.name} = {print_expr(item.default)}"
        if isinstance(item.domain, ast.Interval):
            text += f" in {item.domain.text()}"
        elif isinstance(item.domain, ast.Choices):
            text += " in {" + ", ".join(quote(o) for o in item.domain.options) + "}"
        return text + (f" as {item.role}" if item.role is not None else "")
    if isinstance(item, ast.State):
        shape = f": {item.shape}" if item.shape != "tensor" else ""
        when = f" when {print_expr(item.when)}" if item.when is not None else ""
        alias = f" as {item.alias}{'?' if item.optional else ''}" if item.alias is not None else ""
        return f"state {item.name}{shape} = {print_expr(item.init)}{when}{alias}"
    if isinstance(item, ast.Keyword):
        value = f" = {print_expr(item.value)}" if item.value is not None else ""
        return f"keyword {item.name}{value} {quote(item.message)}"
    if isinstance(item, ast.Require):
        return f"require {print_expr(item.condition)} {quote(item.message)}"
    if isinstance(item, ast.OnBlock):
        return "\n".join([f"on {item.event}:"] + [f"  {_print_item(s)}" for s in item.statements])
    if isinstance(item, ast.Use):
        return "use " + ", ".join(item.variants)
    if isinstance(item, ast.Assign):
        return f"{item.target} = {print_expr(item.value)}"
    raise TypeError(f"not an item: {item!r}")


def print_spec(spec: ast.Spec) -> str:
    """Canonical text of a spec; a blank line separates runs of different items."""
    header = f"optimizer {spec.name}" if spec.kind == "optimizer" else f"variant {spec.name} on {spec.hook}"
    lines = [header]
    previous = None
    for item in spec.items:
        group = type(item)
        if previous is not None and (group is not previous or group is ast.OnBlock):
            lines.append("")
        elif previous is None and not isinstance(item, ast.Doc):
            lines.append("")
        lines.append(_print_item(item))
        previous = group
    return "\n".join(lines) + "\n"
