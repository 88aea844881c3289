"""IR -> human-readable text: infix math, a statement listing, LaTeX, SSA dump.

Used by ``optdsl explain``, by the generated modules' docstrings and by error
messages. Values used more than once get a name (their source name when the
spec gave one), so the listing reads like the spec after simplification.
"""

from __future__ import annotations

from ..frontend.printer import format_number
from .nodes import HOST, Node, Rule, postorder
from .ops import ARITH_SYMBOLS, COMPARE_SYMBOLS, Kind

_PREC = {"compare": 1, "add": 2, "sub": 2, "mul": 3, "div": 3, "matmul": 3, "neg": 4, "pow": 5}
_ATOM = 6


def _prec(node: Node, names: dict[int, str]) -> int:
    if id(node) in names or node.op in ("input",):
        return _ATOM
    if node.op == "const":
        return 4 if isinstance(node.attr, float) and node.attr < 0 else _ATOM
    if node.op in COMPARE_SYMBOLS:
        return 1
    return _PREC.get(node.op, _ATOM)


def expr_text(node: Node, names: dict[int, str] | None = None, depth: int = 0) -> str:
    """Infix text of ``node``; nodes in ``names`` print as their name."""
    names = names or {}
    if id(node) in names and depth > 0:
        return names[id(node)]
    if depth > 60:
        return "..."
    if node.op == "const":
        return f'"{node.attr}"' if isinstance(node.attr, str) else format_number(node.attr)
    if node.op == "input":
        return node.attr[1]
    if node.op == "randn":
        return "randn()"
    if not node.args:
        return node.op
    sub = [expr_text(a, names, depth + 1) for a in node.args]
    prec = _prec(node, {})
    if node.op == "neg":
        return "-" + _paren(sub[0], _prec(node.args[0], names) < 4)
    if node.op in ARITH_SYMBOLS or node.op in COMPARE_SYMBOLS:
        symbol = ARITH_SYMBOLS.get(node.op) or COMPARE_SYMBOLS[node.op]
        lp, rp = (_prec(a, names) for a in node.args)
        if node.op == "pow":
            left, right = lp < _ATOM, rp < 4
        elif prec == 1:
            left, right = lp <= 1, rp <= 1
        else:
            left, right = lp < prec, rp <= prec
        if node.op == "pow":
            return f"{_paren(sub[0], left)}^{_paren(sub[1], right)}"
        return f"{_paren(sub[0], left)} {symbol} {_paren(sub[1], right)}"
    func = {"amax": "max", "amin": "min"}.get(node.op, node.op)
    return f"{func}({', '.join(sub)})"


def _paren(text: str, paren: bool) -> str:
    return f"({text})" if paren else text


def _statements(rule: Rule):
    """(section, name, node) in execution order, and the names of materialized nodes."""
    from .schedule import schedule

    sched = schedule(rule)
    names = dict(sched.names)
    rows = []
    for name, node in rule.host:
        names[id(node)] = name
        rows.append(("host", name, node))
    for st in sched.statements:
        if st.kind == "copy":
            rows.append(("copy", st.buffer, st.name))
        else:
            rows.append((st.kind, st.name, st.node))
    return rows, names


def rule_text(rule: Rule) -> str:
    """The rule after the passes, one statement a line, in the order the code runs."""
    rows, names = _statements(rule)
    out = []
    host = [r for r in rows if r[0] == "host"]
    if host:
        out.append("once per step and group:" if all(r[2].kind == Kind.GROUP for r in host) else "once per step, group and tensor:")
        earlier: dict[int, str] = {}
        for _, name, node in host:
            out.append(f"  {name} = {expr_text(node, earlier)}")
            earlier[id(node)] = name
    out.append("per element:" if rule.hoisted else "statements:")
    for section, name, node in rows:
        if section == "copy":
            out.append(f"  {name} = {node}")
        elif section != "host":
            out.append(f"  {name} = {expr_text(node, names)}")
    return "\n".join(out)


# --- LaTeX ---------------------------------------------------------------------------

_GREEK = {
    "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "kappa", "lambda",
    "mu", "nu", "xi", "rho", "sigma", "tau", "phi", "chi", "psi", "omega",
}


def latex_name(name: str) -> str:
    base = name.rstrip("0123456789")
    digits = name[len(base):]
    if base == "eps":
        base = r"\epsilon"
    elif base in _GREEK:
        base = "\\" + base
    elif base == "lr":
        base = r"\eta"
    elif len(base) > 1:
        base = r"\mathrm{" + base.replace("_", r"\_") + "}"
    return f"{base}_{{{digits}}}" if digits else base


def expr_latex(node: Node, names: dict[int, str], depth: int = 0) -> str:
    if id(node) in names and depth > 0:
        return latex_name(names[id(node)])
    if node.op == "const":
        return rf"\text{{{node.attr}}}" if isinstance(node.attr, str) else format_number(node.attr).replace("inf", r"\infty")
    if node.op == "input":
        return latex_name(node.attr[1])
    if node.op == "randn":
        return r"\mathcal{N}(0, 1)"
    if not node.args:
        return rf"\mathrm{{{node.op}}}"
    sub = [expr_latex(a, names, depth + 1) for a in node.args]
    ps = [_prec(a, names) for a in node.args]
    o = node.op
    if o == "add":
        return f"{sub[0]} + {_lparen(sub[1], ps[1] <= 1)}"
    if o == "sub":
        return f"{sub[0]} - {_lparen(sub[1], ps[1] <= 2)}"
    if o == "mul":
        return rf"{_lparen(sub[0], ps[0] < 3)} \cdot {_lparen(sub[1], ps[1] < 3)}"
    if o == "div":
        return rf"\frac{{{sub[0]}}}{{{sub[1]}}}"
    if o == "neg":
        return "-" + _lparen(sub[0], ps[0] < 4)
    if o == "pow":
        return f"{_lparen(sub[0], ps[0] < _ATOM)}^{{{sub[1]}}}"
    if o == "matmul":
        return f"{_lparen(sub[0], ps[0] < 3)} {_lparen(sub[1], ps[1] < 3)}"
    if o in COMPARE_SYMBOLS:
        sym = {"lt": "<", "le": r"\le", "gt": ">", "ge": r"\ge", "eq": "=", "ne": r"\ne"}[o]
        return rf"[{sub[0]} {sym} {sub[1]}]"
    if o == "sqrt":
        return rf"\sqrt{{{sub[0]}}}"
    if o == "abs":
        return rf"\left|{sub[0]}\right|"
    if o == "norm":
        return rf"\lVert {sub[0]} \rVert"
    if o == "square":
        return f"{_lparen(sub[0], ps[0] < _ATOM)}^{{2}}"
    if o == "transpose":
        return f"{_lparen(sub[0], ps[0] < _ATOM)}^{{\\top}}"
    func = {"amax": "max", "amin": "min"}.get(o, o)
    return rf"\operatorname{{{func}}}\left({', '.join(sub)}\right)"


def _lparen(text: str, paren: bool) -> str:
    return rf"\left({text}\right)" if paren else text


def rule_latex(rule: Rule) -> str:
    rows, names = _statements(rule)
    lines = []
    for section, name, node in rows:
        if section == "copy":
            lines.append(f"{latex_name(name)} &\\leftarrow {latex_name(node)}")
        else:
            arrow = r"\leftarrow" if section == "write" else "="
            lines.append(f"{latex_name(name)} &{arrow} {expr_latex(node, names)}")
    return "\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}"


# --- SSA dump (for debugging passes) -----------------------------------------------------


def ssa_text(rule: Rule) -> str:
    """Every node once, as ``%i = op args : KIND``; the exact graph the backends see."""
    ids: dict[int, str] = {}
    out = []
    roots = rule.roots()
    for node in postorder(roots):
        if node.op == "const":
            ids[id(node)] = f'"{node.attr}"' if isinstance(node.attr, str) else format_number(node.attr)
            continue
        if node.op == "input":
            role, name = node.attr
            ids[id(node)] = f"{'$' if role == HOST else ''}{name}"
            continue
        ident = f"%{len(out)}"
        ids[id(node)] = ident
        args = ", ".join(ids[id(a)] for a in node.args)
        out.append(f"{ident} = {node.op} {args} : {node.kind.name}".rstrip())
    for name, node in rule.host:
        out.append(f"${name} := {ids[id(node)]}")
    for s in rule.states:
        out.append(f"init {s.name} := {ids[id(s.init)]}")
    for name, node in rule.outputs:
        out.append(f"{name} <- {ids[id(node)]}")
    return "\n".join(out)
