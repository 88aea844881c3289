"""Hoist host-scalar math out of the per-element code.

Two steps:

1. *Reassociate* products and sums so that every group/shape scalar factor of a
   product (``lr``, ``1/(1 - beta1^t)``, ...) sits in one coefficient, and the
   scalar terms of a sum in one term: ``lr * (m / bc1)`` becomes
   ``(lr / bc1) * m``, one multiply per element instead of two.
2. *Extract* every maximal host-kind subexpression into a named host value,
   computed once per step and group (``GROUP``) or once per tensor (``SHAPE``).
   Afterwards per-element code reads host values only as inputs: no ``beta^t``
   is left per element.
"""

from __future__ import annotations

from ..ir.nodes import HOST, Node, Rule, const, intern_graph, leaf, op, postorder, rebuild, use_counts
from ..ir.intervals import interval
from ..ir.ops import Kind


def hoist_host_scalars(rule: Rule) -> Rule:
    """Gather host factors and terms, then move host math into named host values."""
    rule = intern_graph(reassociate(rule))
    return extract_host_values(rule)


# --- reassociation ------------------------------------------------------------------------


def _is_host(node: Node) -> bool:
    return node.kind <= Kind.SHAPE


def reassociate(rule: Rule) -> Rule:
    """Gather the host factors of every product and the host terms of every sum."""
    counts = use_counts(n for _, n in rule.outputs)
    intervals: dict = {}
    shared: set[int] = set()  # rebuilt nodes used more than once: never flattened into a user
    done: dict[int, Node] = {}
    for node in postorder([n for _, n in rule.outputs]):
        rebuilt = rebuild(node, tuple(done[id(a)] for a in node.args))
        if rebuilt.kind >= Kind.SCALAR and rebuilt.op in ("mul", "div", "neg", "add", "sub"):
            sums = rebuilt.op in ("add", "sub") or (rebuilt.op == "neg" and rebuilt.args[0].op in ("add", "sub"))
            rebuilt = _normalize_sum(rebuilt, shared) if sums else _normalize_product(rebuilt, shared)
        elif rebuilt.op == "abs" and rebuilt.kind >= Kind.SCALAR:
            rebuilt = _coefficient_out_of_abs(rebuilt, rule, intervals, shared)
        if counts.get(id(node), 0) > 1:
            shared.add(id(rebuilt))
        done[id(node)] = rebuilt
    return rule.with_(outputs=tuple((n, done[id(v)]) for n, v in rule.outputs))


def _flatten_product(node: Node, sign: int, parts: tuple[list, list, list, list], shared: set[int], top: bool) -> int:
    """Split a product into a sign, host factors and tensor factors; returns the sign.

    ``parts`` is (tensor numerator, tensor denominator, host numerator, host denominator).
    """
    num, den, coef_num, coef_den = parts
    through = _is_host(node) or top or id(node) not in shared
    if through and node.op == "mul":
        for a in node.args:
            sign = _flatten_product(a, sign, parts, shared, False)
        return sign
    if through and node.op == "div":
        sign = _flatten_product(node.args[0], sign, parts, shared, False)
        return _flatten_product(node.args[1], sign, (den, num, coef_den, coef_num), shared, False)
    if through and node.op == "neg":
        return _flatten_product(node.args[0], -sign, parts, shared, False)
    if _is_host(node):
        if node.op == "const" and isinstance(node.attr, float) and node.attr < 0:
            coef_num.append(const(-node.attr))
            return -sign
        coef_num.append(node)
    else:
        num.append(node)
    return sign


def _product(factors: list[Node]) -> Node | None:
    out = None
    for f in factors:
        out = f if out is None else op("mul", out, f)
    return out


def host_coefficient(sign: int, num: list[Node], den: list[Node]) -> Node:
    """sign * prod(num) / prod(den) with constants folded; a GROUP/SHAPE node."""
    value = float(sign)
    keep_num, keep_den = [], []
    for f in num:
        if f.op == "const" and isinstance(f.attr, float):
            value *= f.attr
        else:
            keep_num.append(f)
    for f in den:
        if f.op == "const" and isinstance(f.attr, float) and f.attr != 0:
            value /= f.attr
        else:
            keep_den.append(f)
    top = _product(keep_num)
    bottom = _product(keep_den)
    if top is None and bottom is None:
        return const(value)
    if top is None:
        top = const(value)
        value = 1.0
    elif value == -1.0:
        top = op("neg", top)
        value = 1.0
    elif value != 1.0:
        top = op("mul", const(value), top)
    return op("div", top, bottom) if bottom is not None else top


def _coefficient_out_of_abs(node: Node, rule: Rule, intervals: dict, shared: set[int]) -> Node:
    """``abs(c * x / y)`` as ``c * abs(x / y)`` when the host coefficient c is provably >= 0
    (from the hypers' ranges; a sign never matters inside abs): c then joins the product
    outside, one multiply per element fewer."""
    num: list[Node] = []
    den: list[Node] = []
    coef_num: list[Node] = []
    coef_den: list[Node] = []
    _flatten_product(node.args[0], 1, (num, den, coef_num, coef_den), shared, True)
    if not (coef_num or coef_den) or not num + den:
        return node
    coef = host_coefficient(1, coef_num, coef_den)
    if not interval(coef, rule, intervals).nonnegative():
        return node
    tensor = _product(num) or const(1.0)
    if den:
        tensor = op("div", tensor, _product(den))
    return _keep_hint(op("mul", coef, op("abs", tensor)), node)


def _is_one(node: Node) -> bool:
    return node.op == "const" and node.attr == 1.0


def _normalize_product(node: Node, shared: set[int]) -> Node:
    num: list[Node] = []
    den: list[Node] = []
    coef_num: list[Node] = []
    coef_den: list[Node] = []
    sign = _flatten_product(node, 1, (num, den, coef_num, coef_den), shared, True)
    coef = host_coefficient(sign, coef_num, coef_den)
    tensor_num = _product(num)
    tensor_den = _product(den)
    if tensor_num is None:
        result = coef if tensor_den is None else op("div", coef, tensor_den)
        return _keep_hint(result, node)
    body = tensor_num
    if coef.op == "const" and coef.attr == -1.0:
        body = op("neg", body)
    elif not _is_one(coef):
        body = op("mul", coef, body)
    if tensor_den is not None:
        body = op("div", body, tensor_den)
    return _keep_hint(body, node)


def _keep_hint(new: Node, old: Node) -> Node:
    if new.hint is None and new.op not in ("input", "const"):
        new.hint = old.hint
    return new


def _flatten_sum(node: Node, sign: int, terms: list[tuple[int, Node]], shared: set[int], top: bool) -> None:
    through = node.kind >= Kind.SCALAR and (top or id(node) not in shared)
    if through and node.op in ("add", "sub"):
        _flatten_sum(node.args[0], sign, terms, shared, False)
        _flatten_sum(node.args[1], sign if node.op == "add" else -sign, terms, shared, False)
    elif through and node.op == "neg" and node.args[0].op in ("add", "sub"):
        _flatten_sum(node.args[0], -sign, terms, shared, False)
    else:
        terms.append((sign, node))


def _normalize_sum(node: Node, shared: set[int]) -> Node:
    terms: list[tuple[int, Node]] = []
    _flatten_sum(node, 1, terms, shared, True)
    host_terms = [(s, t) for s, t in terms if _is_host(t)]
    tensor_terms = [(s, t) for s, t in terms if not _is_host(t)]
    acc: Node | None = None
    for s, t in tensor_terms:
        if acc is None:
            acc = t if s > 0 else _normalize_product(op("neg", t), shared)
        else:
            acc = op("add" if s > 0 else "sub", acc, t)
    if host_terms:
        total = None
        folded = 0.0
        for s, t in host_terms:
            if t.op == "const" and isinstance(t.attr, float):
                folded += s * t.attr
                continue
            if total is None:
                total = t if s > 0 else op("neg", t)
            else:
                total = op("add" if s > 0 else "sub", total, t)
        if folded != 0.0 or total is None:
            c = const(abs(folded))
            if total is None:
                total = const(folded)
            else:
                total = op("add" if folded > 0 else "sub", total, c)
        if acc is None:
            return _keep_hint(total, node)
        if total.op == "const" and total.attr < 0:
            acc = op("sub", acc, const(-total.attr))
        elif not (total.op == "const" and total.attr == 0.0):
            acc = op("add", acc, total)
    return _keep_hint(acc, node)


# --- extraction ------------------------------------------------------------------------


def extract_host_values(rule: Rule) -> Rule:
    outputs = [n for _, n in rule.outputs]
    counts = use_counts(outputs)
    has_element_parent: set[int] = {id(n) for n in outputs}
    for node in postorder(outputs):
        if node.kind >= Kind.SCALAR:
            has_element_parent.update(id(a) for a in node.args)
    taken = {h.name for h in rule.hypers} | {s.name for s in rule.states} | {"p", "g", "t"}
    taken |= {n for n, _ in rule.host}
    taken |= {n.hint for n in postorder(outputs) if n.hint}
    entries = list(rule.host)
    done: dict[int, Node] = {}
    for node in postorder(outputs):
        rebuilt = rebuild(node, tuple(done[id(a)] for a in node.args))
        if _is_host(node) and node.args and (id(node) in has_element_parent or counts.get(id(node), 0) > 1):
            name = _fresh(node.hint or _default_name(node), taken)
            entries.append((name, rebuilt))
            rebuilt = leaf(HOST, name, node.kind)
        done[id(node)] = rebuilt
    return rule.with_(
        host=tuple(entries),
        outputs=tuple((n, done[id(v)]) for n, v in rule.outputs),
        hoisted=True,
    )


def _default_name(node: Node) -> str:
    return "s" if node.kind == Kind.SHAPE else "c"


def _fresh(base: str, taken: set[str]) -> str:
    name = base if base not in taken and base not in ("c", "s") else None
    i = 0
    while name is None or name in taken:
        name = f"{base}{i}"
        i += 1
    taken.add(name)
    return name

