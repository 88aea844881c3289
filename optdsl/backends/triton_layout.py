"""Where a rule's values live for its kernels: table rows, argument names, the kernel record.

Shared by the kernel writer (``triton_emit``) and the launch code
(``triton_backend``), so both agree on which row of the pointer table holds
which buffer, which column of the per-tensor table holds what, and the names
of the kernels' own arguments and locals. Those names are chosen clear of
every name the spec declares (a hyper may be called ``mask`` or ``meta``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir.nodes import Node, Rule, fresh_name
from ..ir.ops import GROUPS, Kind

# per-tensor table (int64, one row per tensor): numel, offset into the scratch buffers, rows, cols,
# ndim, channels (the size of the first dimension)
META_WIDTH = 6
META_COLUMN = {"size": 0, "base": 1, "rows": 2, "cols": 3, "ndim": 4, "channels": 5}
SHAPE_LEAVES = GROUPS["shape"]
INTERNAL = (
    "ptrs", "chunks", "meta", "n_tensors", "partials", "scratch", "total", "scalars_out", "shape_values",
    "hyper_values", "g_sign", "seed", "chunk", "tensor", "start", "end", "size", "base", "block", "offs", "mask",
    # locals of the launch code
    "tables", "device", "index", "param", "state", "lo", "hi", "shape", "shape_rows",
    # index arithmetic of row / column states
    "rows_i", "cols_i",
)


fresh = fresh_name  # the IR's naming rule, for the kernels' locals


@dataclass
class Layout:
    """Names and table positions shared by every kernel of a rule and by the launch code."""

    rule: Rule
    names: dict[str, str]  # internal role -> its name, clear of every spec name
    rows: dict[str, int]  # buffer -> its row in the pointer table ("step" included)
    pointers: dict[str, str]  # buffer -> the kernel variable holding its address
    shape_columns: list[str]  # the shape-value table: SHAPE host values, then host scalar states (old values)
    host_states: list[str]  # scalar states kept on the host (computed from host values only)
    scalar_outputs: list[tuple[str, Node]]  # changed scalar states, in the order of their output rows
    taken: set[str]

    @classmethod
    def build(cls, rule: Rule, taken: set[str]) -> Layout:
        taken = set(taken)
        names = {role: fresh(role, taken) for role in INTERNAL}
        buffers = ["p", "g"] + [s.name for s in rule.states if s.shape == "tensor"]
        buffers += [s.name for s in rule.states if s.shape in ("row", "col")]
        buffers += [s.name for s in rule.states if s.shape == "scalar"] + ["step"]
        rows = {b: i for i, b in enumerate(buffers)}
        pointers = {b: fresh(f"{b}_ptr", taken) for b in buffers}
        host_states = [s.name for s in rule.states if getattr(s, "on_host", False)]
        shape_columns = [n for n, v in rule.host if v.kind == Kind.SHAPE] + host_states
        scalar_outputs = [
            (name, node) for name, node in rule.outputs
            if name != "p" and rule.state(name).shape == "scalar" and not (node.op == "input" and node.name == name)
        ]
        return cls(rule, names, rows, pointers, shape_columns, host_states, scalar_outputs, taken)

    def tensor_states(self) -> list[str]:
        """States of p's shape: loaded and stored element by element."""
        return [s.name for s in self.rule.states if s.shape == "tensor"]

    def reduced_states(self) -> list[str]:
        """States of one number per row or column: loaded at each element's row or column; new
        values reach them through the scratch buffer (``Plan.commits``), after the last kernel."""
        return [s.name for s in self.rule.states if s.shape in ("row", "col")]

    def conditional(self, name: str) -> bool:
        return name not in ("p", "g", "step") and self.rule.state(name).when is not None


@dataclass
class Kernel:
    name: str
    params: list[str]  # runtime arguments then constexprs, in order
    text: str
    per_tensor: bool
    functions: set[str] = field(default_factory=set)
    constants: set[str] = field(default_factory=set)
