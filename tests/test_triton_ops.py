"""Every IR op through the Triton backend, against the IR interpreter (float64).

The specs below use every op of ``optdsl.ir.ops`` between them (a test checks
that); they are compiled both without SymPy (so each op reaches the backend
as written) and with the full pipeline. The reference is
``optdsl.ir.evaluate.evaluate_step``, the semantics every backend must match;
fp32 kernels stay within 1e-5 of it over 5 steps.
"""

from __future__ import annotations

import pytest
import torch

from optdsl.backends.triton_backend import render
from optdsl.compiler import from_text, lower, source_hash
from optdsl.ir.evaluate import evaluate_step
from optdsl.ir.nodes import postorder
from optdsl.ir.ops import OPS
from optdsl.passes import NO_SYMPY, PIPELINE, run_passes
from optdsl.runtime.cache import cache_dir, import_file, write_atomic
from triton_harness import count_launches, make_params

ELEMENTWISE = '''optimizer Elementwise
hyper lr = 1e-2 in [0, inf)
hyper beta = 0.9 in [0, 1)
hyper k = 2
hyper flag = true
hyper mode = "a" in {"a", "b"}
state m = zeros
state n = ones
m = lerp(m, g, 1 - beta)
n = clamp(n * 0.9 + square(g) + abs(m) ^ 1.5, 0.5, 4)
a = sqrt(n) + rsqrt(n) + exp(-abs(g)) + log(n) + tanh(g) + cosh(clamp(g, -1, 1)) + tanh(0.01 * g)
b = min(m, g) - max(m, -g) + sign(m) * where(g < 0, 1, 2) + where(flag, 1, 0) * (g <= 0) - (g >= 0.5)
c = b + (m > 0) * (g != 0) + (m == 0) + where(mode == "a", k, -k) * m / n ^ (t / (t + 1)) + n ^ (0.1 * g)
p = p - lr * (a * 0.01 + c)
'''

REDUCTIONS = '''optimizer Reductions
hyper lr = 1e-2 in [0, inf)
state m = zeros
state s: scalar = 0
state peak: scalar = 0
m = lerp(m, g, 0.1)
u = m / (norm(m) + 1e-8) * sqrt(numel)
mask = u * g > 0
u = u * mask * numel / (sum(mask) + 1)
s = s + mean(g^2) + rms(m) - max(g) + min(g) + dot(g, m)
peak = max(peak, max(abs(g)))
p = p - lr * (u + 0.001 * s * g) * sqrt(rows / cols) / (ndim + 1)
'''

AXES = '''optimizer Axes
hyper lr = 1e-2 in [0, inf)
state m = zeros
m = lerp(m, g, 0.1)
r = rowsum(m) + rowmean(g) + rownorm(g) + rowrms(m) + rowmax(g)
c = colsum(g) + colmean(m) + colnorm(m) + colrms(g) + colmax(m)
o = (m @ transpose(m)) @ g
p = p - lr * (r * 0.1 + c * 0.1 + 0.01 * o / (norm(o) + 1))
'''

# states that swap (a write waits for a read: computed into a temporary, copied at the end) and a
# scalar state that needs a reduction of the new p (written by a per-tensor epilogue kernel)
SCHEDULING = '''optimizer Scheduling
hyper lr = 1e-2 in [0, inf)
state x = zeros
state y = ones
state pnorm: scalar = 0
old = x
x = y * 0.5 + g
y = old + g
p = p - lr * (x - y) / (1 + pnorm)
pnorm = norm(p)
'''

SPECS = {
    "elementwise": (ELEMENTWISE, [(1,), (7,), (1023,), (64, 33)]),
    "reductions": (REDUCTIONS, [(1,), (7,), (1100,), (64, 33), (3, 5, 7)]),
    "axes": (AXES, [(8, 8), (5, 5), (3, 6, 6)]),
    "scheduling": (SCHEDULING, [(1,), (7,), (1100,), (64, 33)]),
}


def _rule(source: str, passes):
    return run_passes(lower(from_text(source))[0], passes)


def _optimizer_class(rule, source: str, tag: str):
    """The Triton module of an already optimized rule, written and imported like optdsl.load does."""
    path = cache_dir() / "ops" / f"optdsl_{tag}_{source_hash(source)[:16]}.py"
    write_atomic(path, render(rule, source_hash(source)))
    module = import_file(path)
    return getattr(module, module.__all__[0])


def test_specs_cover_every_op():
    used = set()
    for source, _ in SPECS.values():
        used |= {n.op for n in postorder(_rule(source, NO_SYMPY).roots())}
    assert set(OPS) - used == set()


@pytest.mark.parametrize("pipeline", ["no_sympy", "full"])
@pytest.mark.parametrize("name", list(SPECS))
def test_ops_match_ir_interpreter(name, pipeline):
    source, shapes = SPECS[name]
    rule = _rule(source, NO_SYMPY if pipeline == "no_sympy" else PIPELINE)
    cls = _optimizer_class(rule, source, pipeline)
    params = make_params(shapes)
    ref = [p.detach().double().cpu() for p in params]
    ref_states = [{} for _ in params]
    opt = cls(params, lr=1e-2)
    gen = torch.Generator().manual_seed(3)
    with count_launches(cls) as launches:
        for step in range(1, 6):
            for i, p in enumerate(params):
                grad = torch.randn(p.shape, generator=gen)
                p.grad = grad.to(p.device)
                ref[i], ref_states[i] = evaluate_step(rule, ref[i], grad.double(), step, ref_states[i], {"lr": 1e-2})
            opt.step()
    assert len(launches) == 5 * len(cls.__module__ and __import__("sys").modules[cls.__module__]._KERNELS)
    for p, r, st in zip(params, ref, ref_states):
        scale = r.abs().max().clamp_min(1e-12)
        assert ((p.detach().double().cpu() - r).abs().max() / scale).item() <= 1e-5
        for s in rule.states:
            ours = opt.state[p][s.name].double().cpu()
            want = st[s.name]
            assert ((ours - want).abs().max() / want.abs().max().clamp_min(1e-6)).item() <= 1e-5, s.name
