"""The rule as ``torch.compile`` traces it: step-dependent values as 0-d tensors.

The eager step computes everything that depends only on hypers and the step
count ``t`` once per step, as Python floats (``c1 = lr / (1 - beta1 ** t)``).
Traced by dynamo, a float made from the step tensor is a graph break, and a
Python float that changes every step is either a recompile per step or, once
dynamo makes it symbolic, a value inductor may freeze at an earlier step's
value (silently wrong weights). ``torch.optim`` avoids both by computing its
bias corrections from the step *tensor* when compiling; this module does the
same to a rule: ``t`` (and every scalar state kept on the host, and every group
reduction, which the generated ``_reduce`` then keeps as a 0-d tensor) becomes a
per-tensor scalar, so every host value that reads it is computed on the device,
per tensor, from that parameter's own ``state["step"]``. Values of the hypers
alone stay Python floats: dynamo treats them as constants, as it does
``torch.optim``'s ``lr`` and ``betas``.
"""

from __future__ import annotations

from dataclasses import replace

from ..ir.nodes import HOST, REDUCED, STATE, STEP, Node, Rule, leaf, rebuild, transform
from ..ir.ops import Kind, KindError


def traced_rule(rule: Rule) -> Rule | None:
    """``rule`` with ``t`` and host scalar states re-kinded as per-tensor scalars (the host values
    that read them follow), or None when some operation needs such a value as a host number
    (e.g. a Newton-Schulz step count computed from ``t``): then the traced step keeps floats."""
    device_host: set[str] = set()
    host_states = {s.name for s in rule.states if s.on_host}

    def retype(node: Node, args: tuple[Node, ...]) -> Node:
        if node.op == "input":
            role, name = node.attr
            if role in (STEP, REDUCED) or (role == STATE and name in host_states) or (role == HOST and name in device_host):
                return leaf(role, name, Kind.SCALAR)
            return node
        return rebuild(node, args)

    try:
        for name, node in rule.host:  # in order: a host value may read an earlier one
            if transform([node], retype)[id(node)].kind == Kind.SCALAR:
                device_host.add(name)
        done = transform(rule.roots(), retype)
    except KindError:
        return None
    return rule.with_(
        host=tuple((n, done[id(v)]) for n, v in rule.host),
        outputs=tuple((n, done[id(v)]) for n, v in rule.outputs),
        states=tuple(
            replace(s, on_host=False, init=done[id(s.init)], when=done[id(s.when)] if s.when is not None else None)
            for s in rule.states
        ),
        reductions=tuple(replace(r, arg=done[id(r.arg)]) for r in rule.reductions),
        events=(),
    )


def device_host_names(rule: Rule) -> list[str]:
    """The host values of a traced rule that are 0-d tensors, in the order they are computed."""
    return [name for name, node in rule.host if node.kind == Kind.SCALAR]
