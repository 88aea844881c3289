"""IR invariants, checked after every pass (a failing check is a compiler bug)."""

from __future__ import annotations

from .nodes import GRAD, HOST, HYPER, PARAM, REDUCED, STATE, STATE_SHAPES, STEP, Node, Rule, postorder
from .ops import GROUPS, OPS, Kind, KindError, result_kind


class IRError(AssertionError):
    """The IR broke an invariant: a bug in a pass, never in the user's spec."""


def verify(rule: Rule) -> Rule:
    hypers = {h.name: h for h in rule.hypers}
    states = {s.name: s for s in rule.states}
    reductions = {r.name: r for r in rule.reductions}
    host_names: set[str] = set()

    def check_graph(root: Node, where: str, allowed_host: set[str], per_element: bool = False,
                    reduced: bool = True) -> None:
        for node in postorder([root]):
            _check_node(node, where, hypers, states, allowed_host, per_element and rule.hoisted)
            if node.op == "input" and node.attr[0] == REDUCED and (not reduced or node.attr[1] not in reductions):
                raise IRError(f"{where}: group reduction {node.attr[1]} read where it is not defined")

    for r in rule.reductions:
        check_graph(r.arg, f"group reduction {r.name}", set(), reduced=False)
        if r.op not in GROUPS["group_reduce"] or r.arg.kind == Kind.GROUP:
            raise IRError(f"group reduction {r.name}: bad op {r.op} of {r.arg.kind.noun}")

    for name, node in rule.host:
        if node.kind > Kind.SHAPE:
            raise IRError(f"hoisted value {name} is {node.kind.noun}")
        check_graph(node, f"host value {name}", set(host_names))
        if name in host_names:
            raise IRError(f"host value {name} defined twice")
        host_names.add(name)
    for s in rule.states:
        check_graph(s.init, f"init of {s.name}", set(), reduced=False)
        if s.shape not in STATE_SHAPES:
            raise IRError(f"state {s.name} has an unknown shape {s.shape!r}")
        if s.shape == "scalar" and s.init.kind == Kind.TENSOR:
            raise IRError(f"scalar state {s.name} starts as a tensor")
        if s.when is not None:
            check_graph(s.when, f"condition of {s.name}", set(), reduced=False)
            if s.when.kind > Kind.SHAPE:
                raise IRError(f"the condition of state {s.name} is {s.when.kind.noun}")
    if not rule.outputs or rule.outputs[0][0] != "p":
        raise IRError("the first output must be p")
    seen = set()
    for name, node in rule.outputs:
        if name in seen:
            raise IRError(f"output {name} twice")
        seen.add(name)
        check_graph(node, f"output {name}", host_names, per_element=True)
        if name == "p":
            want_tensor = True
        elif name in states:
            want_tensor = states[name].shape != "scalar"
        else:
            raise IRError(f"output {name} is neither p nor a declared state")
        if want_tensor and node.kind != Kind.TENSOR:
            raise IRError(f"output {name} must be a tensor, is {node.kind.noun}")
        if not want_tensor and node.kind == Kind.TENSOR:
            raise IRError(f"scalar output {name} is a tensor")
    for event, sub in rule.events:
        if sub.reductions or sub.events:
            raise IRError(f"event {event}: group reductions and events are not allowed in an event")
        if [s.name for s in sub.states] != [s.name for s in rule.states]:
            raise IRError(f"event {event}: its states differ from the rule's")
        verify(sub)
    return rule


def _check_node(node: Node, where: str, hypers, states, host_names: set[str], hoisted: bool) -> None:
    spec = OPS.get(node.op)
    if spec is None:
        raise IRError(f"{where}: unknown op {node.op!r}")
    if len(node.args) != spec.arity:
        raise IRError(f"{where}: {node.op} has {len(node.args)} args, wants {spec.arity}")
    if node.op == "const":
        if not isinstance(node.attr, (float, str)) or node.kind != Kind.GROUP:
            raise IRError(f"{where}: bad constant {node.attr!r}")
        return
    if node.op == "input":
        role, name = node.attr
        expected = {
            PARAM: Kind.TENSOR, GRAD: Kind.TENSOR, STEP: Kind.GROUP, HYPER: Kind.GROUP,
        }.get(role)
        if role == HYPER and name not in hypers:
            raise IRError(f"{where}: undeclared hyper {name}")
        if role == STATE:
            if name not in states:
                raise IRError(f"{where}: undeclared state {name}")
            expected = states[name].kind
        if role == HOST:
            if name not in host_names:
                raise IRError(f"{where}: host value {name} used before it is defined")
            return
        if role == REDUCED:
            if node.kind != Kind.GROUP:
                raise IRError(f"{where}: group reduction {name} has kind {node.kind.name}")
            return
        if expected is None or node.kind != expected:
            raise IRError(f"{where}: input {role}:{name} has kind {node.kind.name}")
        return
    if node.op == "randn":
        if node.kind != Kind.TENSOR or not where.startswith("init of "):
            raise IRError(f"{where}: randn is a tensor drawn only by a state initializer")
        return
    if not spec.arity:
        if node.kind != Kind.SHAPE:
            raise IRError(f"{where}: shape scalar {node.op} has kind {node.kind.name}")
        return
    try:
        kind = result_kind(node.op, tuple(a.kind for a in node.args))
    except KindError as exc:
        raise IRError(f"{where}: {exc}") from None
    if kind != node.kind:
        raise IRError(f"{where}: {node.op} has kind {node.kind.name}, its args give {kind.name}")
    if hoisted and node.kind <= Kind.SHAPE:
        raise IRError(f"{where}: host math {node.op} left outside the host section")
    for a in node.args:
        if isinstance(a.attr, str) and a.op == "const" and node.op not in ("eq", "ne"):
            raise IRError(f"{where}: text constant outside a choice comparison")
