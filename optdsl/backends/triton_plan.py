"""Split a rule's per-element work into fused kernel launches.

Element-wise math runs inside kernels; everything else decides where a launch
must end:

* a whole-tensor reduction (``sum``, ``norm``, ...) is accumulated as partial
  sums by the kernel that computes its argument, and can be read from the next
  kernel on;
* an axis reduction or a matrix op runs through torch between two kernels; an
  argument computed in a kernel is first stored to a scratch buffer.

The *phase* of a value is the first kernel that can read it. Every write to
``p`` and the tensor states happens in the last kernel, so each earlier kernel
sees the old values of every buffer and simply recomputes what it needs (a
second pass over memory, never a second copy of it). Scalar-state outputs are
written by the last kernel too, or by a small per-tensor epilogue kernel when
they need a reduction that the last kernel accumulates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir.nodes import Node, Rule, postorder
from ..ir.ops import GROUPS, Kind

REDUCE_OPS = frozenset(GROUPS["reduce"])
TORCH_OPS = frozenset(GROUPS["axis_reduce"]) | frozenset(GROUPS["chan_reduce"]) | frozenset(GROUPS["matrix"])


def is_torch_op(node: Node) -> bool:
    return node.op in TORCH_OPS


def in_kernel(node: Node) -> bool:
    """A tensor value computed element by element inside a kernel (not a leaf, not a torch op)."""
    return node.kind == Kind.TENSOR and node.op != "input" and not is_torch_op(node)


@dataclass
class KernelPlan:
    """One launch: what it accumulates, stores to scratch, and writes."""

    index: int
    reduces: list[Node] = field(default_factory=list)  # accumulated here, readable from the next kernel
    scratch: list[Node] = field(default_factory=list)  # in-kernel values stored for torch ops
    writes: bool = False  # the last element-wise kernel: stores p and the tensor states
    scalar_outputs: list[tuple[str, Node]] = field(default_factory=list)
    torch_before: list[Node] = field(default_factory=list)  # torch ops that run before this launch
    per_tensor: bool = False  # the epilogue: one program per tensor, no element loop


@dataclass
class Plan:
    kernels: list[KernelPlan]
    phase: dict[int, int]  # node -> the first kernel that can read it
    reduce_row: dict[int, int]  # reduce node -> its row in the partial-sum buffer
    scratch_row: dict[int, int]  # node -> its row in the scratch buffer (kernel or torch values)
    reduce_nodes: list[Node]
    commits: list[tuple[str, Node]] = field(default_factory=list)  # row/col states copied from scratch at the end

    @property
    def uses_scratch(self) -> bool:
        return bool(self.scratch_row)


def _phases(rule: Rule) -> dict[int, int]:
    phase: dict[int, int] = {}
    for node in postorder(rule.roots()):
        args = [phase[id(a)] for a in node.args]
        if node.kind <= Kind.SHAPE or not node.args:
            phase[id(node)] = 0
        elif node.op in REDUCE_OPS:
            phase[id(node)] = max(args) + 1
        elif is_torch_op(node):
            phase[id(node)] = max(p + 1 if in_kernel(a) else p for a, p in zip(node.args, args))
        else:
            phase[id(node)] = max(args)
    return phase


def plan_kernels(rule: Rule) -> Plan:
    """The launches that compute ``rule`` (after the passes), in order."""
    outputs = [n for _, n in rule.outputs]
    phase = _phases(rule)
    nodes = list(postorder(outputs))
    reduces = [n for n in nodes if n.op in REDUCE_OPS]
    torch_ops = [n for n in nodes if is_torch_op(n)]
    scratch_args: list[Node] = []
    for op in torch_ops:
        for a in op.args:
            if in_kernel(a) and all(a is not s for s in scratch_args):
                scratch_args.append(a)

    commits = [(name, n) for name, n in rule.outputs if _is_reduced_output(rule, name)
               and not (n.op == "input" and n.name == name)]
    last = max(
        [phase[id(n)] for name, n in rule.outputs if _is_tensor_output(rule, name)]
        + [max(phase[id(a)] for a in r.args) for r in reduces]
        + [phase[id(a)] for a in scratch_args]
        + [phase[id(n)] for _, n in commits]
    )
    kernels = [KernelPlan(k) for k in range(last + 1)]
    for r in reduces:
        kernels[max(phase[id(a)] for a in r.args)].reduces.append(r)
    for a in scratch_args:
        kernels[phase[id(a)]].scratch.append(a)
    for op in torch_ops:
        kernels[phase[id(op)]].torch_before.append(op)
    kernels[last].writes = True
    for _, node in commits:  # stored by the last kernel (a torch op's result is stored where it runs)
        if not is_torch_op(node) and all(node is not s for s in scratch_args):
            kernels[last].scratch.append(node)
    epilogue = KernelPlan(last + 1, per_tensor=True)
    for name, node in rule.outputs:
        if _is_tensor_output(rule, name) or _is_reduced_output(rule, name):
            continue
        (kernels[last] if phase[id(node)] <= last else epilogue).scalar_outputs.append((name, node))
    if epilogue.scalar_outputs:
        kernels.append(epilogue)

    scratch_nodes = scratch_args + [op for op in torch_ops if _stored(op, nodes, outputs, phase)]
    scratch_nodes += [n for _, n in commits if all(n is not s for s in scratch_nodes)]
    return Plan(
        kernels=kernels,
        phase=phase,
        reduce_row={id(r): i for i, r in enumerate(reduces)},
        scratch_row={id(n): i for i, n in enumerate(scratch_nodes)},
        reduce_nodes=reduces,
        commits=commits,
    )


def _stored(op: Node, nodes: list[Node], outputs: list[Node], phase: dict[int, int]) -> bool:
    """Whether a torch op's result must outlive the per-tensor torch loop that computes it:
    a kernel reads it (an output, or an argument of in-kernel math or a reduction), or a
    torch op of a later phase does."""
    if any(o is op for o in outputs):
        return True
    for user in nodes:
        if any(a is op for a in user.args):
            if not is_torch_op(user) or phase[id(user)] != phase[id(op)]:
                return True
    return False


def _is_tensor_output(rule: Rule, name: str) -> bool:
    return name == "p" or rule.state(name).shape == "tensor"


def _is_reduced_output(rule: Rule, name: str) -> bool:
    return name != "p" and rule.state(name).shape in ("row", "col")
