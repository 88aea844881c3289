"""IR -> the body of a torch update: foreach over a bucket of tensors, or one tensor.

The emitter walks the schedule (``ir.schedule``) and writes each value with as
few passes over memory as torch allows:

* a state update whose old value appears once, as a term, is done in place:
  ``m = b*m + (1-b)*g`` becomes one ``lerp_``; ``v = b*v + c*g*g`` a ``mul_`` and
  an ``addcmul_``;
* further terms accumulate with ``add_(x, alpha=c)``, ``addcmul_``, ``addcdiv_``;
* a fresh temporary is reused in place while nothing else reads it.

The two dialects differ only in spelling (``torch._foreach_mul_(xs, c)`` vs
``x.mul_(c)``); :class:`Dialect` is that table of differences.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ..ir import guards as G
from ..ir.nodes import GRAD, HOST, HYPER, PARAM, STATE, Node, Rule, postorder
from ..ir.ops import GROUPS, Kind
from ..ir.extent import Extent, buffer_extent, extent, union
from ..ir.schedule import Schedule
from ..ir.intervals import Interval, fits_float16
from .pyexpr import PyPrinter

# torch functions that have a _foreach_ form (out of place and in place)
FOREACH = frozenset(
    "abs sign sqrt rsqrt exp log tanh cosh neg add sub mul div maximum minimum clamp_min clamp_max "
    "lerp addcmul addcdiv pow reciprocal".split()
)
UNARY = {"abs": "abs", "sign": "sign", "sqrt": "sqrt", "rsqrt": "rsqrt", "exp": "exp", "log": "log",
         "tanh": "tanh", "cosh": "cosh", "neg": "neg"}
COMPARE_FN = {"lt": "lt", "le": "le", "gt": "gt", "ge": "ge", "eq": "eq", "ne": "ne"}
MIRRORED = {"lt": "gt", "le": "ge", "gt": "lt", "ge": "le", "eq": "eq", "ne": "ne"}  # a < b == b > a
REDUCE = {
    "sum": "{0}.sum()",
    "mean": "{0}.mean()",
    "norm": "torch.linalg.vector_norm({0})",
    "rms": "torch.linalg.vector_norm({0}) / math.sqrt({0}.numel())",
    "amax": "{0}.amax()",
    "amin": "{0}.amin()",
    "dot": "torch.dot({0}.reshape(-1), {1}.reshape(-1))",
    "rowsum": "{0}.sum(-1, keepdim=True)",
    "rowmean": "{0}.mean(-1, keepdim=True)",
    "rownorm": "torch.linalg.vector_norm({0}, dim=-1, keepdim=True)",
    "rowrms": "{0}.square().mean(-1, keepdim=True).sqrt()",
    "rowmax": "{0}.amax(-1, keepdim=True)",
    "colsum": "{0}.sum(-2, keepdim=True)",
    "colmean": "{0}.mean(-2, keepdim=True)",
    "colnorm": "torch.linalg.vector_norm({0}, dim=-2, keepdim=True)",
    "colrms": "{0}.square().mean(-2, keepdim=True).sqrt()",
    "colmax": "{0}.amax(-2, keepdim=True)",
    "matmul": "{0} @ {1}",
    "transpose": "{0}.mT.clone()",
    "chansum": "_per_channel(_channels({0}).sum(1), {0})",
    "chanmean": "_per_channel(_channels({0}).mean(1), {0})",
    "channorm": "_per_channel(torch.linalg.vector_norm(_channels({0}), dim=1), {0})",
    "chanrms": "_per_channel(_channels({0}).square().mean(1).sqrt(), {0})",
    "chanmax": "_per_channel(_channels({0}).amax(1), {0})",
    "newton_schulz": "_newton_schulz({0}, {1}, {2}, {3}, {4}, {5})",
}
# module helpers each REDUCE template needs (backends/pyexpr.HELPERS)
REDUCE_HELPERS = {
    **{f"chan{r}": ("_channels", "_per_channel") for r in ("sum", "mean", "norm", "rms", "max")},
    "newton_schulz": ("_newton_schulz",),
}


def needs_per_tensor(rule: Rule) -> bool:
    """Whether the rule can only run one tensor at a time (reductions, shapes, matrices, scalars)."""
    from ..ir.nodes import postorder

    per_tensor_groups = (set(GROUPS["reduce"]) | set(GROUPS["axis_reduce"]) | set(GROUPS["chan_reduce"])
                         | set(GROUPS["matrix"]) | set(GROUPS["shape"]))
    roots = [n for _, n in rule.host] + [n for _, n in rule.outputs] + [s.init for s in rule.states]
    for node in postorder(roots):
        if node.op in per_tensor_groups or node.kind in (Kind.SHAPE, Kind.SCALAR):
            return True
    return any(s.shape != "tensor" or s.when is not None for s in rule.states)


@dataclass
class Val:
    """A value in generated code: a variable or expression, a tensor (list) or a scalar."""

    code: str
    owned: bool = False  # a fresh tensor nothing else reads: may be updated in place
    stable: bool = True  # not a buffer that a later write overwrites
    is_bool: bool = False  # an unconverted comparison result
    host: bool = False  # a Python number (usable as alpha= / value=)


class Dialect:
    """Spelling of tensor operations: per tensor (``x.mul_(c)``) or foreach (lists)."""

    def __init__(self, foreach: bool):
        self.foreach = foreach

    def call(self, fn: str, *args: str, **kw: str) -> str:
        inner = ", ".join([*args, *(f"{k}={v}" for k, v in kw.items())])
        if self.foreach:
            if fn in FOREACH:
                return f"torch._foreach_{fn}({inner})"
            raise AssertionError(f"no foreach form of {fn}")
        return f"torch.{fn}({inner})"

    def inplace(self, fn: str, target: str, *args: str, **kw: str) -> str:
        inner = ", ".join([*args, *(f"{k}={v}" for k, v in kw.items())])
        if self.foreach:
            return f"torch._foreach_{fn}_({target}{', ' + inner if inner else ''})"
        return f"{target}.{fn}_({inner})"

    def each(self, template: str, tensors: list[str], scalars: dict[str, str] | None = None) -> str:
        """An expression applying ``template`` ({0}, {1}, ...) to each tensor of the lists."""
        if not self.foreach:
            return template.format(*tensors, **(scalars or {}))
        names = [f"_{chr(ord('a') + i)}" for i in range(len(tensors))]
        body = template.format(*names, **(scalars or {}))
        if len(tensors) == 1:
            return f"[{body} for {names[0]} in {tensors[0]}]"
        return f"[{body} for {', '.join(names)} in zip({', '.join(tensors)})]"

    def copy(self, dst: str, src: str) -> str:
        return f"_copy_each({dst}, {src})" if self.foreach else f"{dst}.copy_({src})"

    def clone(self, src: str) -> str:
        return f"torch._foreach_mul({src}, 1.0)" if self.foreach else f"{src}.clone()"


@dataclass
class Term:
    sign: int
    coef: Node | None  # a host or per-tensor-scalar factor (None: 1)
    num: list[Node]
    den: list[Node]


class TorchEmitter:
    """Writes the per-element statements of one rule in one dialect."""

    def __init__(self, rule: Rule, sched: Schedule, foreach: bool, taken: set[str], indent: str):
        self.rule = rule
        self.sched = sched
        self.d = Dialect(foreach)
        self.lines: list[str] = []
        self.indent = indent
        self.taken = taken
        self.bound: dict[int, str] = {}
        self.host_defs = dict(rule.host)
        self.host_printer = PyPrinter(rule, leaf=self._leaf)
        self.scalar_printer = PyPrinter(rule, names=self.bound, device=True, leaf=self._scalar_leaf,
                                        helpers=self.host_printer.helpers)
        self.written: set[str] = set()
        self._spans: dict[int, Extent] = {}
        self.guards = G.compute([(n, G.TRUE) for _, n in rule.outputs], dict(rule.host))

    def spans(self, node: Node) -> Extent:
        """Whether ``node``'s value spans the parameter's last dim, its second-to-last dim, and its
        rank (``ir.extent``). Axis reductions keep a dimension of size 1, per-tensor scalars are
        0-d: an in-place update of such a value by a larger operand would need to grow it, which
        torch refuses, so the emitter updates in place only when the result spans no more than
        the value itself."""
        return extent(node, self.rule, self._spans)

    def buffer_spans(self, name: str) -> Extent:
        """What a buffer spans: p and tensor states all of p's dimensions, row states all but
        the last, column states all but the second-to-last."""
        return buffer_extent(self.rule, name)

    def term_spans(self, t: Term) -> tuple[bool, bool, bool]:
        return _union(*(self.spans(n) for n in t.num + t.den))

    def combine(self, fn: str, acc: str, acc_spans, other: str, other_spans) -> tuple[str, tuple]:
        """``acc = fn(acc, other)``: in place, unless the result must be larger than ``acc``."""
        grown = _union(acc_spans, other_spans)
        if grown == acc_spans:
            self.line(self.d.inplace(fn, acc, other))
            return acc, acc_spans
        return self.assign(self.d.call(fn, acc, other)), grown

    # plumbing
    def line(self, text: str) -> None:
        self.lines.append(self.indent + text)

    def fresh(self, base: str = "x") -> str:
        i = 0
        while f"{base}{i}" in self.taken:
            i += 1
        name = f"{base}{i}"
        self.taken.add(name)
        return name

    def assign(self, expr: str, base: str = "x") -> str:
        name = self.fresh(base)
        self.line(f"{name} = {expr}")
        return name

    def _leaf(self, node: Node) -> str | None:
        if node.op == "input":
            return node.name
        return node.op  # shape scalars: numel, rows, cols, ndim are locals of the loop

    def _scalar_leaf(self, node: Node) -> str | None:
        return self._leaf(node)

    # statements
    def emit(self) -> list[str]:
        for st in self.sched.statements:
            if st.kind == "temp":
                guard = self.guards[st.node]
                if guard != G.TRUE:  # a value only some branches read: computed where they run
                    self.line(f"if {self.guard_condition(guard)}:")
                    self.indent += "    "
                start = len(self.lines)
                created = set(self.taken)
                v = self.value(st.node, top=True)
                if v.is_bool:
                    v = self.numeric(v)
                if not v.stable:
                    v = Val(self.assign(self.d.clone(v.code), st.name), owned=True)
                if v.owned and v.code not in created and re.fullmatch(r"[a-z]+\d+", v.code):
                    self._rename(start, v.code, st.name)  # the fresh temporary takes the value's name
                elif v.code != st.name:
                    self.line(f"{st.name} = {v.code}")
                if guard != G.TRUE:
                    self.indent = self.indent[:-4]
                self.taken.add(st.name)
                self.bound[id(st.node)] = st.name
            elif st.kind == "write":
                holder = self.write(st.name, st.node)
                if self.sched.names.get(id(st.node)) == st.name:
                    self.bound[id(st.node)] = holder or st.name
            else:  # copy
                self.line(self.d.copy(st.buffer, st.name))
        return self.lines

    def guard_condition(self, guard) -> str:
        return G.condition_text(guard, self.guards, self.host_condition)

    def _rename(self, start: int, old: str, new: str) -> None:
        pattern = re.compile(rf"\b{re.escape(old)}\b")
        self.lines[start:] = [pattern.sub(new, line) for line in self.lines[start:]]

    def is_scalar_state(self, name: str) -> bool:
        return name != "p" and self.rule.state(name).shape == "scalar"

    def write(self, buffer: str, node: Node) -> str | None:
        """Make ``buffer`` hold ``node``'s value, in place when the graph allows it.

        Returns the variable that holds the value itself when the buffer holds it
        broadcast (an axis reduction or a scalar written to ``p`` or a tensor state):
        later reads of the value, ``sum(m)`` say, must not see the broadcast copy.
        """
        if buffer != "p" and self.is_scalar_state(buffer):
            if self.rule.state(buffer).on_host:
                return None  # host scalar states are stored with the host values (torch_backend.host_state_lines)
            v = self.value(node, top=True)
            self.line(f"{buffer}.copy_({v.code})")
            return None
        if self._is_old(node, buffer):
            return None  # the buffer keeps its value (a state that does not exist here may be absent)
        partial = self.spans(node) != self.buffer_spans(buffer)
        if id(node) in self.bound:
            self.line(self.d.copy(buffer, self.bound[id(node)]))
            return self.bound[id(node)] if partial else None
        if node.op == "where" and node.args[0].kind <= Kind.SHAPE and not partial:
            self.line(f"if {self.host_condition(node.args[0])}:")
            self._nested(lambda: self.write(buffer, node.args[1]))
            self.line("else:")
            self._nested(lambda: self.write(buffer, node.args[2]))
            return None
        if self._write_in_place(buffer, node):
            return None
        v = self.value(node, top=True)
        v = self.numeric(v)
        if v.host:
            if self.d.foreach:
                self.line(f"for _x in {buffer}:")
                self.line(f"    _x.fill_({v.code})")
            else:
                self.line(f"{buffer}.fill_({v.code})")
            return None
        if partial and not _is_simple(v.code):
            v = Val(self.assign(v.code))
        self.line(self.d.copy(buffer, v.code))
        return v.code if partial else None

    def _nested(self, fn) -> None:
        saved = self.indent
        self.indent += "    "
        before = len(self.lines)
        bound = dict(self.bound)
        fn()
        if len(self.lines) == before:
            self.line("pass")
        self.bound.clear()
        self.bound.update(bound)
        self.indent = saved

    def _occurrences(self, node: Node, buffer: str) -> int:
        """How many times the old value of ``buffer`` is read in ``node`` (stopping at bound values)."""
        count = 0
        stack = [node]
        while stack:
            n = stack.pop()
            if id(n) in self.bound and n is not node:
                continue
            if n.op == "input" and n.role in (PARAM, STATE) and n.name == buffer:
                count += 1
            stack.extend(n.args)
        return count

    def _is_old(self, node: Node, buffer: str) -> bool:
        return node.op == "input" and node.role in (PARAM, STATE) and node.name == buffer

    def _write_in_place(self, buffer: str, node: Node) -> bool:
        if self._occurrences(node, buffer) != 1:
            return False
        if node.op == "lerp" and self._is_old(node.args[0], buffer) and node.args[2].kind <= Kind.SCALAR:
            end = self.tensor(node.args[1])
            self.line(self.d.inplace("lerp", buffer, end.code, self.coef_code(node.args[2])))
            return True
        if node.op in ("max", "min") and any(self._is_old(a, buffer) for a in node.args):
            other = node.args[1] if self._is_old(node.args[0], buffer) else node.args[0]
            if other.kind <= Kind.SHAPE:
                fn = "clamp_min" if node.op == "max" else "clamp_max"
                self.line(self.d.inplace(fn, buffer, self.host_code(other)))
            else:
                fn = "maximum" if node.op == "max" else "minimum"
                o = self.tensor(other)
                if self.d.foreach:
                    self.line(self.d.inplace(fn, buffer, o.code))
                else:
                    self.line(f"torch.{fn}({buffer}, {o.code}, out={buffer})")
            return True
        terms = self.terms(node)
        base = next(
            (i for i, t in enumerate(terms) if len(t.num) == 1 and not t.den and self._is_old(t.num[0], buffer)),
            None,
        )
        if base is None:
            return False
        base_term = terms.pop(base)
        if self._try_lerp(buffer, base_term, terms):
            return True
        self.multiply_by_coef(buffer, base_term)
        for t in terms:
            self.accumulate(buffer, t)
        return True

    # sums and products
    def terms(self, node: Node) -> list[Term]:
        whole: list[Term] = []
        self._sum_terms(node, 1, whole, True, None)  # without distribution: the sum's own terms
        alone = {id(t.num[0]) for t in whole if len(t.num) == 1 and not t.den}
        out: list[Term] = []
        self._sum_terms(node, 1, out, True, alone)
        return out

    def _sum_terms(self, node: Node, sign: int, out: list[Term], top: bool, alone: set[int] | None) -> None:
        """Flatten a sum into ``out``; ``alone`` (None: never distribute) as in _distributable."""
        through = top or id(node) not in self.bound
        if through and node.op in ("add", "sub") and node.kind >= Kind.SCALAR:
            self._sum_terms(node.args[0], sign, out, False, alone)
            self._sum_terms(node.args[1], sign if node.op == "add" else -sign, out, False, alone)
        elif through and node.op == "neg" and node.kind >= Kind.SCALAR:
            self._sum_terms(node.args[0], -sign, out, False, alone)
        else:
            term = self.product(node, sign, top)
            inner = self._distributable(term, alone) if alone is not None else None
            out.extend(inner if inner is not None else [term])

    def _distributable(self, term: Term, alone: set[int]) -> list[Term] | None:
        """``c * (a + b) / d`` as ``c*a/d + c*b/d`` when c is a host number and every
        piece then accumulates with one fused op (add_, addcmul_, addcdiv_) instead of
        materializing the sum first; ``d`` is computed once.

        Not when a piece is a multiple of a tensor that is itself a term of the outer sum
        (``alone``), as the decay in ``p - lr * (wd * p + u)``: split off, that piece is a
        nearly constant increment of its own, and rounding it alone every step drifts the
        same way step after step; formed inside the sum first, as the references do, its
        rounding is noise. Nor when the pieces do not all span the full tensor."""
        if len(term.num) != 1 or len(term.den) > 1 or not self._host_coef(term):
            return None
        (inner,) = term.num
        if id(inner) in self.bound or inner.kind != Kind.TENSOR or inner.op not in ("add", "sub"):
            return None
        sub: list[Term] = []
        self._sum_terms(inner, term.sign, sub, True, alone)
        if not all(self._host_coef(t) and not t.den and len(t.num) <= (1 if term.den else 2) for t in sub):
            return None
        if any(len(t.num) == 1 and id(t.num[0]) in alone for t in sub):
            return None
        if term.den and not any(t.num for t in sub):
            return None
        if any(self.spans(n) != (True, True, True) for t in sub for n in t.num + term.den):
            return None
        if term.den:
            (den,) = term.den
            if id(den) not in self.bound:
                self.bound[id(den)] = self.tensor(den).code
        for t in sub:
            t.coef = term.coef if t.coef is None else (t.coef if term.coef is None else _times(term.coef, t.coef))
            t.den = list(term.den)
        return sub

    def product(self, node: Node, sign: int = 1, top: bool = True) -> Term:
        """``node`` as sign * coef * prod(num) / prod(den); a bound value is one factor unless ``top``."""
        term = Term(sign, None, [], [])
        self._product_factors(node, term, False, top)
        return term

    def _product_factors(self, node: Node, term: Term, inverted: bool, top: bool) -> None:
        through = (top or id(node) not in self.bound) and node.kind >= Kind.TENSOR
        if through and _is_square(node):
            base = node.args[0]
            (term.den if inverted else term.num).extend([base, base])
        elif through and node.op == "mul":
            for a in node.args:
                self._product_factors(a, term, inverted, False)
        elif through and node.op == "div":
            self._product_factors(node.args[0], term, inverted, False)
            self._product_factors(node.args[1], term, not inverted, False)
        elif through and node.op == "neg":
            term.sign = -term.sign
            self._product_factors(node.args[0], term, inverted, False)
        elif node.kind <= Kind.SCALAR:
            # host numbers and per-tensor scalars fold into one coefficient: one multiply per element
            factor = _reciprocal(node) if inverted else node
            term.coef = factor if term.coef is None else _times(term.coef, factor)
        else:
            (term.den if inverted else term.num).append(node)

    def coef_code(self, node: Node | None, sign: int = 1) -> str:
        if node is None:
            return "1.0" if sign > 0 else "-1.0"
        code = self.host_code(node) if node.kind <= Kind.SHAPE else self.scalar(node)
        if sign < 0:
            return f"-{code}" if _is_simple(code) else f"-({code})"
        return code

    def _host_coef(self, term: Term) -> bool:
        return term.coef is None or term.coef.kind <= Kind.SHAPE

    def multiply_by_coef(self, buffer: str, term: Term) -> None:
        if term.coef is None and term.sign > 0:
            return
        if term.coef is None:
            self.line(self.d.inplace("neg", buffer))
            return
        self.line(self.d.inplace("mul", buffer, self.coef_code(term.coef, term.sign)))

    def _try_lerp(self, buffer: str, base: Term, rest: list[Term]) -> bool:
        if len(rest) != 1:
            return False
        other = rest[0]
        if len(other.num) != 1 or other.den or base.sign < 0 or other.sign < 0:
            return False
        if not (self._host_coef(base) and self._host_coef(other)):
            return False
        if not _sum_to_one(base.coef, other.coef, self.host_defs):
            return False
        end = self.tensor(other.num[0])
        self.line(self.d.inplace("lerp", buffer, end.code, self.coef_code(other.coef)))
        return True

    def accumulate(self, acc: str, t: Term) -> None:
        """acc += t, in one fused op where torch has one."""
        if not t.num and not t.den:
            if t.coef is None:
                self.line(self.d.inplace("add", acc, "1.0" if t.sign > 0 else "-1.0"))
            elif self._host_coef(t):
                self.line(self.d.inplace("add", acc, self.coef_code(t.coef, t.sign)))
            else:
                self.line(self.d.inplace("add", acc, self.scalar(t.coef)) if t.sign > 0 else self.d.inplace("sub", acc, self.scalar(t.coef)))
            return
        if self._host_coef(t):
            alpha = self.coef_code(t.coef, t.sign)
            if len(t.num) == 1 and not t.den:
                x = self.tensor(t.num[0])
                if alpha == "1.0":
                    self.line(self.d.inplace("add", acc, x.code))
                elif alpha == "-1.0":
                    self.line(self.d.inplace("sub", acc, x.code))
                else:
                    self.line(self.d.inplace("add", acc, x.code, alpha=alpha))
                return
            if len(t.num) == 2 and not t.den:
                x = self.tensor(t.num[0])
                y = x if t.num[1] is t.num[0] else self.tensor(t.num[1])
                self.line(self.d.inplace("addcmul", acc, x.code, y.code, **_value(alpha)))
                return
            if len(t.num) == 1 and len(t.den) == 1:
                x, y = self.tensor(t.num[0]), self.tensor(t.den[0])
                self.line(self.d.inplace("addcdiv", acc, x.code, y.code, **_value(alpha)))
                return
        v = self.materialize(t)
        self.line(self.d.inplace("add", acc, v.code))

    def materialize(self, t: Term) -> Val:
        """A fresh tensor holding the term's value (sign and coefficient included)."""
        value_of = self._term_values(t)
        nums = [(value_of(n), self.spans(n)) for n in t.num]
        dens = list(t.den)
        coef = t.coef
        sign = t.sign
        if not nums:
            den = dens.pop(0)
            acc = self.take(self.tensor(den), lambda src: self.d.call("reciprocal", src), "reciprocal")
            spans = self.spans(den)
        else:
            first, spans = nums.pop(0)
            if first.owned:
                acc = first.code
            elif nums:
                second, second_spans = nums.pop(0)
                joint = _union(spans, second_spans)
                if second.owned and joint == second_spans:  # a fresh tensor of the product's extent
                    self.line(self.d.inplace("mul", second.code, first.code))
                    acc = second.code
                else:
                    acc = self.assign(self.d.call("mul", first.code, second.code))
                spans = joint
            elif dens:
                den = dens.pop(0)
                divisor, den_spans = value_of(den), self.spans(den)
                joint = _union(spans, den_spans)
                if divisor.owned and joint == den_spans and not self.d.foreach:
                    self.line(f"torch.div({first.code}, {divisor.code}, out={divisor.code})")  # no new buffer
                    acc = divisor.code
                else:
                    acc = self.assign(self.d.call("div", first.code, divisor.code))
                spans = joint
            elif coef is not None and self._host_coef(t):
                acc = self.assign(self.d.call("mul", first.code, self.coef_code(coef, sign)))
                coef, sign = None, 1
            else:
                acc = self.assign(self.d.clone(first.code))
        for v, v_spans in nums:
            acc, spans = self.combine("mul", acc, spans, v.code, v_spans)
        for n in dens:
            acc, spans = self.combine("div", acc, spans, value_of(n).code, self.spans(n))
        if coef is not None:
            self.line(self.d.inplace("mul", acc, self.coef_code(coef, sign)))
        elif sign < 0:
            self.line(self.d.inplace("neg", acc))
        return Val(acc, owned=True)

    def _term_values(self, t: Term):
        """Each factor's value, computed once however often it occurs (``x^2`` is ``x * x``); a
        factor that occurs twice is not updated in place, as its second use reads it."""
        factors = [*t.num, *t.den]
        values: dict[int, Val] = {}

        def value_of(n: Node) -> Val:
            if id(n) not in values:
                v = self.tensor(n)
                repeated = sum(f is n for f in factors) > 1
                values[id(n)] = replace(v, owned=False) if repeated and v.owned else v
            return values[id(n)]

        return value_of

    def take(self, v: Val, out_of_place, fn: str, *args: str) -> str:
        """Apply ``fn`` to ``v``: in place when ``v`` is ours, else into a new variable."""
        if v.owned:
            self.line(self.d.inplace(fn, v.code, *args))
            return v.code
        return self.assign(out_of_place(v.code))

    def sum_value(self, node: Node) -> Val:
        terms = self.terms(node)
        lerp = self._lerp_of(terms)
        if lerp is not None:
            return lerp
        first = next((i for i, t in enumerate(terms) if t.num and t.sign > 0), None)
        if first is None:
            first = next(i for i, t in enumerate(terms) if t.num or t.den)
        head = terms.pop(first)
        pair = next((i for i, t in enumerate(terms) if len(t.num) == 1 and not t.den and self._host_coef(t)), None)
        if _plain(head) and pair is not None:
            x = self.tensor(head.num[0])
            if x.owned:  # a fresh tensor already: accumulate into it (computing it again would waste a pass)
                return self._add_terms(x, self.spans(head.num[0]), terms)
            other = terms.pop(pair)
            alpha = self.coef_code(other.coef, other.sign)
            y = self.tensor(other.num[0])
            kw = {} if alpha == "1.0" else {"alpha": alpha}
            base = Val(self.assign(self.d.call("add", x.code, y.code, **kw)), owned=True)
            return self._add_terms(base, _union(self.spans(head.num[0]), self.spans(other.num[0])), terms)
        return self._add_terms(self.materialize(head), self.term_spans(head), terms)

    def _add_terms(self, base: Val, spans, terms: list[Term]) -> Val:
        for t in terms:
            t_spans = self.term_spans(t)
            if _union(spans, t_spans) == spans:
                self.accumulate(base.code, t)
            else:  # the sum is larger than what it has so far (broadcasting): add out of place
                base = Val(self.assign(self.d.call("add", base.code, self.materialize(t).code)), owned=True)
                spans = _union(spans, t_spans)
        return base

    def _lerp_of(self, terms: list[Term]) -> Val | None:
        """``b*x + (1-b)*y`` as one ``torch.lerp(x, y, 1-b)``: one pass instead of two."""
        if len(terms) != 2 or not all(len(t.num) == 1 and not t.den and t.sign > 0 for t in terms):
            return None
        a, b = terms
        if not (self._host_coef(a) and self._host_coef(b)) or not _sum_to_one(a.coef, b.coef, self.host_defs):
            return None
        if any(self.spans(t.num[0]) != (True, True, True) for t in terms):
            return None
        x, y = self.tensor(a.num[0]), self.tensor(b.num[0])
        return Val(self.assign(self.d.call("lerp", x.code, y.code, self.coef_code(b.coef))), owned=True)

    # values
    def value(self, node: Node, top: bool = False) -> Val:
        if id(node) in self.bound and not top:
            return Val(self.bound[id(node)])
        if node.kind <= Kind.SHAPE:
            return Val(self.host_code(node), host=True)
        if node.op == "input":
            if node.role == GRAD:
                return Val(node.name)
            return Val(node.name, stable=False)
        if node.kind == Kind.SCALAR:
            return Val(self.scalar(node, top))
        if node.op in ("add", "sub") or (node.op == "neg" and node.args[0].op in ("add", "sub")):
            return self.sum_value(node)
        if node.op in ("mul", "div", "neg"):
            t = self.product(node)
            if len(t.num) == 1 and not t.den and t.coef is None and t.sign > 0:
                return self.tensor(t.num[0])
            return self.materialize(t)
        return self.atom(node)

    def tensor(self, node: Node) -> Val:
        """A numeric tensor value for ``node`` (comparisons converted to the compute dtype).

        A host number where a tensor is needed (``lerp(m, 0.5, w)``, a branch of
        ``where``) becomes a full tensor of that value.
        """
        v = self.numeric(self.value(node))
        if v.host:
            v = Val(self.assign(self.d.each(f"torch.full_like({{0}}, float({_braces(v.code)}))", ["p"])), owned=True)
        return v

    def numeric(self, v: Val) -> Val:
        if not v.is_bool:
            return v
        return Val(self.assign(self.d.each("{0}.to(dtype)", [v.code]), "mask"), owned=True)

    def host_code(self, node: Node) -> str:
        if node.op == "input" and node.role == HYPER and self.rule.hyper(node.name).type == "bool":
            return f"float({node.name})"  # torch takes no bool as alpha= or value=
        code = self.host_printer.expr(node)
        if any(n.op == "const" and isinstance(n.attr, float) and not fits_float16(Interval(n.attr, n.attr))
               for n in postorder([node])):
            self.host_printer.helpers.add("_fit")
            return f"_fit(dtype, {code})[0]"  # torch raises on a number out of the dtype's range
        return code

    def host_condition(self, node: Node) -> str:
        return self.host_printer.condition(node, 0)

    def scalar(self, node: Node, top: bool = False) -> str:
        """A per-tensor scalar (0-d tensor) expression; tensors it reads are emitted first."""
        if id(node) in self.bound and not top:
            return self.bound[id(node)]
        if node.kind <= Kind.SHAPE:
            return self.host_code(node)
        if node.op == "input":
            return node.name
        if node.op in REDUCE:
            args = [self.tensor(a).code for a in node.args]
            if node.op == "dot" and self.spans(node.args[0]) != self.spans(node.args[1]):
                return "({0} * {1}).sum()".format(*args)
            return REDUCE[node.op].format(*args)
        self.scalar_printer.names = {**self.bound, **{id(a): _atom(self.scalar(a)) for a in node.args}}
        return self.scalar_printer.expr(node)

    def scalar_condition(self, node: Node) -> str:
        """A per-tensor scalar (0-d) as a bool tensor, for ``torch.where``."""
        if node.op in COMPARE_FN and id(node) not in self.bound:
            self.scalar_printer.names = {**self.bound, **{id(a): _atom(self.scalar(a)) for a in node.args}}
            return self.scalar_printer.condition(node)
        return f"{self.scalar(node)} != 0"

    def atom(self, node: Node) -> Val:
        o = node.op
        a = node.args
        if o == "randn":  # state initializers only, which are emitted per tensor
            if self.d.foreach:  # pragma: no cover - the IR verifier keeps randn out of updates
                raise AssertionError("randn outside a state initializer")
            return Val(self.assign("torch.randn_like(param, dtype=dtype, memory_format=torch.preserve_format)"), owned=True)
        if o in UNARY:
            x = self.tensor(a[0])
            return Val(self.take(x, lambda src: self.d.call(UNARY[o], src), UNARY[o]), owned=True)
        if o == "square":
            x = self.tensor(a[0])
            if x.owned:
                self.line(self.d.inplace("mul", x.code, x.code))
                return x
            return Val(self.assign(self.d.call("mul", x.code, x.code)), owned=True)
        if o == "pow":
            base, exp = a
            if base.kind >= Kind.SCALAR and exp.kind <= Kind.SHAPE:
                x = self.tensor(base)
                e = self.host_code(exp)
                return Val(self.take(x, lambda src: self.d.call("pow", src, e), "pow", e), owned=True)
            return self._each(node)
        if o in ("min", "max"):
            tensors = [x for x in a if x.kind >= Kind.SCALAR]
            hosts = [x for x in a if x.kind <= Kind.SHAPE]
            if len(tensors) == 1 and hosts and tensors[0].kind == Kind.TENSOR:
                x = self.tensor(tensors[0])
                fn = "clamp_min" if o == "max" else "clamp_max"
                c = self.host_code(hosts[0])
                return Val(self.take(x, lambda src: self.d.call(fn, src, c), fn, c), owned=True)
            if all(x.kind == Kind.TENSOR for x in a):
                x, y = self.tensor(a[0]), self.tensor(a[1])
                fn = "maximum" if o == "max" else "minimum"
                return Val(self.assign(self.d.call(fn, x.code, y.code)), owned=True)
            return self._each(node)
        if o == "clamp":
            if a[0].kind == Kind.TENSOR and a[1].kind <= Kind.SHAPE and a[2].kind <= Kind.SHAPE:
                x = self.tensor(a[0])
                lo, hi = self.host_code(a[1]), self.host_code(a[2])
                if self.d.foreach:
                    acc = self.take(x, lambda src: self.d.call("clamp_min", src, lo), "clamp_min", lo)
                    self.line(self.d.inplace("clamp_max", acc, hi))
                    return Val(acc, owned=True)
                return Val(self.assign(f"torch.clamp({x.code}, {lo}, {hi})"), owned=True)
            return self._each(node)
        if o == "lerp":
            x, y = self.tensor(a[0]), self.tensor(a[1])
            w = self.host_code(a[2]) if a[2].kind <= Kind.SHAPE else self.numeric(self.value(a[2])).code
            if a[2].kind <= Kind.SHAPE and x.owned and self.spans(a[0]) == self.spans(node):
                self.line(self.d.inplace("lerp", x.code, y.code, w))
                return x
            if a[2].kind <= Kind.SHAPE or a[2].kind == Kind.TENSOR:
                return Val(self.assign(self.d.call("lerp", x.code, y.code, w)), owned=True)
            return self._each(node)
        if o == "where":
            if a[0].kind <= Kind.SHAPE:
                return self._host_where(node)
            return self._each(node)
        if o in COMPARE_FN:
            return self._each(node, is_bool=True)
        if o in REDUCE:  # axis and channel reductions and matrix ops give tensors
            self.host_printer.helpers.update(REDUCE_HELPERS.get(o, ()))
            args = [self.tensor(x).code if x.kind == Kind.TENSOR else self.host_code(x) for x in a]
            tensors = [c for x, c in zip(a, args) if x.kind == Kind.TENSOR]
            hosts = {f"h{i}": _braces(c) for i, (x, c) in enumerate(zip(a, args)) if x.kind != Kind.TENSOR}
            template = REDUCE[o].format(*(["{%d}" % i for i in range(len(tensors))] + [f"{{{k}}}" for k in hosts]))
            return Val(self.assign(self.d.each(template, tensors, hosts)), owned=True)
        raise AssertionError(f"torch backend has no rule for {o}")  # pragma: no cover

    def _host_where(self, node: Node) -> Val:
        _, a, b = node.args
        full = (True, True, True)
        a_spans = full if a.kind <= Kind.SHAPE else self.spans(a)
        b_spans = full if b.kind <= Kind.SHAPE else self.spans(b)
        if a_spans != b_spans and not self.d.foreach:
            # branches of different shapes (an axis reduction, a 0-d scalar): only the branch taken
            # is computed, then broadcast to the shape the value has whichever is taken
            return self._broadcast_where(node, _union(a_spans, b_spans))
        if a_spans != b_spans:  # foreach: a host number beside a tensor list (tensor() fills it)
            cond = f"p.new_full((), bool({self.host_condition(node.args[0])}), dtype=torch.bool)"
            args = [self.tensor(x).code if x.kind == Kind.TENSOR else
                    self.scalar(x) if x.kind == Kind.SCALAR else f"float({self.host_code(x)})" for x in (a, b)]
            return Val(self.assign(f"torch.where({cond}, {args[0]}, {args[1]})"), owned=True)
        name = self.fresh("sel")
        self.line(f"if {self.host_condition(node.args[0])}:")
        results = []

        def branch(arg):
            def run():
                v = self.tensor(arg)
                self.line(f"{name} = {v.code}")
                results.append(v)

            return run

        self._nested(branch(node.args[1]))
        self.line("else:")
        self._nested(branch(node.args[2]))
        same_shape = self.spans(node.args[1]) == self.spans(node.args[2])
        return Val(name, owned=same_shape and all(v.owned for v in results), stable=all(v.stable for v in results))

    def _broadcast_where(self, node: Node, spans) -> Val:
        name = self.fresh("sel")
        shape = _shape_code(spans)
        self.line(f"if {self.host_condition(node.args[0])}:")

        def branch(arg):
            def run():
                if arg.kind <= Kind.SHAPE:
                    code = f"p.new_full({shape}, float({self.host_code(arg)}))"
                else:
                    code = f"torch.broadcast_to({self.numeric(self.value(arg)).code}, {shape})"
                self.line(f"{name} = {code}")

            return run

        self._nested(branch(node.args[1]))
        self.line("else:")
        self._nested(branch(node.args[2]))
        return Val(name, owned=False, stable=True)

    def _each(self, node: Node, is_bool: bool = False) -> Val:
        """Per-tensor expression (a list comprehension in foreach mode) for ops torch has no foreach of."""
        tensors: list[str] = []
        parts: list[str] = []
        o = node.op
        # argument positions torch wants as tensors: lerp's ends, clamp's input
        tensor_args = {"lerp": (0, 1), "clamp": (0,)}.get(o, ())
        for i, arg in enumerate(node.args):
            if o == "where" and i == 0:
                if arg.kind == Kind.TENSOR:
                    v = self.value(arg)
                    tensors.append(v.code)
                    parts.append("{%d}" % (len(tensors) - 1) + ("" if v.is_bool else " != 0"))
                else:
                    parts.append(_braces(self.scalar_condition(arg)))
            elif arg.kind == Kind.TENSOR or (i in tensor_args and arg.kind <= Kind.SHAPE):
                tensors.append(self.tensor(arg).code)
                parts.append("{%d}" % (len(tensors) - 1))
            elif arg.kind == Kind.SCALAR:
                parts.append(_braces(self.scalar(arg)))
            else:  # a Python number: a float, so that torch never computes in an integer dtype
                code = self.host_code(arg)
                parts.append(_braces(code if code.startswith("float(") else f"float({code})"))
        if o in COMPARE_FN:
            if node.args[0].kind <= Kind.SHAPE:  # torch.gt(number, tensor) does not exist
                template = f"torch.{MIRRORED[o]}({parts[1]}, {parts[0]})"
            else:
                template = f"torch.{COMPARE_FN[o]}({parts[0]}, {parts[1]})"
        elif o == "where":
            template = f"torch.where({parts[0]}, {parts[1]}, {parts[2]})"
        elif o in ("min", "max"):
            template = f"torch.{'minimum' if o == 'min' else 'maximum'}({parts[0]}, {parts[1]})"
        elif o == "clamp":
            if (node.args[1].kind <= Kind.SHAPE) == (node.args[2].kind <= Kind.SHAPE):
                template = f"torch.clamp({parts[0]}, {parts[1]}, {parts[2]})"
            else:  # torch.clamp takes two numbers or two tensors as bounds
                template = f"torch.clamp(torch.clamp({parts[0]}, min={parts[1]}), max={parts[2]})"
        elif o == "pow":
            template = f"torch.pow({parts[0]}, {parts[1]})"
        elif o == "lerp":
            template = f"torch.lerp({parts[0]}, {parts[1]}, {parts[2]})"
        else:  # pragma: no cover
            raise AssertionError(o)
        if not tensors:  # pragma: no cover - then the node would be host or scalar kind
            raise AssertionError(o)
        return Val(self.assign(self.d.each(template, tensors), "mask" if is_bool else "x"), owned=True, is_bool=is_bool)


_union = union  # the extent of a broadcast result: what any operand spans


def _shape_code(spans: tuple[bool, bool, bool]) -> str:
    """The shape (code, per tensor) of a value spanning ``spans`` of the parameter ``p``."""
    last, second, rank = spans
    if not rank:
        return "()"
    if last and second:
        return "p.shape"
    if second:
        return "(*p.shape[:-1], 1)"
    if last:
        return "(*p.shape[:-2], 1, p.shape[-1])"
    return "(*p.shape[:-2], *(1,) * min(p.dim(), 2))"


def _braces(code: str) -> str:
    """``code`` escaped for use inside a ``str.format`` template."""
    return code.replace("{", "{{").replace("}", "}}")


def _times(a: Node, b: Node) -> Node:
    from ..ir.nodes import op

    return op("mul", a, b)


def _plain(t: Term) -> bool:
    """A term that is one tensor factor with no coefficient: ``x``."""
    return len(t.num) == 1 and not t.den and t.coef is None and t.sign > 0


def _is_square(node: Node) -> bool:
    if node.op == "square":
        return True
    return node.op == "pow" and node.args[1].op == "const" and node.args[1].attr == 2.0


def _is_simple(code: str) -> bool:
    return code.replace("_", "").replace(".", "").isalnum()


def _atom(code: str) -> str:
    """``code`` parenthesized unless it is a name or a number (the printer treats named values as atoms)."""
    return code if _is_simple(code) else f"({code})"


def _value(alpha: str) -> dict[str, str]:
    return {} if alpha == "1.0" else {"value": alpha}


def _reciprocal(node: Node) -> Node:
    from ..ir.nodes import const, op

    return op("div", const(1.0), node)


def _resolve(node: Node | None, defs: dict[str, Node]) -> Node | None:
    while node is not None and node.op == "input" and node.role == HOST:
        node = defs[node.name]
    return node


def _sum_to_one(a: Node | None, b: Node | None, defs: dict[str, Node]) -> bool:
    """Whether host coefficients a + b == 1 structurally (a = 1 - b or b = 1 - a)."""
    a, b = _resolve(a, defs), _resolve(b, defs)
    if a is None or b is None:
        return False

    def one_minus(x: Node, y: Node) -> bool:
        return (
            x.op == "sub"
            and x.args[0].op == "const"
            and x.args[0].attr == 1.0
            and (_resolve(x.args[1], defs) is y or _same(x.args[1], y, defs))
        )

    if a.op == "const" and b.op == "const":
        return a.attr + b.attr == 1.0
    return one_minus(a, b) or one_minus(b, a)


def _same(x: Node, y: Node, defs: dict[str, Node]) -> bool:
    x, y = _resolve(x, defs), _resolve(y, defs)
    if x is y:
        return True
    if x.op == "input" and y.op == "input":
        return x.attr == y.attr
    if x.op == "const" and y.op == "const":
        return x.attr == y.attr
    return False

