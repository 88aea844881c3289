"""What one step costs per parameter: bytes read and written, and flops.

Traffic is the minimum a fused kernel needs: every tensor input read once
(``p``, ``g``, each state read) and every tensor output written once. A
whole-tensor reduction (and an axis, channel or group reduction) needs its
inputs before the update can finish, so its inputs are read again in a second
pass; that extra traffic is reported apart. States of one number per row or
column (``state v: row``) cost nothing per element in the limit of long rows and
are left out of the per-element bytes.

Matrix operations (``@``, ``newton_schulz``) cost flops that depend on the
matrix's shape, not per element: :func:`matrix_flops` counts them for a shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .nodes import GRAD, PARAM, STATE, Node, Rule, postorder
from .ops import GROUPS, Kind

_FLOPS = {"lerp": 2, "clamp": 2, "norm": 2, "rms": 2, "dot": 2, "rownorm": 2, "colnorm": 2, "rowrms": 2, "colrms": 2,
          "channorm": 2, "chanrms": 2}
_REDUCING = frozenset(GROUPS["reduce"]) | frozenset(GROUPS["axis_reduce"]) | frozenset(GROUPS["chan_reduce"])


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
    per_element = {("state", s.name) for s in rule.states if s.shape != "tensor"}
    read -= per_element
    reads = tuple((name, size[role]) for role, name in sorted(read, key=lambda a: order.get(a, 99)))
    writes = [("p", param_bytes)]
    writes += [(n, state_bytes) for n, _ in rule.outputs if n != "p" and rule.state(n).shape == "tensor"]
    reduced: set[tuple[str, str]] = set()
    for node in postorder(outputs):
        if node.op in _REDUCING:
            reduced |= _tensor_inputs(list(node.args))
    for r in rule.reductions:  # read by the pass before the update
        reduced |= _tensor_inputs([r.arg])
    reduced -= per_element
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
    for r in rule.reductions:  # the pass before the update: the argument, then one op to reduce it
        total += 1 + sum(_FLOPS.get(n.op, 1) for n in postorder([r.arg]) if n.kind == Kind.TENSOR and n.args)
    return total


def matrix_flops(rule: Rule, shape: tuple[int, ...], hypers: dict[str, float] | None = None) -> int | None:
    """Flops of the matrix operations of one step for a parameter of ``shape`` (None: unknown,
    e.g. a step count that is not a hyper or a number). Newton-Schulz on an m x n matrix
    view (m <= n after orientation) costs, per step, 2m^2n (X X^T) + 2m^3 (A A) + 2m^2n (B X)
    plus the two scaled additions (m^2 + mn)."""
    values = {h.name: h.default for h in rule.hypers}
    values.update(hypers or {})
    total = 0
    for node in postorder([n for _, n in rule.outputs]):
        if node.op == "newton_schulz":
            steps = _host_number(node.args[1], values)
            if steps is None or len(shape) < 2:
                return None
            rows, cols = shape[0], math.prod(shape[1:])
            m, n = min(rows, cols), max(rows, cols)
            total += int(steps) * (4 * m * m * n + 2 * m**3 + m * m + m * n)
        elif node.op == "matmul":
            if len(shape) < 2:
                return None
            batch = math.prod(shape[:-2])
            total += 2 * batch * shape[-2] * shape[-2] * shape[-1]  # an upper bound for square factors
    return total


def _host_number(node: Node, values: dict) -> float | None:
    if node.op == "const" and isinstance(node.attr, float):
        return node.attr
    if node.op == "input" and node.attr[0] == "hyper" and isinstance(values.get(node.name), (int, float)):
        return float(values[node.name])
    return None


def matrix_ops(rule: Rule) -> list[str]:
    return [n.op for n in postorder([n for _, n in rule.outputs]) if n.op in GROUPS["matrix"]]
