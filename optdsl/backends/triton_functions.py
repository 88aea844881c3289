"""Triton device functions the generated kernels call, as source text.

Each entry is copied into a generated module only when its kernels use it, so
the module stays self-contained. They exist for what ``triton.language`` lacks
on every supported version (3.6 on the GPU machines, 3.9 in CI) and under the
CPU interpreter: ``tanh``, ``cosh``, a ``pow`` with torch's semantics,
torch's ``lerp`` and ``sign``, and rounding fp32 to bf16 (nearest-even, or
stochastic) in a way that gives the same bits compiled and interpreted.
Names that the host helpers (pyexpr.HELPERS) also define carry a ``_tl_`` prefix:
both live in one module, and a device function must not shadow the host helper.
"""

from __future__ import annotations

FUNCTIONS: dict[str, str] = {
    "_square": '''@triton.jit
def _square(x):
    return x * x''',
    "_tl_sign": '''@triton.jit
def _tl_sign(x):
    """torch.sign: -1, 0 or 1, and nan for nan."""
    return tl.where(x > 0, 1.0, tl.where(x < 0, -1.0, tl.where(x == 0, 0.0, x)))''',
    "_lerp": '''@triton.jit
def _lerp(a, b, w):
    """torch.lerp's formula: exact at both ends for any weight."""
    w = tl.cast(w, tl.float32)
    return tl.where(tl.abs(w) < 0.5, a + w * (b - a), b - (b - a) * (1.0 - w))''',
    "_tl_pow": '''@triton.jit
def _tl_pow(a, b):
    """a ** b as torch.pow: a negative base needs an integral exponent, 0 ** 0 == 1."""
    a = tl.cast(a, tl.float32)
    b = tl.cast(b, tl.float32)
    r = tl.exp2(b * tl.log2(tl.abs(a)))
    odd = tl.floor(b * 0.5) * 2.0 != b
    r = tl.where(a < 0, tl.where(tl.floor(b) == b, tl.where(odd, -r, r), _NAN), r)
    return tl.where(b == 0, 1.0, tl.where(a == 1, 1.0, r))''',
    "_tl_tanh": '''@triton.jit
def _tl_tanh(x):
    """tanh in fp32: a series near 0, where (1 - e) / (1 + e) would cancel."""
    y = tl.abs(x)
    e = tl.exp(-2.0 * y)
    far = (1.0 - e) / (1.0 + e)
    y2 = y * y
    near = y * (1.0 + y2 * (-1.0 / 3.0 + y2 * (2.0 / 15.0 + y2 * (-17.0 / 315.0 + y2 * (62.0 / 2835.0 + y2 * (-1382.0 / 155925.0))))))
    r = tl.where(y < 0.3, near, far)
    return tl.where(x < 0, -r, tl.where(x == x, r, x))''',
    "_tl_cosh": '''@triton.jit
def _tl_cosh(x):
    """cosh in fp32, finite up to the same |x| as torch.cosh."""
    e = tl.exp(tl.abs(x) - 0.6931471805599453)
    return e + 0.25 / e''',
    "_store_value": '''@triton.jit
def _store_value(x, DTYPE: tl.constexpr):
    """x (fp32) in DTYPE, rounded to nearest-even."""
    if DTYPE == tl.bfloat16:
        bits = x.to(tl.uint32, bitcast=True)
        bits = tl.where(x != x, 0x7FC00000, bits + 0x7FFF + ((bits >> 16) & 1))
        return (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        return x.to(DTYPE)''',
    "_store_param": '''@triton.jit
def _store_param(x, seed, tensor, t, offs, DTYPE: tl.constexpr, STOCHASTIC_ROUNDING: tl.constexpr):
    """The new parameter in its dtype; bf16 optionally rounded stochastically.

    Stochastic rounding adds 16 random bits below bf16's last mantissa bit and
    truncates: unbiased, so updates smaller than half a bf16 ulp still count on
    average. The random stream is Philox keyed by (seed, tensor, step, element).
    """
    if STOCHASTIC_ROUNDING and DTYPE == tl.bfloat16:
        low = offs.to(tl.uint32)
        which = tl.zeros_like(low) + tensor.to(tl.uint32)
        step = (tl.zeros_like(x) + t).to(tl.uint32)
        r, _, _, _ = tl.philox(seed, low, which, step, (offs >> 32).to(tl.uint32))
        bits = x.to(tl.uint32, bitcast=True)
        bits = tl.where(x != x, 0x7FC00000, bits + (r & 0xFFFF))
        return (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        return _store_value(x, DTYPE)''',
}

# functions that call others
REQUIRES: dict[str, tuple[str, ...]] = {"_store_param": ("_store_value",)}

# module-level constants a function or kernel may read
CONSTANTS: dict[str, str] = {
    "_INF": "_INF = tl.constexpr(math.inf)",
    "_NAN": "_NAN = tl.constexpr(math.nan)",
}
USES_CONSTANTS: dict[str, tuple[str, ...]] = {"_tl_pow": ("_NAN",)}


def closure(names: set[str]) -> list[str]:
    """``names`` and the functions they call, in a fixed order."""
    out = set(names)
    for name in list(names):
        out.update(REQUIRES.get(name, ()))
    return [n for n in FUNCTIONS if n in out]


def constants_for(functions: list[str], kernel_constants: set[str]) -> list[str]:
    used = set(kernel_constants)
    for f in functions:
        used.update(USES_CONSTANTS.get(f, ()))
    return [CONSTANTS[c] for c in sorted(used)]
