"""IR -> the Triton kernels of one rule: one fused kernel per launch of the plan.

Every kernel is a multi-tensor kernel: program ``i`` reads which tensor and
which chunk of it to work on from a chunk table, and the tensors' addresses
from a pointer table (an int64 tensor of ``data_ptr()`` values, one row per
buffer: ``p``, ``g``, each state, the step). A kernel body has three parts:

* host values (``c0 = lr / (1 - beta1^t)``): runtime arguments, or with
  ``CAPTURABLE`` computed in the kernel from the hyperparameter vector and the
  step read from the device;
* per-tensor scalars: reductions finished by earlier kernels, scalar states;
* the element loop: the schedule's statements (``ir.schedule``), in order,
  with partial sums and scratch stores placed where their argument is known.

Per-element statements reassign the buffer names exactly as the schedule
orders them (``m = ...`` after the last read of the old ``m``), so a kernel
reads like the rule printed by ``optdsl explain``.
"""

from __future__ import annotations

from ..ir.nodes import GRAD, PARAM, STATE, Node, postorder
from ..ir.ops import Kind
from ..ir.schedule import Schedule
from .triton_layout import META_COLUMN, META_WIDTH, SHAPE_LEAVES, Kernel, Layout, fresh
from .triton_plan import REDUCE_OPS, KernelPlan, Plan, is_torch_op
from .triton_printer import TritonPrinter

# how the total of a reduction's partial sums becomes its value
FINISH = {"sum": "{0}", "mean": "{0} / numel", "norm": "tl.sqrt({0})", "rms": "tl.sqrt({0} / numel)",
          "dot": "{0}", "amax": "{0}", "amin": "{0}"}


class KernelEmitter:
    """Writes one kernel of the plan: header, host values, per-tensor scalars, element loop."""

    def __init__(self, layout: Layout, sched: Schedule, plan: Plan, kp: KernelPlan, name: str, doc: str):
        """``doc`` is the kernel's docstring as a literal, indented."""
        self.L = layout
        self.rule = layout.rule
        self.sched = sched
        self.plan = plan
        self.kp = kp
        self.name = name
        self.doc = doc
        self.n = layout.names
        self.taken = set(layout.taken) | set(sched.names.values())
        self.names: dict[int, str] = {}  # node -> the variable holding it, for the printer
        self.printer = TritonPrinter(self.rule, names=self.names, leaf=self._leaf)
        self.loads: set[str] = set()  # tensor buffers the loop reads
        self.scalar_loads: set[str] = set()  # scalar states read
        self.host_used: set[str] = set()  # hypers, host values and t read directly
        self.shapes_used: set[str] = set()  # numel, rows, cols, ndim
        self.scratch_loads: dict[int, str] = {}  # torch-op result -> loop variable
        self.reads_reductions = False
        self._scalar_args: list[str] = []
        self._host_closure: set[str] = set()
        self._direct_shape_host: list[str] = []
        self._capturable_hypers: list[str] = []

    # --- leaves ---------------------------------------------------------------------------
    def _leaf(self, node: Node) -> str:
        if node.op != "input":
            self.shapes_used.add(node.op)
            return node.op
        role, name = node.attr
        if role in (PARAM, GRAD) or (role == STATE and self.rule.state(name).shape != "scalar"):
            self.loads.add(name)
        elif role == STATE and name not in self.L.host_states:
            self.scalar_loads.add(name)
        else:
            self.host_used.add(name)
        return name

    def _code(self, node: Node) -> str:
        return self.names[id(node)] if id(node) in self.names else self.printer.expr(node)

    # --- the whole kernel ---------------------------------------------------------------------
    def emit(self) -> Kernel:
        self._bind_scalars()
        if self.kp.per_tensor:
            before, body, after, roots = [], [], [], []
        else:
            before, body, after, roots = self._loop()
        outputs = self._scalar_output_lines()
        prologue = self._prologue(roots + [node for _, node in self.kp.scalar_outputs])
        host = self._host_lines()
        header = self._header()
        lines = header + host + prologue + outputs + before
        if not self.kp.per_tensor:
            lines += self._loop_head() + ["    " + line for line in body]
        lines += after
        params = self._params()
        signature = "".join(f"    {p},\n" for p in params)
        text = (
            f"@triton.jit(do_not_specialize=[{', '.join(repr(p) for p in self._unspecialized(params))}])\n"
            f"def {self.name}(\n{signature}):\n{self.doc}\n"
            + "\n".join("    " + line if line else "" for line in lines) + "\n"
        )
        return Kernel(self.name, params, text, self.kp.per_tensor, self.printer.functions, self.printer.constants)

    def _unspecialized(self, params: list[str]) -> list[str]:
        """Integer arguments that change between buckets or steps: one compilation for all."""
        return [p for p in params if p in (self.n["n_tensors"], self.n["total"], self.n["seed"])]

    def _params(self) -> list[str]:
        n = self.n
        out = [n["ptrs"], n["chunks"], n["meta"], n["n_tensors"]]
        if self.kp.reduces or self.reads_reductions:
            out.append(n["partials"])
        if self.scratch_loads or self.kp.scratch:
            out += [n["scratch"], n["total"]]
        if self.kp.scalar_outputs:
            out.append(n["scalars_out"])
        if self._direct_shape_host:
            out.append(n["shape_values"])
        if self._capturable_hypers:
            out.append(n["hyper_values"])
        if "g" in self.loads:
            out.append(n["g_sign"])
        if self.kp.writes:
            out.append(n["seed"])
        out += self._scalar_args
        if self._uses_p_dtype:
            out.append("P_DTYPE")
        reads_states = any(s in self.loads or s in self._host_closure
                           for s in self.L.tensor_states() + self.L.reduced_states() + self.L.host_states)
        if reads_states or self.kp.writes:
            out.append("S_DTYPE")
        if self._host_closure:
            out.append("CAPTURABLE")
        if self.kp.writes:
            out.append("STOCHASTIC_ROUNDING")
        if not self.kp.per_tensor:
            out += ["ALIGNED", "BLOCK", "CHUNK"]
        return [p + ": tl.constexpr" if p.isupper() else p for p in out]

    def _header(self) -> list[str]:
        n = self.n
        lines = []
        if self.kp.per_tensor:
            lines.append(f"{n['tensor']} = tl.program_id(0)")
        else:
            lines += [
                f"{n['chunk']} = tl.program_id(0)",
                f"{n['tensor']} = tl.load({n['chunks']} + 2 * {n['chunk']})",
                # chunks start at multiples of CHUNK: with aligned buffers, loads vectorize
                f"{n['start']} = tl.multiple_of(tl.load({n['chunks']} + 2 * {n['chunk']} + 1), CHUNK)",
            ]
        meta = f"{n['meta']} + {META_WIDTH} * {n['tensor']}"
        if not self.kp.per_tensor or "numel" in self.shapes_used:
            lines.append(f"{n['size']} = tl.load({meta})")
        if not self.kp.per_tensor:
            lines.append(f"{n['end']} = tl.minimum({n['start']} + CHUNK, {n['size']})")
        if self.scratch_loads or self.kp.scratch:
            lines.append(f"{n['base']} = tl.load({meta} + {META_COLUMN['base']})")
        for shape in SHAPE_LEAVES:
            if shape not in self.shapes_used:
                continue
            source = n["size"] if shape == "numel" else f"tl.load({meta} + {META_COLUMN[shape]})"
            lines.append(f"{shape} = {source}.to(tl.float32)")
        reduced = [b for b in self.L.reduced_states() if b in self.loads]
        if reduced:
            lines.append(f"{n['cols_i']} = tl.load({meta} + {META_COLUMN['cols']})")
        if any(self.rule.state(b).shape == "col" for b in reduced):
            lines.append(f"{n['rows_i']} = tl.load({meta} + {META_COLUMN['rows']})")
        for buffer in ["p", "g"] + self.L.tensor_states() + self.L.reduced_states():
            stored = buffer in self.L.tensor_states() + ["p"] and self.kp.writes and self._writes_buffer(buffer)
            if buffer in self.loads or stored:
                dtype = "P_DTYPE" if buffer in ("p", "g") else "S_DTYPE"
                aligned = buffer not in self.L.reduced_states()
                lines.append(f"{self.L.pointers[buffer]} = {self._row_pointer(buffer, dtype, aligned=aligned)}")
                if self.L.conditional(buffer):  # a state the tensor may not have: a null address
                    lines.append(f"{self._present(buffer)} = {self._row_address(buffer)} != 0")
        for s in self.rule.states:
            if s.name in self.scalar_loads:
                lines.append(f"{s.name} = tl.load({self._row_pointer(s.name, 'tl.float32')})")
        return lines

    @property
    def _uses_p_dtype(self) -> bool:
        return "p" in self.loads or "g" in self.loads or self.kp.writes

    def _present(self, buffer: str) -> str:
        return f"{self.L.pointers[buffer]}_present"

    def _mask(self, buffer: str) -> str:
        mask = self.n["mask"]
        return f"tl.where({self._present(buffer)}, {mask}, False)" if self.L.conditional(buffer) else mask

    def _row_address(self, buffer: str) -> str:
        n = self.n
        return f"tl.load({n['ptrs']} + {self.L.rows[buffer]} * {n['n_tensors']} + {n['tensor']})"

    def _element_index(self, buffer: str) -> str:
        """Where element ``offs`` of the parameter reads ``buffer``: itself, its row, or its column."""
        n = self.n
        shape = self.rule.state(buffer).shape if buffer not in ("p", "g") else "tensor"
        if shape == "row":
            return f"{n['offs']} // {n['cols_i']}"
        if shape == "col":
            return f"({n['offs']} // ({n['rows_i']} * {n['cols_i']})) * {n['cols_i']} + {n['offs']} % {n['cols_i']}"
        return n["offs"]

    def _row_pointer(self, buffer: str, dtype: str, aligned: bool = False) -> str:
        """The address of ``buffer`` for this program's tensor; ``aligned``: 16-byte aligned when ALIGNED
        (every address of the bucket is, checked on the host), so loads and stores can be vectorized."""
        n = self.n
        row = self.L.rows[buffer]
        address = f"tl.load({n['ptrs']} + {row} * {n['n_tensors']} + {n['tensor']})"
        if aligned:
            address = f"tl.multiple_of({address}, 16 if ALIGNED else 1)"
        return f"{address}.to(tl.pointer_type({dtype}))"

    def _writes_buffer(self, name: str) -> bool:
        node = self.rule.output(name)
        return node is not None and not (node.op == "input" and node.name == name)

    def _loop_head(self) -> list[str]:
        n = self.n
        lines = [
            f"for {n['block']} in range({n['start']}, {n['end']}, BLOCK):",
            f"    {n['offs']} = {n['block']} + tl.arange(0, BLOCK)",
            f"    {n['mask']} = {n['offs']} < {n['end']}",
        ]
        for buffer in ["p", "g"] + self.L.tensor_states() + self.L.reduced_states():
            if buffer in self.loads:
                sign = f" * {n['g_sign']}" if buffer == "g" else ""
                address = f"{self.L.pointers[buffer]} + {self._element_index(buffer)}"
                other = ", other=0.0" if self.L.conditional(buffer) else ""
                load = f"tl.load({address}, mask={self._mask(buffer)}{other}).to(tl.float32)"
                lines.append(f"    {buffer} = {load}{sign}")
        for node_id, var in self.scratch_loads.items():
            row = self.plan.scratch_row[node_id]
            lines.append(f"    {var} = tl.load({self._scratch_address(row)}, mask={n['mask']})")
        return lines

    def _scratch_address(self, row: int) -> str:
        n = self.n
        return f"{n['scratch']} + {row} * {n['total']} + {n['base']} + {n['offs']}"

    # --- host values -------------------------------------------------------------------------
    def _host_lines(self) -> list[str]:
        """Host values: runtime arguments, or (CAPTURABLE) computed here from device values."""
        n = self.n
        direct = set(self.host_used) | ({"t"} if self.kp.writes else set())
        group = {name for name, v in self.rule.host if v.kind == Kind.GROUP}
        self._scalar_args = [h.name for h in self.rule.hypers if h.name in direct]
        self._scalar_args += [r.name for r in self.rule.reductions if r.name in direct]
        self._scalar_args += ["t"] if "t" in direct else []
        self._scalar_args += [name for name, _ in self.rule.host if name in direct and name in group]
        self._direct_shape_host = [name for name in self.L.shape_columns if name in direct]
        closure = set(direct)
        for name, node in reversed(self.rule.host):
            if name in closure:
                for leaf in postorder([node]):
                    if leaf.op == "input":
                        closure.add(leaf.name)
                    elif not leaf.args and leaf.op != "const":
                        self.shapes_used.add(leaf.op)
        self._host_closure = closure
        self._capturable_hypers = [h.name for h in self.rule.hypers if h.name in closure]
        self._capturable_hypers += [r.name for r in self.rule.reductions if r.name in closure]
        if not closure:
            return []
        lines = ["if CAPTURABLE:"]
        if "t" in closure:
            lines.append(f"    t = tl.load({self._row_pointer('step', 'tl.float32')})")
        for i, h in enumerate(self.rule.hypers):
            if h.name in closure:
                lines.append(f"    {h.name} = tl.load({n['hyper_values']} + {i})")
        for j, r in enumerate(self.rule.reductions):  # after the hypers in the device vector
            if r.name in closure:
                lines.append(f"    {r.name} = tl.load({n['hyper_values']} + {len(self.rule.hypers) + j})")
        for name in self.L.host_states:
            if name in closure:
                lines.append(f"    {name} = tl.load({self._row_pointer(name, 'S_DTYPE')}).to(tl.float32)")
        for name, node in self.rule.host:
            if name in closure:
                lines.append(f"    {name} = {self.printer.expr(node)}")
        if len(lines) == 1:
            lines.append("    pass")
        if self._direct_shape_host:
            lines.append("else:")
            for name in self._direct_shape_host:
                j = self.L.shape_columns.index(name)
                lines.append(f"    {name} = tl.load({n['shape_values']} + {j} * {n['n_tensors']} + {n['tensor']})")
        return lines

    # --- per-tensor scalars ------------------------------------------------------------------
    def _bind_scalars(self) -> None:
        """Names for reductions and scalar statements, computed before the element loop."""
        for st in self.sched.statements:
            if st.kind != "copy" and st.node.kind == Kind.SCALAR and st.node.op != "input":
                base = st.name if st.kind == "temp" else f"{st.name}_new"
                self.names.setdefault(id(st.node), fresh(base, self.taken))
        for r in self.plan.reduce_nodes:
            if self.plan.phase[id(r)] <= self.kp.index:
                self.names.setdefault(id(r), fresh(_reduce_name(r), self.taken))

    def _scalar_deps(self, node: Node, out: list[Node], seen: set[int], top: bool) -> None:
        """Named per-tensor scalars that printing ``node`` reads, arguments first."""
        if is_torch_op(node) or (not top and node.kind == Kind.TENSOR and id(node) in self.sched.names):
            return
        if id(node) in seen:
            return
        seen.add(id(node))
        named = node.kind == Kind.SCALAR and id(node) in self.names
        if node.op in REDUCE_OPS:
            out.append(node)
            return
        for a in node.args:
            self._scalar_deps(a, out, seen, False)
        if named:
            out.append(node)

    def _prologue(self, roots: list[Node]) -> list[str]:
        order: list[Node] = []
        seen: set[int] = set()
        for r in roots:
            self._scalar_deps(r, order, seen, True)
        lines = []
        for node in order:
            name = self.names[id(node)]
            if node.op in REDUCE_OPS:
                self.reads_reductions = True
                row = self.plan.reduce_row[id(node)]
                total = f"tl.load({self.n['partials']} + {row} * {self.n['n_tensors']} + {self.n['tensor']})"
                if node.op in ("mean", "rms"):
                    self.shapes_used.add("numel")
                lines.append(f"{name} = {FINISH[node.op].format(total)}")
            else:
                lines.append(f"{name} = {self._expr_top(node)}")
        return lines

    def _expr_top(self, node: Node) -> str:
        """The expression of a named node (not its name)."""
        name = self.names.pop(id(node), None)
        try:
            return self.printer.expr(node)
        finally:
            if name is not None:
                self.names[id(node)] = name

    def _scalar_output_lines(self) -> list[str]:
        n = self.n
        lines = []
        mask = "" if self.kp.per_tensor else f", mask={n['start']} == 0"
        host = []  # host scalar states: the host stores them, except with CAPTURABLE (host math in here)
        for name, node in self.kp.scalar_outputs:
            j = [s for s, _ in self.L.scalar_outputs].index(name)
            ptr = f"{n['scalars_out']} + {j} * {n['n_tensors']} + {n['tensor']}"
            line = f"tl.store({ptr}, {self._code(node)}{mask})"
            (host if name in self.L.host_states else lines).append(line)
        if host:
            lines += ["if CAPTURABLE:"] + ["    " + line for line in host]
        return lines

    # --- the element loop --------------------------------------------------------------------
    def _reach(self, node: Node) -> set[int]:
        """Nodes a statement evaluates itself: everything below it down to bound values."""
        out: set[int] = set()
        stack = [node]
        while stack:
            n = stack.pop()
            if id(n) in out:
                continue
            out.add(id(n))
            if n is not node and id(n) in self.sched.names:
                continue
            stack.extend(n.args)
        return out

    def _locate(self, targets: list[Node]) -> dict[int, list[Node]]:
        """The statement at which each target is evaluated: the first that reaches it."""
        at: dict[int, list[Node]] = {}
        left = list(targets)
        for i, st in enumerate(self.sched.statements):
            if st.kind == "copy" or not left:
                continue
            reach = self._reach(st.node)
            at[i] = [t for t in left if id(t) in reach]
            left = [t for t in left if id(t) not in reach]
        if left:  # pragma: no cover - every target sits under some output
            raise AssertionError("a kernel target outside every statement")
        return at

    def _tensor_deps(self, node: Node, top: bool, torch_used: set[int]) -> set[int]:
        """Tensor statements that printing ``node`` reads; torch results it reads go to ``torch_used``."""
        out: set[int] = set()
        stack = [(node, top)]
        seen: set[int] = set()
        while stack:
            n, is_top = stack.pop()
            if id(n) in seen:
                continue
            seen.add(id(n))
            if is_torch_op(n):
                torch_used.add(id(n))
                continue
            if n.kind == Kind.SCALAR:
                continue
            if not is_top and id(n) in self.sched.names:
                out.add(id(n))
                continue
            stack.extend((a, False) for a in n.args)
        return out

    def _loop(self) -> tuple[list[str], list[str], list[str], list[Node]]:
        """(before the loop, loop body, after the loop, nodes whose scalars the body reads)."""
        kp = self.kp
        statements = self.sched.statements
        targets = list(kp.reduces) + list(kp.scratch)
        at = self._locate(targets)
        torch_used: set[int] = set()
        needed: set[int] = set()
        roots: list[Node] = []
        for t in targets:
            for a in (t.args if t.op in REDUCE_OPS else (t,)):
                needed |= self._tensor_deps(a, False, torch_used)
                roots.append(a)
        emit = [False] * len(statements)
        for i in range(len(statements) - 1, -1, -1):
            st = statements[i]
            if st.kind == "copy":  # a deferred write; scalar states are written from their node
                emit[i] = kp.writes and (st.buffer == "p" or st.buffer in self.L.tensor_states())
            elif st.node.kind == Kind.TENSOR and ((kp.writes and st.kind == "write") or id(st.node) in needed):
                emit[i] = True
                needed |= self._tensor_deps(st.node, True, torch_used)
                roots.append(st.node)
        for node in postorder([st.node for st in statements if st.kind != "copy"]):
            if id(node) in torch_used:
                self.scratch_loads[id(node)] = self.names[id(node)] = fresh(node.hint or node.op, self.taken)

        before: list[str] = []
        accumulators: dict[int, str] = {}
        for r in kp.reduces:
            accumulators[id(r)] = acc = fresh("acc", self.taken)
            init = {"amax": "-_INF", "amin": "_INF"}.get(r.op, "0.0")
            if init != "0.0":
                self.printer.constants.add("_INF")
            before.append(f"{acc} = tl.full([BLOCK], {init}, tl.float32)")
        body: list[str] = []
        for i, st in enumerate(statements):
            located = at.get(i, [])
            for t in located:
                if t is not st.node:
                    body += self._target_lines(t, accumulators)
            if emit[i]:
                body += self._statement_lines(st)
            for t in located:
                if t is st.node:
                    body += self._target_lines(t, accumulators)
        if kp.writes:
            body += self._store_lines()
        after = []
        for r in kp.reduces:
            ptr = f"{self.n['partials']} + {self.plan.reduce_row[id(r)]} * {self.n['n_tensors']} + {self.n['tensor']}"
            total = {"amax": "tl.max", "amin": "tl.min"}.get(r.op, "tl.sum")
            atomic = {"amax": "tl.atomic_max", "amin": "tl.atomic_min"}.get(r.op, "tl.atomic_add")
            after.append(f"{atomic}({ptr}, {total}({accumulators[id(r)]}, axis=0))")
        return before, body, after, roots

    def _statement_lines(self, st) -> list[str]:
        if st.kind == "copy":
            return [f"{st.buffer} = {st.name}"]
        node = st.node
        if st.kind == "write" and node.op == "input" and node.name == st.name:
            return []
        value = self._code(node)
        if self.sched.names.get(id(node)) == st.name:
            self.names[id(node)] = st.name
        return [f"{st.name} = {value}"] if value != st.name else []

    def _target_lines(self, target: Node, accumulators: dict[int, str]) -> list[str]:
        mask = self.n["mask"]
        if target.op in REDUCE_OPS:
            args = [self._code(a) for a in target.args]
            if target.op in ("norm", "rms"):
                value = self.printer._call("_square", args[0]) if not _simple(args[0]) else f"{args[0]} * {args[0]}"
            elif target.op == "dot":
                value = " * ".join(a if _simple(a) else f"({a})" for a in args)
            else:
                value = args[0]
            acc = accumulators[id(target)]
            if target.op in ("amax", "amin"):
                fn, fill = ("tl.maximum", "-_INF") if target.op == "amax" else ("tl.minimum", "_INF")
                return [f"{acc} = {fn}({acc}, tl.where({mask}, {value}, {fill}))"]
            return [f"{acc} += tl.where({mask}, {value}, 0.0)"]
        row = self.plan.scratch_row[id(target)]
        return [f"tl.store({self._scratch_address(row)}, {self._code(target)}, mask={mask})"]

    def _store_lines(self) -> list[str]:
        n = self.n
        lines = []
        for name in ["p"] + self.L.tensor_states():
            if not self._writes_buffer(name):
                continue
            if name == "p":
                value = f"_store_param(p, {n['seed']}, {n['tensor']}, t, {n['offs']}, P_DTYPE, STOCHASTIC_ROUNDING)"
                self.printer.functions.add("_store_param")
            else:
                value = f"_store_value({name}, S_DTYPE)"
                self.printer.functions.add("_store_value")
            lines.append(f"tl.store({self.L.pointers[name]} + {n['offs']}, {value}, mask={self._mask(name)})")
        return lines


def _simple(code: str) -> bool:
    return code.replace("_", "").isalnum()


def _reduce_name(node: Node) -> str:
    """``norm_m`` for norm(m), ``sum_mask`` for sum(mask): the op and its arguments' names."""
    parts = [node.op]
    for a in node.args:
        label = a.name if a.op == "input" else a.hint
        if label:
            parts.append(label)
    return "_".join(parts) if len(parts) > 1 else f"{node.op}_total"
