"""IR invariants, checked after every pass (a failing check is a compiler bug)."""

from __future__ import annotations

from .nodes import GRAD, HOST, HYPER, PARAM, STATE, STEP, Node, Rule, postorder
from .ops import OPS, Kind, KindError, result_kind


class IRError(AssertionError):
    """The IR broke an invariant: a bug in a pass, never in the user's spec."""


def verify(rule: Rule) -> Rule:
    hypers = {h.name: h for h in rule.hypers}
    states = {s.name: s for s in rule.states}
    host_names: set[str] = set()

    def check_graph(root: Node, where: str, allowed_host: set[str], per_element: bool = False) -> None:
        for node in postorder([root]):
            _check_node(node, where, hypers, states, allowed_host, per_element and rule.hoisted)

    for name, node in rule.host:
        if node.kind > Kind.SHAPE:
            raise IRError(f"hoisted value {name} is {node.kind.noun}")
        check_graph(node, f"host value {name}", set(host_names))
        if name in host_names:
            raise IRError(f"host value {name} defined twice")
        host_names.add(name)
    for s in rule.states:
        check_graph(s.init, f"init of {s.name}", set())
        if s.shape == "scalar" and s.init.kind == Kind.TENSOR:
            raise IRError(f"scalar state {s.name} starts as a tensor")
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
            want_tensor = states[name].shape == "tensor"
        else:
            raise IRError(f"output {name} is neither p nor a declared state")
        if want_tensor and node.kind != Kind.TENSOR:
            raise IRError(f"output {name} must be a tensor, is {node.kind.noun}")
        if not want_tensor and node.kind == Kind.TENSOR:
            raise IRError(f"scalar output {name} is a tensor")
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
