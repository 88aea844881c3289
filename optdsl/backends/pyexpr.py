"""Printing IR expressions as Python source: the printer all backends share.

A :class:`PyPrinter` turns a node into a Python expression. What differs between
host floats (``math.sqrt``) and 0-d device tensors (``torch.sqrt``) is a table
of function spellings, not code.

Host math must never raise: a spec's ``sqrt`` of a value that can be negative,
or a division by a value that can be zero, is printed through a small helper
with IEEE semantics (``_sqrt``, ``_div``, ...), and plainly (``math.sqrt``,
``/``) when the hypers' declared ranges prove it safe. :func:`interval` is that
proof: interval arithmetic over the ranges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..frontend.printer import format_number
from ..ir.intervals import interval
from ..ir.nodes import Node, Rule
from ..ir.ops import COMPARE_SYMBOLS, Kind

INF = math.inf

# --- host helpers with IEEE semantics ---------------------------------------------------

HELPERS: dict[str, str] = {
    "_div": '''def _div(a, b):
    """a / b as IEEE floats: inf or nan instead of ZeroDivisionError."""
    if b == 0:
        return math.nan if a == 0 or a != a else math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b''',
    "_sqrt": '''def _sqrt(x):
    """math.sqrt, but nan for a negative argument."""
    return math.sqrt(x) if x >= 0 else math.nan''',
    "_rsqrt": '''def _rsqrt(x):
    """1 / sqrt(x): inf at 0, nan below."""
    return 1.0 / math.sqrt(x) if x > 0 else (math.inf if x == 0 else math.nan)''',
    "_log": '''def _log(x):
    """math.log, but -inf at 0 and nan below."""
    return math.log(x) if x > 0 else (-math.inf if x == 0 else math.nan)''',
    "_exp": '''def _exp(x):
    """math.exp, but inf on overflow."""
    return math.exp(x) if x < 709.0 else math.inf''',
    "_cosh": '''def _cosh(x):
    """math.cosh, but inf on overflow."""
    return math.cosh(x) if abs(x) < 709.0 else math.inf''',
    "_pow": '''def _pow(a, b):
    """a ** b as IEEE floats: nan for a negative base and fractional power, inf on overflow."""
    try:
        return math.pow(a, b)
    except OverflowError:
        return math.inf
    except (ValueError, ZeroDivisionError):
        return math.inf if a == 0 else math.nan''',
    "_where_numbers": '''def _where_numbers(cond, a, b, dtype):
    """torch.where(cond, a, b) of two numbers, in dtype (torch.where of two numbers is float32);
    torch.full fills on the device, where torch.tensor would copy from the host."""
    return torch.where(cond, torch.full((), a, dtype=dtype, device=cond.device), b)''',
    "_fit": '''def _fit(dtype, *values):
    """The values as a tensor of ``dtype`` holds them: +-inf beyond its range (torch would raise)."""
    limit = torch.finfo(dtype).max
    return tuple(x if not abs(x) > limit else math.copysign(math.inf, x) for x in values)''',
    "_sign": '''def _sign(x):
    """-1.0, 0.0 or 1.0."""
    return float((x > 0) - (x < 0))''',
    "_total_norm": '''def _total_norm(parts):
    """The L2 norm over tensors, from each tensor's norm: a float (0 without tensors); a 0-d
    tensor when torch.compile traces the step (a float would be a graph break)."""
    if not parts:
        return 0.0
    total = torch.linalg.vector_norm(torch.stack([x.to(parts[0].device) for x in parts]))
    return total if torch.compiler.is_compiling() else float(total)''',
    "_total_sum": '''def _total_sum(parts):
    """The sum over tensors, from each tensor's sum: a float (0 without tensors); a 0-d tensor
    when torch.compile traces the step."""
    if not parts:
        return 0.0
    total = torch.stack([x.to(parts[0].device) for x in parts]).sum()
    return total if torch.compiler.is_compiling() else float(total)''',
    "_total_max": '''def _total_max(parts):
    """The maximum over tensors, from each tensor's maximum: a float (-inf without tensors); a
    0-d tensor when torch.compile traces the step."""
    if not parts:
        return -math.inf
    total = torch.stack([x.to(parts[0].device) for x in parts]).amax()
    return total if torch.compiler.is_compiling() else float(total)''',
    "_shape_scalar": '''def _shape_scalar(x, which):
    """numel, rows, cols, ndim or channels (which = 0 to 4) of x, as the rule sees them."""
    if which == 0:
        return x.numel()
    if which == 1:
        return x.shape[-2] if x.dim() >= 2 else 1
    if which == 2:
        return x.shape[-1] if x.dim() >= 1 else 1
    if which == 3:
        return x.dim()
    return x.shape[0] if x.dim() >= 1 else 1''',
    "_shard_placements": '''def _shard_placements(x):
    """The placements of a DTensor sharded over some mesh dimension (as FSDP2 shards parameters), else None."""
    if hasattr(x, "placements") and any(placement.is_shard() for placement in x.placements):
        return tuple(x.placements)
    return None''',
    "_channels": '''def _channels(x):
    """x as (channels, rest): one row per index of its first dimension (x.view(x.size(0), -1))."""
    if x.dim() < 1:
        raise ValueError(f"a channel reduction needs a tensor with a first dimension, got shape {tuple(x.shape)}")
    return x.reshape(x.shape[0], -1)''',
    "_per_channel": '''def _per_channel(values, x):
    """One value per channel of x, at every element of x."""
    return torch.broadcast_to(values.reshape((x.shape[0],) + (1,) * (x.dim() - 1)), x.shape).contiguous()''',
    "_newton_schulz": '''def _newton_schulz(x, steps, a, b, c, bf16):
    """Newton-Schulz iterations on the matrix view of x (x itself if 2-D, its first dimension by
    the rest if more), in bfloat16 if bf16: with A = X X^T, X <- a X + (b A + c A A) X, on the
    wide orientation (transposed while it has more rows than columns)."""
    if x.dim() < 2:
        raise ValueError(f"newton_schulz needs a tensor with at least 2 dimensions, got shape {tuple(x.shape)}")
    if steps != int(steps) or steps < 0:
        raise ValueError(f"newton_schulz takes a whole number of steps, got {steps}")
    m = x.reshape(x.shape[0], -1)
    m = m.bfloat16() if bf16 else m
    tall = m.shape[0] > m.shape[1]
    if tall:
        m = m.mT
    for _ in range(int(steps)):
        gram = m @ m.mT
        update = torch.addmm(gram, gram, gram, beta=b, alpha=c)
        m = torch.addmm(m, update, m, beta=a)
    if tall:
        m = m.mT
    return m.reshape(x.shape).to(x.dtype, copy=True)''',
}


def _device_minmax(fn: str, a: str, a_host: bool, b: str, b_host: bool) -> tuple[str, bool]:
    """``fn(a, b)`` of two 0-d tensors or numbers, and whether the result is a number."""
    if a_host and b_host:
        return f"{fn}({a}, {b})", True
    if a_host or b_host:
        tensor, number = (b, a) if a_host else (a, b)
        return f"torch.clamp({tensor}, {'max' if fn == 'min' else 'min'}={number})", False
    return f"torch.{'minimum' if fn == 'min' else 'maximum'}({a}, {b})", False


# --- the printer -------------------------------------------------------------------------

_PREC = {"add": 2, "sub": 2, "mul": 3, "div": 3, "neg": 4, "pow": 5}
_ATOM = 6


def py_number(x: float) -> str:
    if math.isinf(x):
        return "math.inf" if x > 0 else "-math.inf"
    text = format_number(x)
    return text


@dataclass
class PyPrinter:
    """Prints host (``math``) or device-scalar (``torch``) expressions as Python."""

    rule: Rule
    names: dict[int, str] = field(default_factory=dict)  # nodes already bound to a variable
    device: bool = False  # 0-d tensors instead of floats
    helpers: set[str] = field(default_factory=set)
    leaf: object = None  # callback(node) -> str | None for inputs of the backend's own naming
    _iv: dict = field(default_factory=dict)

    def expr(self, node: Node, depth: int = 0) -> str:
        if depth and id(node) in self.names:
            return self.names[id(node)]
        if node.op == "const":
            return f'"{node.attr}"' if isinstance(node.attr, str) else py_number(node.attr)
        if node.op == "input" or not node.args:
            named = self.leaf(node) if self.leaf else None
            return named if named is not None else (node.name if node.op == "input" else node.op)
        return self._compound(node, depth)

    def _sub(self, node: Node, depth: int, paren: bool) -> str:
        text = self.expr(node, depth + 1)
        return f"({text})" if paren else text

    def _prec(self, node: Node) -> int:
        if id(node) in self.names or node.op == "input" or not node.args:
            return _ATOM
        if node.op == "const":
            return 4 if isinstance(node.attr, float) and node.attr < 0 else _ATOM
        return _PREC.get(node.op, _ATOM if node.op not in COMPARE_SYMBOLS else 1)

    def _safe(self, node: Node) -> bool:
        """Whether plain Python float math on ``node`` can never raise."""
        if self.device and node.kind > Kind.SHAPE:
            return True
        a = [interval(x, self.rule, self._iv) for x in node.args]
        o = node.op
        if o == "div":
            return a[1].excludes_zero()
        if o == "sqrt":
            return a[0].nonnegative()
        if o in ("log", "rsqrt"):
            return a[0].positive()
        if o in ("exp", "cosh"):
            return max(abs(a[0].lo), abs(a[0].hi)) < 709
        if o == "pow":
            b, e = a
            return (b.nonnegative() and b.hi <= 1 and e.nonnegative()) or (
                b.positive() and b.hi < 1e30 and -300 < e.lo and e.hi < 300
            )
        return True

    def _helper(self, name: str) -> str:
        self.helpers.add(name)
        return name

    def _compound(self, node: Node, depth: int) -> str:
        o = node.op
        a = node.args
        prec = self._prec(node)
        if o in ("add", "sub", "mul"):
            sym = {"add": "+", "sub": "-", "mul": "*"}[o]
            lp, rp = self._prec(a[0]), self._prec(a[1])
            return f"{self._sub(a[0], depth, lp < prec)} {sym} {self._sub(a[1], depth, rp <= prec)}"
        if o == "div":
            if not self._safe(node):
                return f"{self._helper('_div')}({self.expr(a[0], depth + 1)}, {self.expr(a[1], depth + 1)})"
            lp, rp = self._prec(a[0]), self._prec(a[1])
            return f"{self._sub(a[0], depth, lp < prec)} / {self._sub(a[1], depth, rp <= prec)}"
        if o == "neg":
            return "-" + self._sub(a[0], depth, self._prec(a[0]) < 4)
        if o == "pow":
            if not self._safe(node):
                return f"{self._helper('_pow')}({self.expr(a[0], depth + 1)}, {self.expr(a[1], depth + 1)})"
            return f"{self._sub(a[0], depth, self._prec(a[0]) < _ATOM)} ** {self._sub(a[1], depth, self._prec(a[1]) < 4)}"
        if o in COMPARE_SYMBOLS:
            text = f"{self._sub(a[0], depth, self._prec(a[0]) <= 2)} {COMPARE_SYMBOLS[o]} {self._sub(a[1], depth, self._prec(a[1]) <= 2)}"
            return f"({text}).to({self.dtype_name})" if self.device and node.kind > Kind.SHAPE else f"float({text})"
        if o == "where":
            cond = self.condition(a[0], depth)
            if self.device and a[0].kind > Kind.SHAPE:
                if a[1].kind <= Kind.SHAPE and a[2].kind <= Kind.SHAPE:  # two numbers: keep the compute dtype
                    args = f"{cond}, {self.expr(a[1], depth + 1)}, {self.expr(a[2], depth + 1)}, {self.dtype_name}"
                    return f"{self._helper('_where_numbers')}({args})"
                return f"torch.where({cond}, {self.expr(a[1], depth + 1)}, {self.expr(a[2], depth + 1)})"
            return f"({self.expr(a[1], depth + 1)} if {cond} else {self.expr(a[2], depth + 1)})"
        args = [self.expr(x, depth + 1) for x in a]
        return self._function(node, args)

    dtype_name: str = "dtype"

    def condition(self, node: Node, depth: int = 1) -> str:
        """``node`` as a truth value (bool tensor on the device, bool on the host)."""
        if node.op in COMPARE_SYMBOLS and id(node) not in self.names:
            a = node.args
            return f"{self._sub(a[0], depth, self._prec(a[0]) <= 2)} {COMPARE_SYMBOLS[node.op]} {self._sub(a[1], depth, self._prec(a[1]) <= 2)}"
        text = self.expr(node, depth + 1)
        return f"{text} != 0" if self.device and node.kind > Kind.SHAPE else text

    def _function(self, node: Node, args: list[str]) -> str:
        o = node.op
        if self.device and node.kind > Kind.SHAPE:  # else host numbers only: math below
            simple = {"abs", "sign", "sqrt", "rsqrt", "exp", "log", "tanh", "cosh", "square"}
            # some arguments may be Python numbers (host values); torch.minimum, torch.lerp
            # and torch.clamp's input take only tensors, and clamp's bounds two of a kind
            host = [x.kind <= Kind.SHAPE for x in node.args]
            if o in simple:
                return f"torch.{o}({args[0]})"
            if o in ("min", "max"):
                return _device_minmax(o, args[0], host[0], args[1], host[1])[0]
            if o == "clamp":
                if not host[0] and host[1] == host[2]:
                    return f"torch.clamp({args[0]}, {args[1]}, {args[2]})"
                low = _device_minmax("max", args[0], host[0], args[1], host[1])
                return _device_minmax("min", *low, args[2], host[2])[0]
            if o == "lerp":
                if host[0] or host[1]:
                    return f"({args[0]}) + ({args[2]}) * (({args[1]}) - ({args[0]}))"
                return f"torch.lerp({args[0]}, {args[1]}, {args[2]})"
            raise NotImplementedError(f"device scalar op {o}")  # reductions are emitted by the backend
        safe = self._safe(node)
        if o == "abs":
            return f"abs({args[0]})"
        if o == "sign":
            return f"{self._helper('_sign')}({args[0]})"
        if o == "square":
            return f"{args[0]} ** 2" if self._prec(node.args[0]) == _ATOM else f"({args[0]}) ** 2"
        if o in ("sqrt", "log", "exp", "cosh"):
            return f"math.{o}({args[0]})" if safe else f"{self._helper('_' + o)}({args[0]})"
        if o == "rsqrt":
            return f"1 / math.sqrt({args[0]})" if safe else f"{self._helper('_rsqrt')}({args[0]})"
        if o == "tanh":
            return f"math.tanh({args[0]})"
        if o in ("min", "max"):
            return f"{o}({args[0]}, {args[1]})"
        if o == "clamp":
            return f"min(max({args[0]}, {args[1]}), {args[2]})"
        if o == "lerp":
            return f"{args[0]} + {args[2]} * ({args[1]} - {args[0]})"
        raise NotImplementedError(f"host op {o}")  # pragma: no cover - the verifier rules it out
