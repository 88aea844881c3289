"""Specs that use every IR op between them: shared by the backends' op tests.

Each backend compiles them (without SymPy, so every op reaches it as written,
and with the full pipeline) and is checked against the IR interpreter.
"""

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

# states that swap (a write waits for a read: computed into a temporary, copied at the end), a
# scalar state that needs a reduction of the new p (written by a per-tensor epilogue kernel), and
# a random initializer (times 0, so the interpreter's draws need not match the optimizer's)
SCHEDULING = '''optimizer Scheduling
hyper lr = 1e-2 in [0, inf)
state x = zeros
state y = ones
state pnorm: scalar = 0
state noise = 0 * randn()
old = x
x = y * 0.5 + g
y = old + g
p = p - lr * ((x - y) / (1 + pnorm) + noise)
pnorm = norm(p)
'''

# Newton-Schulz (two calls: per-step coefficients by chaining), channel reductions and
# the channels shape scalar; on 1-D tensors the matrix branch is not taken
MATRIX = '''optimizer Matrix
hyper lr = 1e-2 in [0, inf)
hyper ns_steps = 3 in [0, 100]
state m = zeros
m = lerp(m, g, 0.1)
x = m / max(norm(m), 1e-7)
o = newton_schulz(x, ns_steps, 3.4445, -4.775, 2.0315, false)
o = newton_schulz(o, 1, 2, -1.5, 0.5, 0)
c = chansum(g) + chanmean(m) + channorm(g) + chanrms(m) + chanmax(g)
u = where(ndim >= 2, o * sqrt(max(1, rows / cols)), g / (norm(g) + 1)) + 0.01 * c / channels
p = p - lr * u
'''

# group reductions over two param groups, states that exist only for some tensors (a full
# one for vectors, row and column factors for matrices), and train/eval blocks
GROUPED = '''optimizer Grouped
hyper lr = 1e-2 in [0, inf)
hyper max_norm = 1 in (0, inf)
state v = zeros when ndim < 2
state vr: row = zeros when ndim >= 2
state vc: col = zeros when ndim >= 2
state z = p
clip = min(1, max_norm / (global_norm(g) + 1e-6))
spread = group_sum(0.1 * g) + global_sum(norm(g)) + group_max(abs(g)) + global_max(g) + group_norm(p)
d = g * clip
f = ndim >= 2
vr = where(f, lerp(vr, rowmean(d^2), 0.1), vr)
vc = where(f, lerp(vc, colmean(d^2), 0.1), vc)
v = where(f, v, lerp(v, d^2, 0.1))
var = where(f, vr * vc / max(colmean(vr), 1e-30), v)
u = d / (sqrt(var) + 1e-8) + 0.001 * spread * p
z = z - lr * u
p = lerp(p, z, 0.5)
on eval:
  p = lerp(p, z, 0.9)
on train:
  p = 2 * p - z
'''

SPECS = {
    "elementwise": (ELEMENTWISE, [(1,), (7,), (1023,), (64, 33)]),
    "reductions": (REDUCTIONS, [(1,), (7,), (1100,), (64, 33), (3, 5, 7)]),
    "axes": (AXES, [(8, 8), (5, 5), (3, 6, 6)]),
    "scheduling": (SCHEDULING, [(1,), (7,), (1100,), (64, 33)]),
    "matrix": (MATRIX, [(8, 8), (5, 3), (3, 4, 2), (7,)]),
    "grouped": (GROUPED, [(7,), (6, 4), (1,), (3, 5, 2), (9,)]),
}


def param_groups(params, name):
    """One group, or for specs with group reductions two (so group and global differ)."""
    if name != "grouped":
        return [{"params": params}]
    return [{"params": params[:2]}, {"params": params[2:], "lr": 2e-2}]


def reference_step(rule, params, grads, step, states, name):
    """The IR interpreter's step for every tensor (group reductions first): new params and states."""
    from optdsl.ir.evaluate import evaluate_reductions, evaluate_step

    groups = param_groups(list(range(len(params))), name)
    index_group = {i: gi for gi, group in enumerate(groups) for i in group["params"]}
    hypers = [{k: v for k, v in {**{"lr": 1e-2}, **group}.items() if k != "params"} for group in groups]
    items = [(index_group[i], p, g, step, st, hypers[index_group[i]]) for i, (p, g, st) in enumerate(zip(params, grads, states))]
    reduced = evaluate_reductions(rule, items) if rule.reductions else [{} for _ in groups]
    out = [evaluate_step(rule, p, g, step, st, hypers[index_group[i]], reduced[index_group[i]])
           for i, (p, g, st) in enumerate(zip(params, grads, states))]
    return [o[0] for o in out], [o[1] for o in out]
