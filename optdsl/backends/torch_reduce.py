"""The group reductions of a step (``group_norm(g)``, ``global_sum(x)``, ...): the
generated ``_reduce(groups)``, one pass over every tensor with a gradient before any
update, giving per param group a tuple of floats that ``_update`` reads as host values.

Each tensor contributes a partial value (its norm, sum or max, by torch ops); the
partials are combined per group, or over all groups for ``global_*``, and brought
to the host once per reduction (``.item()``-like, one sync per reduction and step).
A reduction is computed only where some group needs it: where its guard
(``ir.guards``: the host conditions on its uses, shape conditions taken as true)
holds for the group's hypers.
"""

from __future__ import annotations

from ..ir import guards as G
from ..ir.nodes import HYPER, STATE, Node, Rule, postorder
from ..ir.ops import GROUPS, Kind
from ..ir.schedule import Schedule
from .pyexpr import PyPrinter
from .torch_emit import TorchEmitter
from .torch_init import inline_host

PARTIAL = {
    ("norm", Kind.TENSOR): "torch.linalg.vector_norm({0})",
    ("sum", Kind.TENSOR): "{0}.sum()",
    ("max", Kind.TENSOR): "{0}.amax()",
    ("norm", Kind.SCALAR): "{0}.abs()",
    ("sum", Kind.SCALAR): "{0}",
    ("max", Kind.SCALAR): "{0}",
}


class ReductionWriter:
    def __init__(self, rule: Rule, helpers: set[str], betas: list[str]):
        self.rule = rule
        self.helpers = helpers
        self.betas = betas
        self.host = dict(rule.host)
        roots = [(n, G.TRUE) for _, n in rule.outputs]
        self.guards = G.compute(roots, self.host)
        self.printer = PyPrinter(rule, helpers=helpers)

    def _need(self, r) -> str:
        """Whether a group needs reduction ``r`` this step, from its hypers (shape conditions: yes)."""
        leaf = next((n for n in self._leaves() if n.attr[1] == r.name), None)
        guard = self.guards[leaf] if leaf is not None else G.FALSE
        if not guard:
            return "False"

        def literal(node: Node) -> str:
            node = inline_host(node, self.host)
            if node.kind > Kind.GROUP or any(n.op in GROUPS["shape"] for n in postorder([node])):
                return "True"
            return self.printer.condition(node)

        return G.condition_text(guard, self.guards, literal)

    def _leaves(self) -> list[Node]:
        roots = [n for _, n in self.rule.outputs] + [n for _, n in self.rule.host]
        return [n for n in postorder(roots) if n.op == "input" and n.attr[0] == "reduced"]

    def lines(self) -> list[str]:
        rule = self.rule
        reductions = rule.reductions
        k = len(reductions)
        needs = [self._need(r) for r in reductions]
        hypers = set()
        for node in postorder([r.arg for r in reductions]):
            if node.op == "input" and node.attr[0] == HYPER:
                hypers.add(node.name)
        need_hypers = {n.name for n in postorder([inline_host(self.guards.conditions[c], self.host)
                                                   for c in self.guards.conditions])
                       if n.op == "input" and n.attr[0] == HYPER}
        from .torch_backend import _hyper_lines, _shape_lines

        out = ["needs = []", "for group, _ in groups:"]
        out += ["    " + line for line in _hyper_lines(rule, need_hypers, self.betas)]
        out.append(f"    needs.append(({', '.join(needs)}{',' if k == 1 else ''}))")
        for i, r in enumerate(reductions):
            if r.scope == "global":
                out.append(f"needs = [need[:{i}] + (any(n[{i}] for n in needs),) + need[{i + 1}:] for need in needs]")
        out.append("partials = []")
        out.append("for (group, buckets), need in zip(groups, needs):")
        body = _hyper_lines(rule, hypers, self.betas)
        body.append(f"parts = {tuple([] for _ in range(k))!r}".replace("[]", "[]"))
        body.append("for (*_, t), (params, states) in buckets.items():")
        loop = [f"dtype = torch.promote_types(params[0].dtype, {self._bucket_dtype()})",
                "for param, state in zip(params, states):"]
        inner = [
            "grad = -param.grad if group[\"maximize\"] else param.grad",
            "g = grad if grad.dtype == dtype else grad.to(dtype)",
            "p = param if param.dtype == dtype else param.to(dtype)",
        ]
        reads = {n.name for n in postorder([r.arg for r in reductions]) if n.op == "input" and n.attr[0] == STATE}
        for s in rule.states:
            if s.name not in reads:
                continue
            if s.shape == "scalar":
                inner.append(f"{s.name} = state[\"{s.name}\"]{'.item()' if s.on_host else ''}")
            else:
                inner.append(f'{s.name} = _get(state, "{s.name}", dtype)')
        shapes = {n.op for n in postorder([r.arg for r in reductions]) if n.op in GROUPS["shape"]}
        inner += _shape_lines(shapes)
        for i, r in enumerate(reductions):
            emitter = TorchEmitter(rule, Schedule([], {}, {}), foreach=False, taken={"param", "state", "p", "g", "t"}, indent="")
            emitter.guards = G.Guards({}, {}, {})
            if r.arg.kind <= Kind.SHAPE:
                value, kind = f"p.new_tensor(float({emitter.host_code(r.arg)}))", Kind.SCALAR
            elif r.arg.kind == Kind.SCALAR:
                value, kind = emitter.scalar(r.arg), Kind.SCALAR
            else:
                value, kind = emitter.tensor(r.arg).code, Kind.TENSOR
            self.helpers |= emitter.host_printer.helpers
            partial = PARTIAL[(r.kind_of_reduction, kind)].format(value if _simple(value) else f"({value})")
            inner += [f"if need[{i}]:"] + ["    " + line for line in emitter.lines]
            inner.append(f"    parts[{i}].append({partial})")
        loop += ["    " + line for line in inner]
        body += ["    " + line for line in loop]
        body.append("partials.append(parts)")
        out += ["    " + line for line in body]
        out.append("totals = []")
        out.append("for gi, parts in enumerate(partials):")
        totals = []
        for i, r in enumerate(reductions):
            self.helpers.add(f"_total_{r.kind_of_reduction}")
            parts = f"[x for ps in partials for x in ps[{i}]]" if r.scope == "global" else f"parts[{i}]"
            totals.append(f"_total_{r.kind_of_reduction}({parts})")
        out.append(f"    totals.append(({', '.join(totals)}{',' if k == 1 else ''}))")
        out.append("return totals")
        return out

    def _bucket_dtype(self) -> str:
        always = [s.name for s in self.rule.states if s.shape != "scalar" and s.when is None]
        return f'states[0]["{always[0]}"].dtype' if always else "self._state_dtype(group, params[0])"


def _simple(code: str) -> bool:
    return code.replace("_", "").replace(".", "").isalnum()
