"""The Triton backend: a rule -> one module with fused multi-tensor kernels.

The module is the torch backend's module (same constructor, param groups,
state and state_dict; ``templates/triton_optimizer.py.j2`` extends the torch
template) plus kernels: ``triton_plan`` splits the rule into launches,
``triton_emit`` writes each kernel, and this module writes the code that
launches them for a bucket of tensors (``_update_fused``). Tensors the kernels
cannot take (CPU tensors outside the Triton interpreter, float64, non-contiguous
parameters) run the torch code in the same module.
"""

from __future__ import annotations

from ..ir.nodes import HYPER, Node, Rule, postorder
from ..ir import guards as G
from ..ir.ops import GROUPS, Kind
from ..ir.printer import expr_text
from ..ir.schedule import schedule
from . import triton_functions
from .pyexpr import HELPERS, PyPrinter
from .torch_init import inline_host
from .torch_backend import (
    _environment, _shape_lines, beta_names, docstring_literal, host_state_lines, template_context,
)
from .torch_emit import REDUCE
from .triton_emit import KernelEmitter
from .triton_layout import Kernel, Layout, fresh
from .triton_plan import KernelPlan, Plan, in_kernel, is_torch_op, plan_kernels

TEMPLATE = "triton_optimizer.py.j2"
OPTIONS = (
    "    capturable: keep the step count on the device and compute the step's scalars in the kernels,",
    "        so a step can be captured in a CUDA graph (fp32 scalar math instead of float64).",
    "    stochastic_rounding: round bf16 parameters stochastically (unbiased) instead of to nearest.",
    "    rounding_seed: seed of the stochastic rounding (Philox, keyed by tensor, step and element).",
)
SPEC_RESERVED = {"p", "g", "t", "numel", "rows", "cols", "ndim", "tl", "triton", "torch", "math"}


def render(rule: Rule, spec_hash: str) -> str:
    """Python source of the Triton optimizer module for ``rule`` (after the passes)."""
    context = template_context(rule, spec_hash, imports="torch and triton", options=OPTIONS)
    spec_names = {h.name for h in rule.hypers} | {s.name for s in rule.states} | {n for n, _ in rule.host}
    layout = Layout.build(rule, spec_names | SPEC_RESERVED)
    sched = schedule(rule, layout.taken)
    plan = plan_kernels(rule)
    kernels = _kernels(rule, layout, sched, plan)
    helpers: set[str] = set()
    fused = FusedLauncher(rule, layout, plan, kernels, helpers).lines()
    functions = triton_functions.closure(set().union(*(k.functions for k in kernels)))
    constants = triton_functions.constants_for(functions, set().union(*(k.constants for k in kernels)))
    context.update(
        traced=None,  # the Triton module's own buckets never take the traced torch step
        helpers=sorted(set(context["helpers"]) | {HELPERS[h] for h in helpers}, key=_helper_order),
        constants=constants,
        device_functions=[triton_functions.FUNCTIONS[f] for f in functions],
        device_function_names=functions,
        kernels=[k.text.rstrip("\n") for k in kernels],
        first_kernel=kernels[0].name,
        kernel_names=[k.name for k in kernels],
        fused_lines=fused,
        table_states=[b for b in layout.rows if b not in ("p", "g", "step")],
        host_states=layout.host_states,
    )
    return _environment().get_template(TEMPLATE).render(**context)


def _helper_order(text: str) -> str:
    return text.split("(", 1)[0]


def _kernels(rule: Rule, layout: Layout, sched, plan: Plan) -> list[Kernel]:
    base = f"_{rule.name.lower()}"
    element = [kp for kp in plan.kernels if not kp.per_tensor]
    out = []
    for kp in plan.kernels:
        if kp.per_tensor:
            name = f"{base}_scalars"
        else:
            name = f"{base}_kernel" if len(element) == 1 else f"{base}_kernel{kp.index}"
        out.append(KernelEmitter(layout, sched, plan, kp, name, _kernel_doc(rule, kp, len(plan.kernels))).emit())
    return out


def _kernel_doc(rule: Rule, kp: KernelPlan, count: int) -> str:
    parts = []
    if kp.reduces:
        parts.append("accumulates " + ", ".join(expr_text(r) for r in kp.reduces) + " per tensor")
    if kp.scratch:
        parts.append("stores " + ", ".join(expr_text(n) for n in kp.scratch) + " for torch")
    if kp.writes:
        written = [name for name, _ in rule.outputs if name == "p" or rule.state(name).shape == "tensor"]
        parts.append("writes " + ", ".join(written))
    if kp.scalar_outputs:
        parts.append("writes the scalar states " + ", ".join(name for name, _ in kp.scalar_outputs))
    text = f"Launch {kp.index + 1} of {count}: " + "; ".join(parts) + "."
    return docstring_literal(text, "    ")


class FusedLauncher:
    """Writes ``_update_fused``: host values, buffers, torch ops and launches for one bucket."""

    def __init__(self, rule: Rule, layout: Layout, plan: Plan, kernels: list[Kernel], helpers: set[str]):
        self.rule = rule
        self.L = layout
        self.n = layout.names
        self.plan = plan
        self.kernels = kernels
        self.helpers = helpers
        self.taken = set(layout.taken)
        self.out: list[str] = []
        self._guards: G.Guards | None = None

    def lines(self) -> list[str]:
        n = self.n
        self.out += [
            "grads = [param.grad if param.grad.is_contiguous() else param.grad.contiguous() for param in params]",
            f"{n['tables']} = self._tables(group, params, grads, states)",
            f"if {n['tables']}.n_chunks == 0:",
            "    return",
            f"{n['device']} = params[0].device",
            f"{n['g_sign']} = -1.0 if group[\"maximize\"] else 1.0",
            f"{n['seed']} = int(group[\"rounding_seed\"]) % 2**31",
        ]
        self._host_values()
        self._buffers()
        by_kernel = {kp.index: k for kp, k in zip(self.plan.kernels, self.kernels)}
        for kp in self.plan.kernels:
            if kp.torch_before:
                self._torch_ops(kp.torch_before)
            self._launch(by_kernel[kp.index])
        if self.plan.commits:
            self._commits()
        for j, (name, _) in enumerate(self.L.scalar_outputs):
            copy = (f"torch._foreach_copy_([state[\"{name}\"] for state in states], "
                    f"list({n['scalars_out']}[{j}].unbind(0)))")
            if name in self.L.host_states:  # computed by the kernels only with capturable
                self.out += ['if group["capturable"]:', "    " + copy]
            else:
                self.out.append(copy)
        return self.out

    # --- host values ---------------------------------------------------------------------
    def _scalar_args(self) -> list[str]:
        args: list[str] = []
        for k in self.kernels:
            for p in k.params:
                if p not in args and self._is_host_arg(p):
                    args.append(p)
        return args

    def _is_host_arg(self, name: str) -> bool:
        names = {h.name for h in self.rule.hypers} | {r.name for r in self.rule.reductions}
        return name == "t" or name in names or name in dict(self.rule.host)

    def _host_values(self) -> None:
        n = self.n
        rule = self.rule
        args = self._scalar_args()
        reductions = [r.name for r in rule.reductions]
        if reductions:
            self.out.append(f"{', '.join(reductions)}{',' if len(reductions) == 1 else ''} = reduced")
        self.out.append('if group["capturable"]:')
        values = ", ".join([self._device_value(h) for h in rule.hypers] + reductions)
        hyper_values = f"_device_values([{values}], {n['device']})" if values else f"{n['tables']}.meta"
        self.out.append(f"    {n['hyper_values']} = {hyper_values}")
        self.out.append(f"    {n['shape_values']} = {n['tables']}.meta  # unused: the kernels compute shape values")
        if args:
            self.out.append(f"    {' = '.join(args)} = 0.0  # computed in the kernels from device values")
        self.out.append("else:")
        body = self._hyper_lines()
        printer = PyPrinter(rule, helpers=self.helpers)
        body += [f"{name} = {printer.expr(node)}" for name, node in rule.host if node.kind == Kind.GROUP]
        body.append(f"{n['hyper_values']} = {n['tables']}.meta  # unused without capturable")
        body += self._shape_table(printer)
        self.out += ["    " + line for line in body]

    def _device_value(self, h) -> str:
        betas = beta_names(self.rule)
        ref = f'group["betas"][{betas.index(h.name)}]' if h.name in betas else f'group["{h.name}"]'
        if h.type == "choice":
            options = ", ".join(f'"{c}"' for c in h.choices)
            return f"({options}{',' if len(h.choices) == 1 else ''}).index({ref})"
        return f"float({ref})" if h.type == "bool" else ref

    def _hyper_lines(self) -> list[str]:
        rule = self.rule
        roots = [v for _, v in rule.host] + [v for _, v in rule.outputs]
        used = {x.name for x in postorder(roots) if x.op == "input" and x.attr[0] == HYPER}
        betas = beta_names(rule)
        lines = []
        if any(b in used for b in betas):
            lines.append(f'{", ".join(betas)}{"," if len(betas) == 1 else ""} = (float(b) for b in group["betas"])')
        for h in rule.hypers:
            if h.name in used and h.name not in betas:
                ref = f'group["{h.name}"]'
                lines.append(f"{h.name} = {ref}" if h.type == "choice" else f"{h.name} = float({ref})")
        return lines

    def _shape_table(self, printer: PyPrinter) -> list[str]:
        """Per-tensor host values (and host scalar states, updated here as the torch code does)."""
        n = self.n
        shape_host = [(name, node) for name, node in self.rule.host if node.kind == Kind.SHAPE]
        if not self.L.shape_columns:
            return [f"{n['shape_values']} = {n['tables']}.meta  # unused: no shape values"]
        used = {x.op for _, v in shape_host for x in postorder([v]) if x.op in GROUPS["shape"]}
        lines = [f"{n['shape_rows']} = []", "for p, state in zip(params, states):"]
        lines += [f'    {s} = state["{s}"].item()' for s in self.L.host_states]
        lines += ["    " + line for line in _shape_lines(used)]
        lines += ["    " + line for line in host_state_lines(self.rule, shape_host, printer)]
        columns = ", ".join(f"float({name})" for name in self.L.shape_columns)
        lines.append(f"    {n['shape_rows']}.append(({columns},))")
        lines.append(
            f"{n['shape_values']} = torch.tensor({n['shape_rows']}, dtype=torch.float32).T.contiguous().to({n['device']})"
        )
        return lines

    # --- buffers ------------------------------------------------------------------------------
    def _buffers(self) -> None:
        n = self.n
        plan = self.plan
        f32 = f"dtype=torch.float32, device={n['device']}"
        if plan.reduce_nodes:
            self.out.append(f"{n['partials']} = torch.zeros(({len(plan.reduce_nodes)}, {n['tables']}.n), {f32})")
            for r in plan.reduce_nodes:
                if r.op in ("amax", "amin"):
                    fill = "-math.inf" if r.op == "amax" else "math.inf"
                    self.out.append(f"{n['partials']}[{plan.reduce_row[id(r)]}].fill_({fill})")
        if plan.scratch_row:
            self.out.append(f"{n['scratch']} = torch.empty(({len(plan.scratch_row)}, {n['tables']}.total), {f32})")
        if self.L.scalar_outputs:
            self.out.append(f"{n['scalars_out']} = torch.empty(({len(self.L.scalar_outputs)}, {n['tables']}.n), {f32})")
        states = [s.name for s in self.rule.states if s.shape != "scalar" and s.when is None]
        state_dtype = f'states[0]["{states[0]}"].dtype' if states else "self._state_dtype(group, params[0])"
        self.constexprs = {
            "P_DTYPE": "_TL_DTYPES[params[0].dtype]",
            "S_DTYPE": f"_TL_DTYPES[{state_dtype}]",
            "CAPTURABLE": 'bool(group["capturable"])',
            "STOCHASTIC_ROUNDING": 'bool(group["stochastic_rounding"])',
            "ALIGNED": f"{n['tables']}.aligned",
            "BLOCK": "_BLOCK",
            "CHUNK": "_CHUNK",
        }

    # --- launches and torch ops -------------------------------------------------------------
    def _argument(self, param: str) -> str:
        n = self.n
        name = param.split(":")[0]
        tables = n["tables"]
        by_role = {n["ptrs"]: f"{tables}.ptrs", n["chunks"]: f"{tables}.chunks", n["meta"]: f"{tables}.meta",
                   n["n_tensors"]: f"{tables}.n", n["total"]: f"{tables}.total"}
        if name in self.constexprs:
            return f"{name}={self.constexprs[name]}"
        return f"{name}={by_role.get(name, name)}"

    def _launch(self, kernel: Kernel) -> None:
        grid = f"({self.n['tables']}.n,)" if kernel.per_tensor else f"({self.n['tables']}.n_chunks,)"
        self.out.append(f"{kernel.name}[{grid}](")
        args = [self._argument(p) for p in kernel.params]
        line = ""
        for a in args:
            if line and len(line) + len(a) > 90:
                self.out.append("    " + line.rstrip())
                line = ""
            line += a + ", "
        self.out.append("    " + line.rstrip().rstrip(","))
        self.out.append(")")

    def _torch_ops(self, ops: list[Node]) -> None:
        """Axis and channel reductions and matrix ops, one tensor at a time, into scratch rows the kernels
        read; each only for the tensors whose branch needs it (its guard: ``ir.guards``)."""
        n = self.n
        tables = n["tables"]
        self.out.append(f"for {n['index']}, ({n['param']}, {n['state']}) in enumerate(zip(params, states)):")
        body = [f"{n['lo']}, {n['hi']} = {tables}.bounds[{n['index']}]", f"{n['shape']} = {n['param']}.shape"]
        values: dict[int, str] = {}
        for op in ops:
            args = [values.get(id(a)) or (self._host_arg(a) if a.kind <= Kind.SHAPE else self._torch_arg(a))
                    for a in op.args]
            var = fresh(op.hint or "x", self.taken)
            values[id(op)] = var
            lines = [f"{var} = {REDUCE[op.op].format(*args)}"]
            if id(op) in self.plan.scratch_row:
                lines.append(f"{self._scratch_view(op)}.copy_(torch.broadcast_to({var}, {n['shape']}))")
            guard = self.guards[op]
            if guard != G.TRUE:
                lines = [f"if {G.condition_text(guard, self.guards, self._launch_condition)}:"] + ["    " + x for x in lines]
            body += lines
        self.out += ["    " + line for line in body]

    @property
    def guards(self) -> G.Guards:
        if self._guards is None:
            self._guards = G.compute([(n, G.TRUE) for _, n in self.rule.outputs], dict(self.rule.host))
        return self._guards

    def _launch_printer(self) -> PyPrinter:
        """Host expressions in the launch loop: hypers read from the group (with capturable the host
        values are computed in the kernels, not here), shape scalars from the parameter."""
        n = self.n
        betas = beta_names(self.rule)

        def leaf(node: Node) -> str | None:
            if node.op in GROUPS["shape"]:
                return f"_shape_scalar({n['param']}, {GROUPS['shape'].index(node.op)})"
            if node.op == "input" and node.attr[0] == HYPER:
                h = self.rule.hyper(node.name)
                ref = f'group["betas"][{betas.index(h.name)}]' if h.name in betas else f'group["{h.name}"]'
                return ref if h.type == "choice" else f"float({ref})"
            return None

        self.helpers.add("_shape_scalar")
        return PyPrinter(self.rule, helpers=self.helpers, leaf=leaf)

    def _launch_condition(self, node: Node) -> str:
        return self._launch_printer().condition(inline_host(node, dict(self.rule.host)))

    def _host_arg(self, node: Node) -> str:
        return self._launch_printer().expr(inline_host(node, dict(self.rule.host)))

    def _commits(self) -> None:
        """Row and column states: their new values, stored broadcast in scratch by the kernels, are
        copied into the states (one value per row: the first column; per column: the first row)."""
        n = self.n
        self.out.append(f"for {n['index']}, ({n['param']}, {n['state']}) in enumerate(zip(params, states)):")
        body = [f"{n['lo']}, {n['hi']} = {self.n['tables']}.bounds[{n['index']}]", f"{n['shape']} = {n['param']}.shape"]
        for name, node in self.plan.commits:
            index = "[..., :1]" if self.rule.state(name).shape == "row" else "[..., :1, :]"
            line = f'{n["state"]}["{name}"].copy_({self._scratch_view(node)}{index})'
            if self.rule.state(name).when is not None:
                body += [f'if "{name}" in {n["state"]}:', "    " + line]
            else:
                body.append(line)
        self.out += ["    " + line for line in body]

    def _scratch_view(self, node: Node) -> str:
        n = self.n
        return f"{n['scratch']}[{self.plan.scratch_row[id(node)]}, {n['lo']}:{n['hi']}].view({n['shape']})"

    def _torch_arg(self, node: Node) -> str:
        n = self.n
        if in_kernel(node):
            return self._scratch_view(node)
        if is_torch_op(node):  # computed before an earlier kernel: read back from scratch
            return self._scratch_view(node)
        if node.name == "p":
            return f"{n['param']}.float()"
        if node.name == "g":
            return f"(grads[{n['index']}].float() * {n['g_sign']})"
        return f'{n["state"]}["{node.name}"].float()'
