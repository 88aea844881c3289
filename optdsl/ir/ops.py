"""The closed set of IR operations, in named groups, and the kind of each value.

Every value has a *kind*, ordered from cheapest to dearest:

* ``GROUP``  - a group scalar: hypers, ``t``, constants, group reductions
  (``group_norm(g)``: one number over all tensors of a param group, computed
  before the update) and math on them. Computed once per step and parameter
  group on the host (a backend may keep it as a Python float or a 0-d device tensor).
* ``SHAPE``  - a per-tensor scalar known on the host: ``numel``, ``rows``, ``cols``,
  ``ndim``, ``channels`` and math on them with group scalars.
* ``SCALAR`` - a per-tensor scalar on the device: whole-tensor reductions (``sum``,
  ``norm``, ...), scalar states, and math on them.
* ``TENSOR`` - one value per element of the parameter (or broadcastable to it:
  per-row / per-column reductions).

The kind of an operation's result follows from its arguments' kinds and the
operation's group; :func:`result_kind` is the one place that rule lives, used by
the checker (to report misuse with a location) and by the IR verifier.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.IntEnum):
    GROUP = 0
    SHAPE = 1
    SCALAR = 2
    TENSOR = 3

    @property
    def noun(self) -> str:
        return {
            Kind.GROUP: "a group scalar",
            Kind.SHAPE: "a shape scalar",
            Kind.SCALAR: "a per-tensor scalar",
            Kind.TENSOR: "a tensor",
        }[self]


@dataclass(frozen=True)
class OpSpec:
    name: str
    group: str
    arity: int
    doc: str


def _ops(group: str, arity: int, names: str, doc: str) -> dict[str, OpSpec]:
    return {n: OpSpec(n, group, arity, doc) for n in names.split()}


OPS: dict[str, OpSpec] = {
    **_ops("leaf", 0, "const", "a number (or a choice name, compared with a choice hyper)"),
    **_ops("leaf", 0, "input", "a named input: p, g, t, a hyper, a state, or a hoisted value"),
    **_ops("arith", 2, "add sub mul div pow", "binary arithmetic"),
    **_ops("arith", 1, "neg", "negation"),
    **_ops("elementwise", 1, "abs sign sqrt rsqrt exp log tanh cosh square", "elementwise function"),
    **_ops("elementwise", 2, "min max", "elementwise minimum / maximum"),
    **_ops("elementwise", 3, "clamp", "clamp(x, lo, hi)"),
    **_ops("elementwise", 3, "lerp", "lerp(a, b, w) = a + w * (b - a)"),
    **_ops("elementwise", 3, "where", "where(c, a, b): a where c is nonzero, else b"),
    **_ops("compare", 2, "lt le gt ge eq ne", "comparison giving a 0/1 mask"),
    **_ops("reduce", 1, "sum mean norm rms amax amin", "whole-tensor reduction to a per-tensor scalar"),
    **_ops("reduce", 2, "dot", "sum(a * b) over the whole tensor"),
    **_ops(
        "axis_reduce",
        1,
        "rowsum rowmean rownorm rowrms rowmax colsum colmean colnorm colrms colmax",
        "reduction along the last (row*) or second-to-last (col*) dimension, kept for broadcasting",
    ),
    **_ops(
        "chan_reduce",
        1,
        "chansum chanmean channorm chanrms chanmax",
        "reduction over every dimension but the first (per output channel), broadcast back to the argument's shape",
    ),
    **_ops(
        "group_reduce",
        1,
        "group_sum group_norm group_max global_sum global_norm global_max",
        "reduction over every tensor of the param group (group_*) or of the optimizer (global_*), "
        "before the update",
    ),
    **_ops("shape", 0, "numel rows cols ndim channels", "shape scalar of the parameter"),
    **_ops("matrix", 2, "matmul", "matrix product over the last two dimensions"),
    **_ops("matrix", 1, "transpose", "swap the last two dimensions"),
    **_ops(
        "matrix",
        6,
        "newton_schulz",
        "newton_schulz(x, steps, a, b, c, bf16): Newton-Schulz iterations X <- aX + (bA + cA^2)X, A = XX^T, "
        "on the matrix view of x",
    ),
    **_ops("random", 0, "randn", "a standard normal draw per element (state initializers only)"),
}

GROUPS: dict[str, tuple[str, ...]] = {}
for _spec in OPS.values():
    GROUPS.setdefault(_spec.group, ())
    GROUPS[_spec.group] += (_spec.name,)

COMMUTATIVE = frozenset({"add", "mul", "min", "max", "eq", "ne", "dot"})
COMPARE_SYMBOLS = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}
SYMBOL_COMPARES = {v: k for k, v in COMPARE_SYMBOLS.items()}
ARITH_SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "^", "matmul": "@"}
SYMBOL_ARITH = {v: k for k, v in ARITH_SYMBOLS.items()}


# Ops whose first argument is a tensor and whose other arguments are group scalars
# (numbers of the algorithm, e.g. Newton-Schulz's step count and coefficients).
HOST_ARGUMENTS = {"newton_schulz": ("steps", "a", "b", "c", "bf16")}


# The fewest dimensions each rank-dependent op needs of its argument (the parameter's rank,
# for values of p's shape): matrix ops and column reductions two, row and channel reductions one.
RANK_NEEDED = {
    "matmul": 2, "transpose": 2, "newton_schulz": 2,
    **{f"col{r}": 2 for r in ("sum", "mean", "norm", "rms", "max")},
    **{f"row{r}": 1 for r in ("sum", "mean", "norm", "rms", "max")},
    **{f"chan{r}": 1 for r in ("sum", "mean", "norm", "rms", "max")},
}


class KindError(Exception):
    """An operation applied to values of kinds it does not accept."""


def _host_arguments_kind(op: str, arg_kinds: tuple[Kind, ...]) -> Kind:
    if arg_kinds[0] != Kind.TENSOR:
        raise KindError(f"{op}() needs a tensor as its first argument, but got {arg_kinds[0].noun}")
    for name, k in zip(HOST_ARGUMENTS[op], arg_kinds[1:]):
        if k != Kind.GROUP:
            raise KindError(
                f"{op}()'s argument {name} must be a group scalar (a hyper, a number, t), but got {k.noun}"
            )
    return Kind.TENSOR


def result_kind(op: str, arg_kinds: tuple[Kind, ...]) -> Kind:
    """The kind of ``op`` applied to arguments of ``arg_kinds``; KindError if misused."""
    group = OPS[op].group
    if group in ("arith", "elementwise", "compare"):
        if op == "matmul":  # pragma: no cover - matmul is in the matrix group
            raise AssertionError
        return max(arg_kinds)
    if group == "reduce":
        for k in arg_kinds:
            if k != Kind.TENSOR:
                raise KindError(
                    f"{op}() reduces a tensor to a per-tensor scalar, but its argument is {k.noun}"
                )
        return Kind.SCALAR
    if op in HOST_ARGUMENTS:
        return _host_arguments_kind(op, arg_kinds)
    if group in ("axis_reduce", "chan_reduce", "matrix"):
        for k in arg_kinds:
            if k != Kind.TENSOR:
                raise KindError(f"{op}() needs a tensor argument, but got {k.noun}")
        return Kind.TENSOR
    if group == "group_reduce":
        (k,) = arg_kinds
        if k == Kind.GROUP:
            raise KindError(f"{op}() reduces a per-tensor value over tensors, but its argument is {k.noun}")
        return Kind.GROUP
    if group == "shape":
        return Kind.SHAPE
    if group == "random":
        return Kind.TENSOR
    raise AssertionError(f"no kind rule for leaf op {op!r}")  # pragma: no cover
