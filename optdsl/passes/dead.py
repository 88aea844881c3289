"""Dead state and dead code elimination."""

from __future__ import annotations

from ..ir.nodes import HOST, REDUCED, STATE, Node, Rule, postorder


def _reads(root: Node, role: str) -> set[str]:
    return {n.name for n in postorder([root]) if n.op == "input" and n.role == role}


def live_states(rule: Rule) -> set[str]:
    """States whose value can reach the new ``p``, directly or through other states and
    group reductions, in a step or in an ``on`` block."""
    rules = [rule] + [sub for _, sub in rule.events]
    reductions = {r.name: r.arg for r in rule.reductions}
    live: set[str] = set()
    frontier: set[str] = set()
    for r in rules:
        frontier |= _state_reads(r.output("p"), r, reductions)
    while frontier:
        name = frontier.pop()
        if name in live:
            continue
        live.add(name)
        for r in rules:
            out = r.output(name)
            if out is not None:
                frontier |= _state_reads(out, r, reductions) - live
    return live


def _state_reads(root: Node, rule: Rule, reductions: dict[str, Node]) -> set[str]:
    """States ``root`` reads, through hoisted host values and group reductions' arguments."""
    host = dict(rule.host)
    out: set[str] = set()
    stack, seen = [root], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.op == "input" and node.role == STATE:
            out.add(node.name)
        elif node.op == "input" and node.role == HOST and node.name in host:
            stack.append(host[node.name])
        elif node.op == "input" and node.role == REDUCED and node.name in reductions:
            stack.append(reductions[node.name])
        stack.extend(node.args)
    return out


def eliminate_dead_state(rule: Rule) -> Rule:
    """Drop states that never influence ``p`` (and their updates) from the rule and its state_dict."""
    live = live_states(rule)
    states = tuple(s for s in rule.states if s.name in live)
    return rule.with_(
        states=states,
        outputs=tuple((n, v) for n, v in rule.outputs if n == "p" or n in live),
        events=tuple(
            (name, sub.with_(states=states, outputs=tuple((n, v) for n, v in sub.outputs if n == "p" or n in live)))
            for name, sub in rule.events
        ),
    )


def eliminate_dead_code(rule: Rule) -> Rule:
    """Drop identity updates (``m = m``) and hoisted values nothing reads."""
    outputs = tuple(
        (n, v) for n, v in rule.outputs
        if n == "p" or not (v.op == "input" and v.role == STATE and v.name == n)
    )
    needed: set[str] = set()
    roots = [v for _, v in outputs] + [s.init for s in rule.states] + [r.arg for r in rule.reductions]
    needed |= {n.name for n in postorder(roots) if n.op == "input" and n.role == HOST}
    host = []
    for name, node in reversed(rule.host):
        if name in needed:
            host.append((name, node))
            needed |= _reads(node, HOST)
    return rule.with_(outputs=outputs, host=tuple(reversed(host)))
