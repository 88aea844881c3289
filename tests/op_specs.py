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

SPECS = {
    "elementwise": (ELEMENTWISE, [(1,), (7,), (1023,), (64, 33)]),
    "reductions": (REDUCTIONS, [(1,), (7,), (1100,), (64, 33), (3, 5, 7)]),
    "axes": (AXES, [(8, 8), (5, 5), (3, 6, 6)]),
    "scheduling": (SCHEDULING, [(1,), (7,), (1100,), (64, 33)]),
}
