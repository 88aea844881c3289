"""A canonical hash of a rule, for the search to skip programs it has seen.

Equal for rules that differ only in names (locals, states, hypers), statement
order or dead code: the hash covers the dataflow that reaches the new ``p``.
States are identified by what they do, not what they are called: their labels
are refined from their updates (as in Weisfeiler-Lehman graph hashing) until
stable. Sums and products are flattened and their terms / factors sorted, so
grouping and argument order do not matter. It is a structural hash: ``m/sqrt(m*m)`` and ``sign(m)`` differ here (the search adds
a SymPy form and a numeric probe for those).
"""

from __future__ import annotations

import hashlib

from .nodes import HOST, HYPER, STATE, Node, Rule, intern_graph, postorder
from .ops import COMMUTATIVE


def _h(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


def _node_hashes(roots: list[Node], rule: Rule, labels: dict[str, str]) -> dict[int, str]:
    hyper_label = {h.name: _h("hyper", h.type, h.default, h.low, h.high, h.choices) for h in rule.hypers}
    host = dict(rule.host)
    out: dict[int, str] = {}
    for node in postorder(roots + list(host.values())):
        if node.op == "const":
            out[id(node)] = _h("const", node.attr)
        elif node.op == "input":
            role, name = node.attr
            if role == STATE:
                out[id(node)] = labels[name]
            elif role == HYPER:
                out[id(node)] = hyper_label[name]
            elif role == HOST:
                out[id(node)] = out[id(host[name])]
            else:
                out[id(node)] = _h("given", name)
        elif node.op in ("add", "sub") or (node.op == "neg" and node.args[0].op in ("add", "sub")):
            terms: list[tuple[int, Node]] = []
            _signed_terms(node, 1, terms)
            out[id(node)] = _h("sum", sorted((s, out[id(t)]) for s, t in terms))
        elif node.op in ("mul", "div", "neg"):
            num: list[Node] = []
            den: list[Node] = []
            sign = _factors(node, 1, num, den)
            out[id(node)] = _h("product", sign, sorted(out[id(f)] for f in num), sorted(out[id(f)] for f in den))
        else:
            args = [out[id(a)] for a in node.args]
            if node.op in COMMUTATIVE:
                args.sort()
            out[id(node)] = _h(node.op, *args)
    return out


def _signed_terms(node: Node, sign: int, terms: list) -> None:
    """Flatten a chain of + and - (so grouping and order of terms do not matter)."""
    if node.op in ("add", "sub"):
        _signed_terms(node.args[0], sign, terms)
        _signed_terms(node.args[1], sign if node.op == "add" else -sign, terms)
    elif node.op == "neg" and node.args[0].op in ("add", "sub"):
        _signed_terms(node.args[0], -sign, terms)
    else:
        terms.append((sign, node))


def _factors(node: Node, sign: int, num: list, den: list) -> int:
    """Flatten a chain of *, / and unary - into numerator and denominator factors."""
    if node.op == "mul":
        for a in node.args:
            sign = _factors(a, sign, num, den)
        return sign
    if node.op == "div":
        sign = _factors(node.args[0], sign, num, den)
        return _factors(node.args[1], sign, den, num)
    if node.op == "neg":
        return _factors(node.args[0], -sign, num, den)
    num.append(node)
    return sign


def canonical_hash(rule: Rule) -> str:
    """The rule's canonical hash (hex)."""
    from ..passes.dead import eliminate_dead_code, eliminate_dead_state

    rule = intern_graph(eliminate_dead_code(eliminate_dead_state(rule)))
    outputs = dict(rule.outputs)
    init_hashes = _node_hashes([s.init for s in rule.states], rule, {})
    labels = {s.name: _h("state", s.shape, init_hashes[id(s.init)]) for s in rule.states}
    for _ in range(len(rule.states) + 1):
        hashes = _node_hashes(list(outputs.values()), rule, labels)
        labels = {
            s.name: _h(labels[s.name], hashes[id(outputs[s.name])] if s.name in outputs else "constant")
            for s in rule.states
        }
    hashes = _node_hashes(list(outputs.values()), rule, labels)
    return _h("rule", hashes[id(outputs["p"])], sorted(labels.values()))
