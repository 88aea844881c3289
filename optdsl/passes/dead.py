"""Dead state and dead code elimination."""

from __future__ import annotations

from ..ir.nodes import HOST, STATE, Node, Rule, postorder


def _reads(root: Node, role: str) -> set[str]:
    return {n.name for n in postorder([root]) if n.op == "input" and n.role == role}


def live_states(rule: Rule) -> set[str]:
    """States whose value can reach the new ``p``, directly or through other states."""
    outputs = dict(rule.outputs)
    live: set[str] = set()
    frontier = _reads(outputs["p"], STATE)
    host = dict(rule.host)
    for name in list(_reads(outputs["p"], HOST)):
        frontier |= _reads(host[name], STATE)
    while frontier:
        name = frontier.pop()
        if name in live:
            continue
        live.add(name)
        if name in outputs:
            frontier |= _reads(outputs[name], STATE) - live
    return live


def eliminate_dead_state(rule: Rule) -> Rule:
    """Drop states that never influence ``p`` (and their updates) from the rule and its state_dict."""
    live = live_states(rule)
    return rule.with_(
        states=tuple(s for s in rule.states if s.name in live),
        outputs=tuple((n, v) for n, v in rule.outputs if n == "p" or n in live),
    )


def eliminate_dead_code(rule: Rule) -> Rule:
    """Drop identity updates (``m = m``) and hoisted values nothing reads."""
    outputs = tuple(
        (n, v) for n, v in rule.outputs
        if n == "p" or not (v.op == "input" and v.role == STATE and v.name == n)
    )
    needed: set[str] = set()
    roots = [v for _, v in outputs] + [s.init for s in rule.states]
    needed |= {n.name for n in postorder(roots) if n.op == "input" and n.role == HOST}
    host = []
    for name, node in reversed(rule.host):
        if name in needed:
            host.append((name, node))
            needed |= _reads(node, HOST)
    return rule.with_(outputs=outputs, host=tuple(reversed(host)))
