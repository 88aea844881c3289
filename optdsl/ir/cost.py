"""What one step costs per parameter: bytes read and written, and flops.

Traffic is the minimum a fused kernel needs: every tensor input read once
(``p``, ``g``, each state read) and every tensor output written once. A
whole-tensor reduction needs its inputs before the update can finish, so its
inputs are read again in a second pass; that extra traffic is reported apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from .nodes import GRAD, PARAM, STATE, Node, Rule, postorder
from .ops import GROUPS, Kind

_FLOPS = {"lerp": 2, "clamp": 2, "norm": 2, "rms": 2, "dot": 2, "rownorm": 2, "colnorm": 2, "rowrms": 2, "colrms": 2}


@dataclass(frozen=True)
class Traffic:
    reads: tuple[tuple[str, int], ...]  # (tensor, bytes per element)
    writes: tuple[tuple[str, int], ...]
    reduction_reads: tuple[tuple[str, int], ...]  # inputs read again for whole-tensor reductions

    @property
    def read_bytes(self) -> int:
        return sum(b for _, b in self.reads)

    @property
    def write_bytes(self) -> int:
        return sum(b for _, b in self.writes)

    @property
    def total(self) -> int:
        return self.read_bytes + self.write_bytes

    @property
    def reduction_bytes(self) -> int:
        return sum(b for _, b in self.reduction_reads)


def _tensor_inputs(roots: list[Node]) -> set[tuple[str, str]]:
    return {n.attr for n in postorder(roots) if n.op == "input" and n.kind == Kind.TENSOR}


def traffic(rule: Rule, param_bytes: int = 4, grad_bytes: int | None = None, state_bytes: int = 4) -> Traffic:
    """Bytes per parameter element for one step of ``rule`` (after the passes)."""
    grad_bytes = param_bytes if grad_bytes is None else grad_bytes
    size = {PARAM: param_bytes, GRAD: grad_bytes, STATE: state_bytes}
    outputs = [n for _, n in rule.outputs]
    read = _tensor_inputs(outputs)
    order = {("param", "p"): 0, ("grad", "g"): 1}
    order.update({("state", s.name): i + 2 for i, s in enumerate(rule.states)})
    reads = tuple((name, size[role]) for role, name in sorted(read, key=lambda a: order.get(a, 99)))
    writes = [("p", param_bytes)]
    writes += [(n, state_bytes) for n, _ in rule.outputs if n != "p" and rule.state(n).shape == "tensor"]
    reduced: set[tuple[str, str]] = set()
    for node in postorder(outputs):
        if node.op in GROUPS["reduce"] or node.op in GROUPS["axis_reduce"]:
            reduced |= _tensor_inputs(list(node.args))
    reduction_reads = tuple((name, size[role]) for role, name in sorted(reduced, key=lambda a: order.get(a, 99)))
    return Traffic(reads, tuple(writes), reduction_reads)


def flops(rule: Rule) -> int:
    """Arithmetic operations per parameter element (each elementwise op once)."""
    total = 0
    for node in postorder([n for _, n in rule.outputs]):
        if node.kind != Kind.TENSOR or node.op in ("input", "const") or not node.args:
            continue
        if node.op in GROUPS["matrix"]:
            continue
        total += _FLOPS.get(node.op, 1)
    for node in postorder([n for _, n in rule.outputs]):
        if node.kind == Kind.SCALAR and node.op in GROUPS["reduce"]:
            total += _FLOPS.get(node.op, 1)
    return total


def matrix_ops(rule: Rule) -> list[str]:
    return [n.op for n in postorder([n for _, n in rule.outputs]) if n.op in GROUPS["matrix"]]
