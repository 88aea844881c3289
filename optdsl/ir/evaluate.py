"""A direct interpreter of the IR on torch tensors: the semantics every backend must match.

Used by the pass tests (a pass must not change what a rule computes) and by
the search's numeric probe. Slow and simple on purpose:
one torch op per node, float64 by default. ``randn()`` draws from torch's
global RNG, in the parameter's dtype.
"""

from __future__ import annotations

import math

import torch

from .nodes import GRAD, HOST, HYPER, PARAM, STATE, STEP, Node, Rule, postorder


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
}


def shape_values(p: torch.Tensor) -> dict[str, float]:
    return {
        "numel": float(p.numel()),
        "rows": float(p.shape[-2]) if p.dim() >= 2 else 1.0,
        "cols": float(p.shape[-1]) if p.dim() >= 1 else 1.0,
        "ndim": float(p.dim()),
    }


def evaluate_graph(roots: list[Node], env: dict[tuple[str, str], object], p: torch.Tensor) -> list[object]:
    """Values of ``roots``; ``env`` maps (role, name) of inputs to values."""
    values: dict[int, object] = {}
    shapes = shape_values(p)
    for node in postorder(roots):
        if node.op == "const":
            values[id(node)] = node.attr
        elif node.op == "input":
            values[id(node)] = env[node.attr]
        elif node.op == "randn":
            values[id(node)] = torch.randn(p.shape, dtype=p.dtype, device=p.device)
        elif not node.args:
            values[id(node)] = shapes[node.op]
        elif node.op in ("eq", "ne") and any(isinstance(values[id(a)], str) for a in node.args):
            a, b = (values[id(x)] for x in node.args)
            values[id(node)] = float((a == b) == (node.op == "eq"))
        else:
            values[id(node)] = ELEMENT[node.op](*(values[id(a)] for a in node.args))
    return [values[id(r)] for r in roots]


def evaluate_step(
    rule: Rule,
    p: torch.Tensor,
    g: torch.Tensor,
    t: int,
    state: dict[str, torch.Tensor],
    hypers: dict[str, object] | None = None,
) -> tuple[torch.Tensor, dict[str, object]]:
    """One step of ``rule``: the new p and the new states (missing states are initialised)."""
    hv = {h.name: h.default for h in rule.hypers}
    hv.update(hypers or {})
    env: dict[tuple[str, str], object] = {(PARAM, "p"): p, (GRAD, "g"): g, (STEP, "t"): float(t)}
    env.update({(HYPER, k): (float(v) if isinstance(v, bool) else v) for k, v in hv.items()})
    state = dict(state)
    for s in rule.states:
        if s.name not in state:
            (value,) = evaluate_graph([s.init], env, p)
            if s.shape == "tensor":
                value = torch.broadcast_to(_t(value, p), p.shape).clone()
            else:
                value = _t(value, p).clone()
            state[s.name] = value
        env[(STATE, s.name)] = state[s.name]
    for name, node in rule.host:
        (env[(HOST, name)],) = evaluate_graph([node], env, p)
    values = evaluate_graph([n for _, n in rule.outputs], env, p)
    new_state = dict(state)
    new_p = p
    for (name, node), value in zip(rule.outputs, values):
        if name == "p":
            new_p = value
        else:
            decl = rule.state(name)
            if decl.shape == "tensor":
                value = torch.broadcast_to(_t(value, p), p.shape).clone()
            new_state[name] = value
    return new_p, new_state
