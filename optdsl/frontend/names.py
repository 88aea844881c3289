"""What names mean in a spec: given names, functions, shape scalars, reserved words.

Every identifier of a spec is checked against these tables before it can reach
generated code, so a spec can never name a Python keyword, builtin, dunder or a
name the generated module uses itself.
"""

from __future__ import annotations

import builtins
import keyword
import re

from ..ir.ops import GROUPS, Kind

# Names every rule can read. ``g`` is the gradient after the maximize sign flip,
# ``t`` the step count (1 on the first step).
GIVEN: dict[str, Kind] = {"p": Kind.TENSOR, "g": Kind.TENSOR, "t": Kind.GROUP}

# Shape scalars of the parameter.
SHAPE_NAMES = GROUPS["shape"]

# What `on EVENT:` blocks may handle: the generated optimizer's train() and eval() methods.
EVENTS = ("train", "eval")

# Names only a state initializer may use.
INIT_CONSTANTS = {"zeros": 0.0, "ones": 1.0}

# Functions only a state initializer may call: random draws, made once per parameter.
INIT_FUNCTIONS = frozenset({"randn"})

# DSL function name -> {number of arguments: IR op}.
FUNCTIONS: dict[str, dict[int, str]] = {
    **{f: {1: f} for f in "abs sign sqrt rsqrt exp log tanh cosh square".split()},
    "min": {1: "amin", 2: "min"},
    "max": {1: "amax", 2: "max"},
    "clamp": {3: "clamp"},
    "lerp": {3: "lerp"},
    "where": {3: "where"},
    **{f: {1: f} for f in "sum mean norm rms".split()},
    "dot": {2: "dot"},
    **{
        f: {1: f}
        for f in "rowsum rowmean rownorm rowrms rowmax colsum colmean colnorm colrms colmax".split()
    },
    "transpose": {1: "transpose"},
    "newton_schulz": {6: "newton_schulz"},
    **{f: {1: f} for f in "chansum chanmean channorm chanrms chanmax".split()},
    **{f: {1: f} for f in "group_sum group_norm group_max global_sum global_norm global_max".split()},
    "randn": {0: "randn"},
}

FUNCTION_DOCS: dict[str, str] = {
    "abs": "absolute value",
    "sign": "-1, 0 or 1 (sign(0) = 0)",
    "sqrt": "square root",
    "rsqrt": "1 / sqrt(x)",
    "exp": "e^x",
    "log": "natural logarithm",
    "tanh": "hyperbolic tangent",
    "cosh": "hyperbolic cosine",
    "square": "x^2",
    "min": "min(a, b) elementwise; min(x) over the whole tensor",
    "max": "max(a, b) elementwise; max(x) over the whole tensor",
    "clamp": "clamp(x, lo, hi)",
    "lerp": "lerp(a, b, w) = a + w * (b - a)",
    "where": "where(c, a, b): a where c is nonzero, else b",
    "sum": "sum over the whole tensor",
    "mean": "mean over the whole tensor",
    "norm": "L2 norm of the whole tensor",
    "rms": "norm(x) / sqrt(numel)",
    "dot": "dot(a, b) = sum(a * b)",
    "rowsum": "sum along the last dimension (one value per row)",
    "rowmean": "mean along the last dimension",
    "rownorm": "L2 norm along the last dimension",
    "rowrms": "RMS along the last dimension",
    "rowmax": "max along the last dimension",
    "colsum": "sum along the second-to-last dimension (one value per column)",
    "colmean": "mean along the second-to-last dimension",
    "colnorm": "L2 norm along the second-to-last dimension",
    "colrms": "RMS along the second-to-last dimension",
    "colmax": "max along the second-to-last dimension",
    "transpose": "swap the last two dimensions",
    "newton_schulz": "newton_schulz(x, steps, a, b, c, bf16): Newton-Schulz orthogonalization of x's matrix view",
    "chansum": "sum over every dimension but the first (per channel), at every element",
    "chanmean": "mean over every dimension but the first",
    "channorm": "L2 norm over every dimension but the first",
    "chanrms": "RMS over every dimension but the first",
    "chanmax": "max over every dimension but the first",
    "group_sum": "sum over every tensor of the param group, before the update",
    "group_norm": "L2 norm over every tensor of the param group, before the update",
    "group_max": "max over every tensor of the param group, before the update",
    "global_sum": "sum over every tensor of every param group, before the update",
    "global_norm": "L2 norm over every tensor of every param group, before the update",
    "global_max": "max over every tensor of every param group, before the update",
    "randn": "randn(): a standard normal draw per element (state initializers only; torch's global RNG)",
}

DSL_KEYWORDS = frozenset(
    "optimizer variant on hyper state use in inf true false scalar tensor row col when keyword require".split()
)

# Names the generated module or the Optimizer API use for themselves.
GENERATED_NAMES = frozenset(
    """self torch math params param_groups defaults group groups state states closure loss
    maximize foreach state_dtype betas step steps grads bucket buckets kwargs args cls
    differentiable capturable fused tl triton stochastic_rounding rounding_seed
    dtype param grad key index value saved ids""".split()
)

MAX_NAME_LENGTH = 64

# The role a hyper may declare (``hyper NAME = ... as momentum``): the value torch's LR
# schedulers cycle with cycle_momentum=True, a param group's "momentum" or betas[0].
MOMENTUM_ROLE = "momentum"


def beta_run(float_hypers: list[str]) -> list[str]:
    """beta1..betaN when the number hypers named beta<digits> are exactly that run (torch's
    ``betas`` tuple), else []."""
    names = [n for n in float_hypers if re.fullmatch(r"beta\d+", n)]
    expected = [f"beta{i}" for i in range(1, len(names) + 1)]
    return sorted(names, key=lambda n: int(n[4:])) if sorted(names, key=lambda n: int(n[4:])) == expected else []


def reserved_reason(name: str) -> str | None:
    """Why ``name`` cannot be declared or assigned, or None if it can."""
    if name.startswith("__") or name.endswith("__"):
        return "names with double underscores are reserved"
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return f"'{name}' is a Python keyword"
    if name in DSL_KEYWORDS:
        return f"'{name}' is an optdsl keyword"
    if name in FUNCTIONS:
        return f"'{name}' is a function"
    if name in SHAPE_NAMES:
        return f"'{name}' is a shape scalar"
    if name in INIT_CONSTANTS:
        return f"'{name}' is a state initializer"
    if name in GENERATED_NAMES:
        return f"'{name}' is used by the generated optimizer"
    if hasattr(builtins, name):
        return f"'{name}' is a Python builtin"
    if len(name) > MAX_NAME_LENGTH:
        return f"names are at most {MAX_NAME_LENGTH} characters"
    return None
