"""A direct interpreter of the IR on torch tensors: the semantics every backend must match.

Used by the pass tests (a pass must not change what a rule computes) and by
the search's numeric probe. Slow and simple on purpose:
one torch op per node, float64 by default. ``randn()`` draws from torch's
global RNG, in the parameter's dtype.
"""

from __future__ import annotations

import math

import torch

from .extent import extent, shape_of
from .guards import is_host_where
from .ops import Kind
from .nodes import GRAD, HOST, HYPER, PARAM, REDUCED, STATE, STEP, Node, Rule


def _sign(x):
    return torch.sign(x) if isinstance(x, torch.Tensor) else float((x > 0) - (x < 0))


def _t(x, like=None):
    if isinstance(x, torch.Tensor):
        return x
    return torch.tensor(float(x), dtype=like.dtype if like is not None else torch.float64)


def _binary(torch_fn):
    def fn(a, b):
        if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
            like = a if isinstance(a, torch.Tensor) else b
            return torch_fn(_t(a, like), _t(b, like))
        return float(torch_fn(_t(a), _t(b)))

    return fn


def _unary(torch_fn):
    def fn(a):
        if isinstance(a, torch.Tensor):
            return torch_fn(a)
        return float(torch_fn(_t(a)))

    return fn


def _mask(cmp):
    def fn(a, b):
        if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
            like = a if isinstance(a, torch.Tensor) else b
            return cmp(_t(a, like), _t(b, like)).to(like.dtype)
        return 1.0 if cmp(_t(a), _t(b)) else 0.0

    return fn


def _where(c, a, b):
    if not isinstance(c, torch.Tensor):
        if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):  # the broadcast shape either way
            like = a if isinstance(a, torch.Tensor) else b
            a, b = torch.broadcast_tensors(_t(a, like), _t(b, like))
        return a if c != 0 else b
    like = next(x for x in (a, b, c) if isinstance(x, torch.Tensor))
    return torch.where(c != 0, _t(a, like), _t(b, like))


def _lerp(a, b, w):
    return a + w * (b - a)


def _clamp(x, lo, hi):
    tensors = [v for v in (x, lo, hi) if isinstance(v, torch.Tensor)]
    if tensors:
        like = tensors[0]
        return torch.clamp(_t(x, like), min=_t(lo, like), max=_t(hi, like))
    return float(min(max(x, lo), hi))


def _pow(a, b):
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        like = a if isinstance(a, torch.Tensor) else b
        return torch.pow(_t(a, like), _t(b, like))
    return float(torch.pow(_t(a), _t(b)))


def _axis(fn, dim):
    def reduce(x):
        if x.dim() < (1 if dim == -1 else 2):
            raise ValueError(f"cannot reduce along dim {dim} of a tensor of shape {tuple(x.shape)}")
        return fn(x, dim)

    return reduce


def _channels(x):
    if x.dim() < 1:
        raise ValueError(f"a channel reduction needs a tensor with a first dimension, got shape {tuple(x.shape)}")
    return x.reshape(x.shape[0], -1)


def _chan(fn):
    def reduce(x):
        return torch.broadcast_to(fn(_channels(x)).reshape((x.shape[0],) + (1,) * (x.dim() - 1)), x.shape).clone()

    return reduce


def newton_schulz(x, steps, a, b, c, bf16):
    """Newton-Schulz iterations on the matrix view of ``x`` (itself if 2-D, first dimension by
    the rest if more), in bfloat16 when ``bf16`` is nonzero: with A = X X^T,
    X <- a X + (b A + c A A) X, on the wide orientation (transposed while rows > cols)."""
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
    return m.reshape(x.shape).to(x.dtype)


ELEMENT = {
    "add": _binary(torch.add),
    "sub": _binary(torch.sub),
    "mul": _binary(torch.mul),
    "div": _binary(torch.div),
    "pow": _pow,
    "neg": lambda a: -a,
    "abs": _unary(torch.abs),
    "sign": _sign,
    "sqrt": _unary(torch.sqrt),
    "rsqrt": _unary(torch.rsqrt),
    "exp": _unary(torch.exp),
    "log": _unary(torch.log),
    "tanh": _unary(torch.tanh),
    "cosh": _unary(torch.cosh),
    "square": lambda a: a * a,
    "min": _binary(torch.minimum),
    "max": _binary(torch.maximum),
    "clamp": _clamp,
    "lerp": _lerp,
    "where": _where,
    "lt": _mask(torch.lt),
    "le": _mask(torch.le),
    "gt": _mask(torch.gt),
    "ge": _mask(torch.ge),
    "eq": _mask(torch.eq),
    "ne": _mask(torch.ne),
    "sum": lambda x: x.sum(),
    "mean": lambda x: x.mean(),
    "norm": lambda x: torch.linalg.vector_norm(x),
    "rms": lambda x: torch.linalg.vector_norm(x) / math.sqrt(x.numel()),
    "amax": lambda x: x.max(),
    "amin": lambda x: x.min(),
    "dot": lambda a, b: (a * b).sum(),
    "rowsum": _axis(lambda x, d: x.sum(d, keepdim=True), -1),
    "rowmean": _axis(lambda x, d: x.mean(d, keepdim=True), -1),
    "rownorm": _axis(lambda x, d: torch.linalg.vector_norm(x, dim=d, keepdim=True), -1),
    "rowrms": _axis(lambda x, d: x.square().mean(d, keepdim=True).sqrt(), -1),
    "rowmax": _axis(lambda x, d: x.amax(d, keepdim=True), -1),
    "colsum": _axis(lambda x, d: x.sum(d, keepdim=True), -2),
    "colmean": _axis(lambda x, d: x.mean(d, keepdim=True), -2),
    "colnorm": _axis(lambda x, d: torch.linalg.vector_norm(x, dim=d, keepdim=True), -2),
    "colrms": _axis(lambda x, d: x.square().mean(d, keepdim=True).sqrt(), -2),
    "colmax": _axis(lambda x, d: x.amax(d, keepdim=True), -2),
    "matmul": lambda a, b: a @ b,
    "transpose": lambda a: a.transpose(-1, -2),
    "newton_schulz": newton_schulz,
    "chansum": _chan(lambda v: v.sum(1)),
    "chanmean": _chan(lambda v: v.mean(1)),
    "channorm": _chan(lambda v: torch.linalg.vector_norm(v, dim=1)),
    "chanrms": _chan(lambda v: v.square().mean(1).sqrt()),
    "chanmax": _chan(lambda v: v.amax(1)),
}


def shape_values(p: torch.Tensor) -> dict[str, float]:
    return {
        "numel": float(p.numel()),
        "rows": float(p.shape[-2]) if p.dim() >= 2 else 1.0,
        "cols": float(p.shape[-1]) if p.dim() >= 1 else 1.0,
        "ndim": float(p.dim()),
        "channels": float(p.shape[0]) if p.dim() >= 1 else 1.0,
    }


def evaluate_graph(roots: list[Node], env: dict[tuple[str, str], object], p: torch.Tensor,
                   rule: Rule | None = None) -> list[object]:
    """Values of ``roots``; ``env`` maps (role, name) of inputs to values.

    A ``where`` on a host condition evaluates only the branch it takes, as the
    backends do (the other may read a state the parameter does not have).
    """
    values: dict[int, object] = {}
    shapes = shape_values(p)
    shape_memo: dict[int, tuple] = {}  # extents

    def value(node: Node) -> object:
        stack = [node]
        while stack:
            n = stack[-1]
            if id(n) in values:
                stack.pop()
                continue
            if is_host_where(n):
                cond = n.args[0]
                if id(cond) not in values:
                    stack.append(cond)
                    continue
                branch = n.args[1] if values[id(cond)] != 0 else n.args[2]
                if id(branch) not in values:
                    stack.append(branch)
                    continue
                chosen = values[id(branch)]
                if n.kind >= Kind.SCALAR and rule is not None:  # the shape it has whichever branch is taken
                    shape = shape_of(extent(n, rule, shape_memo), tuple(p.shape))
                    chosen = torch.broadcast_to(_t(chosen, p), shape).clone()
                values[id(n)] = chosen
                stack.pop()
                continue
            missing = [a for a in n.args if id(a) not in values]
            if missing:
                stack.extend(reversed(missing))
                continue
            values[id(n)] = _leaf_or_op(n, [values[id(a)] for a in n.args], env, p, shapes)
            stack.pop()
        return values[id(node)]

    return [value(r) for r in roots]


def _leaf_or_op(node: Node, args: list, env, p: torch.Tensor, shapes: dict[str, float]) -> object:
    if node.op == "const":
        return node.attr
    if node.op == "input":
        return env[node.attr]
    if node.op == "randn":
        return torch.randn(p.shape, dtype=p.dtype, device=p.device)
    if not node.args:
        return shapes[node.op]
    if node.op in ("eq", "ne") and any(isinstance(a, str) for a in args):
        return float((args[0] == args[1]) == (node.op == "eq"))
    return ELEMENT[node.op](*args)


def state_shape(shape: str, p: torch.Tensor) -> tuple[int, ...] | None:
    """The shape of a state of ``shape`` for parameter ``p`` (None: a per-tensor scalar)."""
    if shape == "tensor":
        return tuple(p.shape)
    if shape == "row":
        if p.dim() < 1:
            raise ValueError(f"a row state needs a parameter with at least 1 dimension, got shape {tuple(p.shape)}")
        return (*p.shape[:-1], 1)
    if shape == "col":
        if p.dim() < 2:
            raise ValueError(f"a col state needs a parameter with at least 2 dimensions, got shape {tuple(p.shape)}")
        return (*p.shape[:-2], 1, p.shape[-1])
    return None


def _hyper_env(rule: Rule, hypers: dict[str, object] | None, t: float) -> dict:
    hv = {h.name: h.default for h in rule.hypers}
    hv.update(hypers or {})
    env: dict[tuple[str, str], object] = {(STEP, "t"): float(t)}
    env.update({(HYPER, k): (float(v) if isinstance(v, bool) else v) for k, v in hv.items()})
    return env


def ensure_states(rule: Rule, p: torch.Tensor, g: torch.Tensor | None, t: float, state: dict,
                  hypers: dict[str, object] | None = None) -> dict:
    """``state`` with every state created that is missing and whose condition holds."""
    env = _hyper_env(rule, hypers, t)
    env.update({(PARAM, "p"): p, (GRAD, "g"): g})
    state = dict(state)
    for s in rule.states:
        if s.name in state:
            continue
        if s.when is not None and not evaluate_graph([s.when], env, p, rule)[0]:
            continue
        (value,) = evaluate_graph([s.init], env, p, rule)
        shape = state_shape(s.shape, p)
        if shape is not None:
            value = torch.broadcast_to(_t(value, p), shape).clone()
        else:
            value = _t(value, p).clone()
        state[s.name] = value
    return state


def _run(rule: Rule, env: dict, p: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
    for s in rule.states:
        if s.name in state:
            env[(STATE, s.name)] = state[s.name]
    for name, node in rule.host:
        (env[(HOST, name)],) = evaluate_graph([node], env, p, rule)
    outputs = [(name, node) for name, node in rule.outputs if name == "p" or name in state]
    values = evaluate_graph([n for _, n in outputs], env, p, rule)
    new_state = dict(state)
    new_p = p
    for (name, node), value in zip(outputs, values):
        if name == "p":
            new_p = value
        else:
            shape = state_shape(rule.state(name).shape, p)
            if shape is not None:
                value = torch.broadcast_to(_t(value, p), shape).clone()
            new_state[name] = value
    return new_p, new_state


def evaluate_step(
    rule: Rule,
    p: torch.Tensor,
    g: torch.Tensor,
    t: int,
    state: dict[str, torch.Tensor],
    hypers: dict[str, object] | None = None,
    reduced: dict[str, float] | None = None,
) -> tuple[torch.Tensor, dict[str, object]]:
    """One step of ``rule``: the new p and the new states (missing states are initialised).

    ``reduced`` holds the values of the rule's group reductions for this parameter's
    group (see :func:`evaluate_reductions`).
    """
    state = ensure_states(rule, p, g, t, state, hypers)
    env = _hyper_env(rule, hypers, t)
    env.update({(PARAM, "p"): p, (GRAD, "g"): g})
    env.update({(REDUCED, k): v for k, v in (reduced or {}).items()})
    return _run(rule, env, p, state)


def evaluate_reductions(rule: Rule, tensors: list[tuple]) -> list[dict[str, float]]:
    """Values of the rule's group reductions before a step.

    ``tensors`` holds one (group index, p, g, t, state, hypers) per parameter with a
    gradient; returns, per group index, a dict from reduction name to value.
    """
    groups = sorted({item[0] for item in tensors})
    partial = {(r.name, gi): [] for r in rule.reductions for gi in groups}
    for gi, p, g, t, state, hypers in tensors:
        state = ensure_states(rule, p, g, t, state, hypers)
        env = _hyper_env(rule, hypers, t)
        env.update({(PARAM, "p"): p, (GRAD, "g"): g})
        env.update({(STATE, k): v for k, v in state.items()})
        for r in rule.reductions:
            (x,) = evaluate_graph([r.arg], env, p, rule)
            x = _t(x, p).double()
            reduce = {"sum": x.sum(), "norm": x.square().sum(), "max": x.max()}[r.kind_of_reduction]
            partial[(r.name, gi)].append(float(reduce))
    out = []
    for gi in range(max(groups, default=-1) + 1):
        values = {}
        for r in rule.reductions:
            parts = [v for (name, gj), vs in partial.items() if name == r.name and (gj == gi or r.scope == "global") for v in vs]
            if r.kind_of_reduction == "max":
                total = max(parts, default=-math.inf)
            else:
                total = sum(parts)
            values[r.name] = math.sqrt(total) if r.kind_of_reduction == "norm" else total
        out.append(values)
    return out


def evaluate_event(rule: Rule, event: str, p: torch.Tensor, t: int, state: dict,
                   hypers: dict[str, object] | None = None) -> tuple[torch.Tensor, dict]:
    """What the ``on event`` block does to one parameter with ``state`` (unchanged without a block)."""
    sub = rule.event(event)
    if sub is None:
        return p, dict(state)
    env = _hyper_env(rule, hypers, t)
    env.update({(PARAM, "p"): p})
    return _run(sub, env, p, dict(state))
