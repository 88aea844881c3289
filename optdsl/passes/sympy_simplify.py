"""SymPy simplification of a rule (the only module that imports SymPy).

The rule is cut into *definitions*: every output and every value used more than
once. Each definition is converted to a SymPy expression (other definitions
appear as symbols, so sharing survives), simplified within a time budget, and
converted back when the result is cheaper per element. Operations SymPy has no
meaning for (reductions, comparisons, where, lerp, clamp, matrix products) are
opaque functions whose arguments are still simplified.

Symbols carry what is known of them: tensors and hypers are real, a hyper with a
range starting at 0 is non-negative, ``t`` and the shape scalars are positive
integers. Without that ``x^2/sqrt(x^2)`` never becomes ``|x|``.
"""

from __future__ import annotations

import contextlib
import itertools
import signal
import threading
import time

import sympy as sp

from ..ir.fold import fold
from ..ir.nodes import HYPER, STEP, Node, Rule, const, op, postorder, rebuild, use_counts
from ..ir.ops import GROUPS, Kind, KindError

# What is tried is fixed by the expression's size (so output never depends on machine
# load); the time budget is only a safety net against a pathological expression, and a
# rule whose simplification hit it says so in Rule.notes (`optdsl explain` prints them).
DEFAULT_BUDGET_S = 10.0
MAX_OPS_FOR_SIMPLIFY = 40
MAX_OPS_FOR_REWRITES = 400

_OPAQUE = ("lerp", "where", "clamp", "lt", "le", "gt", "ge", "eq", "ne", "sum", "mean", "norm", "rms",
           "amax", "amin", "dot", "rowsum", "rowmean", "rownorm", "rowrms", "rowmax", "colsum",
           "colmean", "colnorm", "colrms", "colmax", "matmul", "transpose", "newton_schulz",
           "chansum", "chanmean", "channorm", "chanrms", "chanmax")
_FUNCS = {name: sp.Function(f"ir_{name}", real=True) for name in _OPAQUE}
_FUNC_OPS = {f"ir_{name}": name for name in _OPAQUE}
_DIRECT = {"exp": sp.exp, "log": sp.log, "tanh": sp.tanh, "cosh": sp.cosh, "abs": sp.Abs, "sign": sp.sign}
_DIRECT_BACK = {sp.exp: "exp", sp.log: "log", sp.tanh: "tanh", sp.cosh: "cosh", sp.Abs: "abs", sp.sign: "sign"}


class _Unsupported(Exception):
    """SymPy produced something the IR cannot express: keep the original."""


class _Timeout(Exception):
    pass


def simplify_with_sympy(rule: Rule, budget_s: float = DEFAULT_BUDGET_S) -> Rule:
    """Simplify every definition of ``rule``, spending at most about ``budget_s`` seconds."""
    deadline = time.perf_counter() + budget_s
    bridge = _Bridge(rule)
    _TIMEOUTS.clear()
    roots = [n for _, n in rule.outputs]
    counts = use_counts(roots)
    done: dict[int, Node] = {}
    for node in postorder(roots):
        new = rebuild(node, tuple(done[id(a)] for a in node.args))
        new = _fold_constants(new)
        is_def = node.op not in ("input", "const") and node.args and (counts.get(id(node), 0) > 1 or any(node is r for r in roots))
        if is_def:
            new = bridge.simplify(new, deadline)
            bridge.define(new)
        done[id(node)] = new
    notes = rule.notes
    if _TIMEOUTS:
        notes += (f"SymPy simplification hit its {budget_s:g} s time bound; the result may differ between runs",)
    return rule.with_(outputs=tuple((n, done[id(v)]) for n, v in rule.outputs), notes=notes)


_TIMEOUTS: list[str] = []


def _fold_constants(node: Node) -> Node:
    if node.args and all(a.op == "const" for a in node.args):
        value = fold(node.op, tuple(a.attr for a in node.args))
        if value is not None:
            return const(value)
    return node


class _Bridge:
    """Conversions between IR nodes and SymPy expressions for one rule."""

    def __init__(self, rule: Rule):
        self.rule = rule
        self.to_node: dict[sp.Basic, Node] = {}
        self.symbols: dict[int, sp.Symbol] = {}
        self.counter = 0

    # IR -> SymPy
    def _symbol_for(self, node: Node) -> sp.Symbol:
        sym = self.symbols.get(id(node))
        if sym is not None:
            return sym
        if node.op == "input":
            role, name = node.attr
            if role == STEP:
                sym = sp.Symbol(name, integer=True, positive=True)
            elif role == HYPER:
                sym = sp.Symbol(name, **_hyper_assumptions(self.rule.hyper(name)))
            else:
                sym = sp.Symbol(name, real=True)
        elif node.op in GROUPS["shape"]:
            sym = sp.Symbol(node.op, integer=True, positive=True)
        else:
            sym = sp.Symbol(f"_d{self.counter}", real=True)
            self.counter += 1
        self.to_node[sym] = node
        self.symbols[id(node)] = sym
        return sym

    def define(self, node: Node) -> None:
        """Later definitions see ``node`` as a symbol."""
        if id(node) not in self.symbols and node.op not in ("input", "const") and node.args:
            self._symbol_for(node)

    def to_sympy(self, node: Node, top: bool = True) -> sp.Expr:
        if not top and id(node) in self.symbols:
            return self.symbols[id(node)]
        if node.op == "const":
            if isinstance(node.attr, str):
                raise _Unsupported("text constant")
            return _number(node.attr)
        if node.op == "input" or not node.args:
            return self._symbol_for(node)
        if node.op in ("eq", "ne") and any(isinstance(a.attr, str) for a in node.args if a.op == "const"):
            return self._symbol_for(node)
        a = [self.to_sympy(x, False) for x in node.args]
        o = node.op
        if o == "add":
            return a[0] + a[1]
        if o == "sub":
            return a[0] - a[1]
        if o == "mul":
            return a[0] * a[1]
        if o == "div":
            return a[0] / a[1]
        if o == "neg":
            return -a[0]
        if o == "pow":
            return a[0] ** a[1]
        if o == "sqrt":
            return sp.sqrt(a[0])
        if o == "rsqrt":
            return 1 / sp.sqrt(a[0])
        if o == "square":
            return a[0] ** 2
        if o == "min":
            return sp.Min(*a)
        if o == "max":
            return sp.Max(*a)
        if o in _DIRECT:
            return _DIRECT[o](*a)
        return _FUNCS[o](*a)

    # SymPy -> IR
    def to_ir(self, expr: sp.Basic) -> Node:
        if expr in self.to_node:
            return self.to_node[expr]
        if isinstance(expr, sp.Symbol):
            raise _Unsupported(f"unknown symbol {expr}")
        if expr.is_Number or isinstance(expr, sp.NumberSymbol):
            if expr.is_real is False or expr in (sp.nan, sp.zoo):
                raise _Unsupported("non-real number")
            return const(_float(expr))
        if isinstance(expr, sp.Add):
            return self._sum(expr)
        if isinstance(expr, sp.Mul):
            return self._product(expr)
        if isinstance(expr, sp.Pow):
            return self._power(expr)
        if isinstance(expr, (sp.Min, sp.Max)):
            args = [self.to_ir(x) for x in sorted(expr.args, key=sp.default_sort_key)]
            node = args[0]
            for x in args[1:]:
                node = op("min" if isinstance(expr, sp.Min) else "max", node, x)
            return node
        func = expr.func
        if func in _DIRECT_BACK:
            return op(_DIRECT_BACK[func], *(self.to_ir(x) for x in expr.args))
        name = _FUNC_OPS.get(getattr(func, "__name__", ""))
        if name is not None:
            return op(name, *(self.to_ir(x) for x in expr.args))
        raise _Unsupported(type(expr).__name__)

    def _sum(self, expr: sp.Add) -> Node:
        terms = sorted(expr.args, key=sp.default_sort_key)
        pos = [t for t in terms if not _negative(t)]
        neg = [-t for t in terms if _negative(t)]
        node = self.to_ir(pos[0]) if pos else op("neg", self.to_ir(neg.pop(0)))
        for t in pos[1:]:
            node = op("add", node, self.to_ir(t))
        for t in neg:
            node = op("sub", node, self.to_ir(t))
        return node

    def _product(self, expr: sp.Mul) -> Node:
        coeff, factors = expr.as_coeff_mul()
        if coeff < 0:
            return op("neg", self.to_ir(-expr))
        num: list[Node] = [] if coeff == 1 else [const(_float(coeff))]
        den: list[Node] = []
        for f in sorted(factors, key=sp.default_sort_key):
            if isinstance(f, sp.Pow) and f.exp.is_Number and f.exp < 0:
                den.append(self.to_ir(f.base ** -f.exp))
            else:
                num.append(self.to_ir(f))
        top = _chain("mul", num) or const(1.0)
        return op("div", top, _chain("mul", den)) if den else top

    def _power(self, expr: sp.Pow) -> Node:
        base, exp = expr.base, expr.exp
        if exp == sp.Rational(1, 2):
            return op("sqrt", self.to_ir(base))
        if exp == sp.Rational(-1, 2):
            return op("rsqrt", self.to_ir(base))
        if exp == 2:
            b = self.to_ir(base)
            return op("mul", b, b)
        if exp == -1:
            return op("div", const(1.0), self.to_ir(base))
        if exp.is_Number and exp < 0:
            return op("div", const(1.0), self.to_ir(base ** -exp))
        return op("pow", self.to_ir(base), self.to_ir(exp))

    # the search for a cheaper form
    def simplify(self, node: Node, deadline: float) -> Node:
        """A cheaper equivalent of ``node`` found before ``deadline``, else ``node``.

        Everything SymPy does here (building the expression included, which can be
        slow on its own) runs under one alarm, so the budget holds for any spec.
        """
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            return node
        found = [node]
        try:
            with _time_limit(remaining):
                self._search(node, deadline, found)
        except _Timeout:
            _TIMEOUTS.append(node.op)
        except Exception:  # noqa: BLE001 - out of time, too deep, or SymPy failing on a definition
            pass  # (e.g. Max of a non-comparable value): keep what was found so far, never fail the compile
        best = found[-1]
        if best is not node and best.kind != node.kind:
            return node
        if best is not node and best.hint is None:
            best.hint = node.hint
        return best

    def _search(self, node: Node, deadline: float, found: list[Node]) -> None:
        """Append each cheaper form of ``node`` to ``found`` as it is found."""
        try:
            expr = self.to_sympy(node)
        except _Unsupported:
            return
        best_cost = self._ir_cost(node, True)
        for candidate in itertools.chain((expr,), _candidates(expr, deadline)):
            try:
                cost = _cost(candidate, self._host_symbols())
                if cost < best_cost:
                    found.append(self.to_ir(candidate))
                    best_cost = cost
            except (_Unsupported, KindError):  # e.g. sum(g - g) -> sum(0): no longer a tensor inside
                continue

    def _ir_cost(self, node: Node, top: bool = False) -> float:
        """Per-element operations of ``node`` as it stands (definitions count as free)."""
        if node.kind <= Kind.SHAPE or not node.args or (not top and id(node) in self.symbols):
            return 0.0
        return 1.0 + sum(self._ir_cost(a) for a in node.args)

    def _host_symbols(self) -> set[sp.Symbol]:
        return {s for i, s in self.symbols.items() if self.to_node[s].kind <= Kind.SHAPE}


def _hyper_assumptions(h) -> dict:
    if h.type != "float" or h.low is None:
        return {"real": True}
    if h.low > 0 or (h.low == 0 and not h.low_closed):
        return {"positive": True}
    if h.low >= 0:
        return {"nonnegative": True}
    return {"real": True}


def _number(value: float) -> sp.Expr:
    if value != value:
        raise _Unsupported("nan")
    if value in (float("inf"), float("-inf")):
        return sp.oo if value > 0 else -sp.oo
    if value == int(value) and abs(value) < 2**53:
        return sp.Integer(int(value))
    return sp.Rational(repr(value))


def _float(number) -> float:
    try:
        return float(number)
    except OverflowError:
        return float("inf") if number > 0 else float("-inf")
    except TypeError:
        raise _Unsupported("not a real number") from None


def _negative(term: sp.Expr) -> bool:
    coeff, _ = term.as_coeff_mul()
    return bool(coeff < 0)


def _chain(name: str, nodes: list[Node]) -> Node | None:
    out = None
    for n in nodes:
        out = n if out is None else op(name, out, n)
    return out


def _candidates(expr: sp.Expr, deadline: float):
    """Rewrites worth comparing, chosen by the expression's size alone (so the output never
    depends on machine load); the caller's alarm (``_Bridge.simplify``) bounds the time, and
    nothing is computed while the generator is suspended at a ``yield``."""
    size = sp.count_ops(expr)
    rewrites = [sp.factor_terms, sp.powsimp, sp.cancel] if size <= MAX_OPS_FOR_REWRITES else []
    if size <= MAX_OPS_FOR_SIMPLIFY and _can_interrupt():
        rewrites.append(sp.simplify)
    for fn in rewrites:
        try:
            candidate = fn(expr)
        except (sp.PolynomialError, TypeError, ValueError, RecursionError, AttributeError):
            continue
        yield candidate


def _can_interrupt() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Interrupt the block after ``seconds`` (main thread on POSIX only; else no limit)."""
    if not _can_interrupt() or seconds <= 0:
        yield
        return

    armed = [True]

    def on_alarm(_signal_number, _frame):
        if armed[0]:
            raise _Timeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    # and again every 50 ms: an exception raised while a gc callback or a __del__
    # runs, or inside SymPy's own broad excepts, is swallowed; the next one is not
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.05)
    try:
        yield
    finally:
        while True:  # an alarm landing here must not skip the cleanup
            try:
                armed[0] = False
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
                break
            except _Timeout:
                continue


def _cost(expr: sp.Expr, host: set[sp.Symbol]) -> float:
    """Per-element operations of ``expr``; host-only parts are free (they get hoisted)."""
    if expr.is_Number or isinstance(expr, (sp.NumberSymbol, sp.Symbol)):
        return 0.0
    if not (expr.free_symbols - host):
        return 0.0
    if isinstance(expr, sp.Add):
        element = [a for a in expr.args if a.free_symbols - host]
        ops = len(element) - 1 + (1 if len(element) < len(expr.args) else 0)
        return ops + sum(_cost(-a if _negative(a) else a, host) for a in element)
    if isinstance(expr, sp.Mul):
        coeff, factors = expr.as_coeff_mul()
        element = [f for f in factors if f.free_symbols - host]
        has_host = len(element) < len(factors) or abs(coeff) != 1
        ops = len(element) - 1 + (1 if has_host else 0)
        total = ops
        for f in element:
            if isinstance(f, sp.Pow) and f.exp == -1:
                total += _cost(f.base, host)
            else:
                total += _cost(f, host)
        return total
    if isinstance(expr, sp.Pow):
        e = expr.exp
        base_cost = _cost(expr.base, host)
        if e in (2, -1, sp.Rational(1, 2), sp.Rational(-1, 2)):
            return 1 + base_cost
        return 2 + base_cost + _cost(e, host)
    return 1 + sum(_cost(a, host) for a in expr.args)


# --- canonical forms, for the search's duplicate detection and rule families -----------

MAX_STATES_TO_PERMUTE = 5
MAX_EXPAND_EXPONENT = 6


def canonical_form(rule: Rule, budget_s: float = 0.25) -> str | None:
    """Text equal for rules that are algebraically the same; cheap (no full ``simplify``).

    Dead states are dropped and locals inlined; ``sign``, ``lerp``, ``dot`` and
    ``clamp`` are written with ``Abs``, ``+``, ``*``, ``Min``/``Max``; sums and
    products are expanded; states take the placeholder names that give the
    smallest text, so renaming them changes nothing. ``m/sqrt(m*m)`` and
    ``sign(m)`` (``m`` real) give the same text. None when SymPy cannot express
    the rule (a choice hyper's text).
    """
    from .dead import eliminate_dead_state

    rule = eliminate_dead_state(rule)
    deadline = time.perf_counter() + budget_s
    bridge = _Bridge(rule)
    try:
        outputs = {name: _canonical_expr(bridge.to_sympy(node), deadline) for name, node in rule.outputs}
        inits = {s.name: _canonical_expr(bridge.to_sympy(s.init), deadline) for s in rule.states}
    except _Unsupported:
        return None
    symbols = {s.name: sp.Symbol(s.name, real=True) for s in rule.states}
    blind = {sym: sp.Symbol("_s", real=True) for sym in symbols.values()}
    keys = [_state_text(s, outputs, inits, blind) for s in rule.states]
    best = None
    for order in _orders(keys):
        rename = {symbols[rule.states[i].name]: sp.Symbol(f"_s{k}", real=True) for k, i in enumerate(order)}
        parts = [f"p={outputs['p'].xreplace(rename)}"]
        parts += [f"_s{k}:{_state_text(rule.states[i], outputs, inits, rename)}" for k, i in enumerate(order)]
        text = ";".join(parts)
        if best is None or text < best:
            best = text
    return best


def _state_text(state, outputs: dict, inits: dict, rename: dict) -> str:
    update = outputs[state.name].xreplace(rename) if state.name in outputs else "same"
    return f"{state.shape}:{inits[state.name]}:{update}"


def _orders(keys: list[str]):
    """State orders to try: sorted by a name-blind key; ties tried in every order (few)."""
    ranked = sorted(range(len(keys)), key=lambda i: keys[i])
    groups = [list(g) for _, g in itertools.groupby(ranked, key=lambda i: keys[i])]
    choices = [itertools.permutations(g) if len(g) <= MAX_STATES_TO_PERMUTE else [tuple(g)] for g in groups]
    for combo in itertools.product(*choices):
        yield [i for group in combo for i in group]


def _canonical_expr(expr: sp.Expr, deadline: float) -> sp.Expr:
    expr = expr.replace(sp.sign, lambda a: a / sp.Abs(a))
    expr = expr.replace(_FUNCS["lerp"], lambda a, b, w: a + w * (b - a))
    expr = expr.replace(_FUNCS["dot"], lambda a, b: _FUNCS["sum"](a * b))
    expr = expr.replace(_FUNCS["clamp"], lambda x, lo, hi: sp.Min(sp.Max(x, lo), hi))
    if _expansion_may_explode(expr):
        return expr
    remaining = deadline - time.perf_counter()
    if remaining <= 0:
        return expr
    try:
        with _time_limit(remaining):
            return sp.expand(expr)
    except (_Timeout, RecursionError, TypeError, ValueError):
        return expr


def _expansion_may_explode(expr: sp.Expr) -> bool:
    return any(
        isinstance(e, sp.Pow) and isinstance(e.base, sp.Add) and e.exp.is_Integer and abs(e.exp) > MAX_EXPAND_EXPONENT
        for e in sp.preorder_traversal(expr)
    )


def is_sign_momentum(rule: Rule) -> bool:
    """Whether ``rule`` is in the Lion / Signum family, up to its constants.

    That is: ``p`` moves by ``-c * sign(X)`` (``c`` a host scalar such as
    ``lr * 0.3``; a decoupled decay ``k * p`` may be added), where ``X`` is a
    linear combination of ``g`` and at least one state, and every such state is
    updated as a linear combination of itself and ``g`` (a momentum). ``sign``
    may be spelled ``x / sqrt(x * x)`` or ``x / abs(x)``; a ``where`` on the step
    count alone (SGD's ``where(t == 1, g, ...)``) counts if both branches do.
    """
    from .dead import eliminate_dead_state

    rule = eliminate_dead_state(rule)
    bridge = _Bridge(rule)
    try:
        new = {name: bridge.to_sympy(node).replace(sp.sign, lambda a: a / sp.Abs(a)) for name, node in rule.outputs}
    except _Unsupported:
        return False
    p, g = sp.Symbol("p", real=True), sp.Symbol("g", real=True)
    states = {sp.Symbol(s.name, real=True): s.name for s in rule.states if s.name in new}
    tensors = {p, g, *states}
    step = sp.expand(new["p"] - p)
    magnitudes = step.atoms(sp.Abs)
    if len(magnitudes) != 1:
        return False
    (magnitude,) = magnitudes
    inner = magnitude.args[0]
    scaled = sp.expand(step * magnitude)  # -c * X + k * p * |X|
    decay = scaled.coeff(magnitude)
    coefficient = sp.cancel(sp.expand(scaled - decay * magnitude) / inner)
    if coefficient == 0 or coefficient.free_symbols & tensors or sp.cancel(decay / p).free_symbols & tensors:
        return False
    momenta = inner.free_symbols & set(states)
    if not momenta or not _linear_in(inner, [g, *states]):
        return False
    return all(_is_momentum(new[states[m]], m, g) for m in momenta)


def _is_momentum(update: sp.Expr, state: sp.Symbol, g: sp.Symbol) -> bool:
    """Linear in the state and ``g`` (in every step-dependent branch), and reads the state in one."""
    branches = list(_branches(update, {state, g}))
    return _linear_in(update, [state, g]) and any(sp.expand(b).coeff(state) != 0 for b in branches)


def _branches(expr: sp.Expr, tensors: set[sp.Symbol]):
    """``expr`` with each ``where`` whose condition reads no tensor resolved both ways."""
    switches = [w for w in expr.atoms(_FUNCS["where"]) if not (w.args[0].free_symbols & tensors)]
    if not switches:
        yield expr
        return
    w = switches[0]
    for branch in w.args[1:]:
        yield from _branches(expr.xreplace({w: branch}), tensors)


def _linear_in(expr: sp.Expr, symbols: list[sp.Symbol]) -> bool:
    """A linear combination of ``symbols`` with host coefficients, in every step-dependent branch."""
    for branch in _branches(expr, set(symbols)):
        try:
            poly = sp.Poly(sp.expand(branch), *symbols)
        except sp.PolynomialError:
            return False
        if poly.total_degree() > 1 or any(c.free_symbols & set(symbols) for c in poly.coeffs()):
            return False
    return True
