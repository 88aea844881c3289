"""The torch backend: a rule -> one self-contained ``torch.optim.Optimizer`` module.

The jinja2 template (``templates/torch_optimizer.py.j2``) holds everything that
is the same for every rule (constructor, param groups, state init, buckets by
device/dtype/step, state_dict handling); this module fills in what differs:
hypers, range checks, host math, and the per-element statements written by
``torch_emit`` in its foreach and per-tensor dialects.
"""

from __future__ import annotations

from functools import cache

import jinja2

from .. import __version__, resources
from ..frontend.printer import format_number
from ..ir.nodes import HOST, HYPER, REDUCED, STATE, STEP, Rule, postorder
from ..ir.ops import GROUPS, Kind
from ..ir.printer import rule_text
from ..ir.schedule import schedule
from ..ir.intervals import fits_float16, interval
from . import torch_api
from .pyexpr import HELPERS, PyPrinter, py_number
from .torch_emit import TorchEmitter, needs_per_tensor
from .torch_init import InitWriter
from .torch_reduce import ReductionWriter
from .torch_traced import traced_rule

TEMPLATE = "torch_optimizer.py.j2"
BASE_NAMES = {
    "self", "torch", "math", "group", "params", "states", "state", "param", "grads", "grad", "dtype",
    "p", "g", "t", "closure", "loss", "buckets", "key", "x", "numel", "rows", "cols", "ndim", "channels",
    "reduced", "values", "groups",
}


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resources.template_dir())),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )


def template_source() -> str:
    return (resources.template_dir() / TEMPLATE).read_text()


def beta_names(rule: Rule) -> list[str]:
    """The betas kept as one ``group["betas"]`` tuple, as torch does: beta1..betaN when the rule
    declares exactly that run of float hypers, unless another hyper plays the momentum role
    (``torch_api``: then they are separate group keys, so that schedulers cycle that hyper)."""
    return torch_api.stored_betas(rule)


def docstring_literal(text: str, indent: str = "") -> str:
    """``text`` as a triple-quoted docstring that can never end early or inject code."""
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch in "\n\t":
            out.append(ch)
        elif ord(ch) < 32 or ord(ch) == 127 or ch in "\u2028\u2029\ufeff":
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    body = "".join(out).replace('"""', '\\"\\"\\"')
    if body.endswith('"'):
        body = body[:-1] + '\\"'
    lines = body.split("\n")
    lines = [lines[0]] + [(indent + line) if line.strip() else "" for line in lines[1:]]
    return indent + '"""' + "\n".join(lines) + "\n" + indent + '"""'


def _indent_block(text: str, prefix: str) -> str:
    return "\n".join(prefix + line if line.strip() else "" for line in text.splitlines())


def render(rule: Rule, spec_hash: str) -> str:
    """Python source of the optimizer module for ``rule`` (after the passes)."""
    return _environment().get_template(TEMPLATE).render(**template_context(rule, spec_hash))


def template_context(rule: Rule, spec_hash: str, imports: str = "torch", options: tuple[str, ...] = ()) -> dict:
    """What the torch template needs; other backends' templates extend it and add their own.

    ``imports`` names what the module imports (for its docstring); ``options`` are
    extra constructor-argument lines for the class docstring.
    """
    betas = beta_names(rule)
    taken = set(BASE_NAMES) | {h.name for h in rule.hypers} | {s.name for s in rule.states}
    taken |= {n for n, _ in rule.host} | {r.name for r in rule.reductions}
    helpers: set[str] = set()
    main = update_body(rule, taken, helpers, betas, uses_grad=True)
    traced_form = traced_rule(rule)
    traced = update_body(traced_form, taken, helpers, betas, uses_grad=True, traced=True) if traced_form else None
    events = []
    for method in ("train", "eval"):
        sub = rule.event(method)
        if rule.events:
            body = update_body(sub, taken, helpers, betas, uses_grad=False) if sub is not None else None
            events.append(dict(method=method, body=body, doc=_event_doc(rule, method, sub)))
    fit_group = main.pop("fit_group")
    if fit_group or main.pop("fit_shape"):
        helpers.add("_fit")
    for e in [*events, dict(body=traced)]:
        if e["body"] and (e["body"].pop("fit_group") or e["body"].pop("fit_shape")):
            helpers.add("_fit")

    init = InitWriter(rule, helpers, set(BASE_NAMES), _shape_lines, lambda r, names: _hyper_lines(r, names, betas))
    setup_lines, check_lines, init_lines = init.lines()
    reduce_lines = ReductionWriter(rule, helpers, betas).lines() if rule.reductions else []
    always = [s.name for s in rule.states if s.shape != "scalar" and s.when is None]
    first_state = always[0] if always else None
    return dict(
        module_doc=docstring_literal(_module_doc(rule, spec_hash, imports)),
        cls=rule.name,
        class_doc=docstring_literal(_class_doc(rule, betas, options), "    "),
        helpers=[HELPERS[h] for h in sorted(helpers)],
        signature=_signature(rule, betas),
        keyword_only=[f"{b}=None" for b in betas or torch_api.split_betas(rule)],
        betas=betas,
        beta_names=betas,
        default_keys=_default_keys(rule, betas),
        checks=_checks(rule, betas),
        setup_lines=setup_lines,
        check_lines=check_lines,
        init_lines=init_lines,
        lazy_states=any(s.when is not None for s in rule.states),
        state_dtype_expr=f'state["{first_state}"].dtype' if first_state else "None",
        state_dtype_of_bucket=f'states[0]["{first_state}"].dtype' if first_state else "self._state_dtype(group, params[0])",
        main=main,
        traced=traced,
        complex_error=_complex_error(rule),
        events=events,
        reductions=bool(rule.reductions),
        reduction_names=[_reduction_text(r) for r in rule.reductions],
        reduce_lines=reduce_lines,
        # what the Triton template reads directly
        hyper_lines=main["hyper_lines"],
        host_lines=main["host_lines"],
        tensor_states=main["tensor_states"],
    ) | torch_api.context(rule)


def _complex_error(rule: Rule) -> str | None:
    """Why complex parameters cannot take the rule as their real view (torch.view_as_real), or
    None when they can: an elementwise rule, or one with whole-tensor reductions, computes the
    same on the view as on the real and imaginary parts taken as separate numbers, as torch's
    optimizers treat them; a shape, an axis or a matrix operation sees the view's extra
    dimension of 2 instead."""
    groups = ("shape", "axis_reduce", "chan_reduce", "matrix")
    refused = {o for g in groups for o in GROUPS[g]}
    roots = rule.roots() + [n for _, sub in rule.events for n in sub.roots()]
    used = sorted({n.op for n in postorder(roots) if n.op in refused})
    if not used and all(s.shape in ("tensor", "scalar") for s in rule.states):
        return None
    what = ", ".join(_op_text(o) for o in used) or "row or column states"
    return (f"{rule.name} does not support complex parameters: its rule uses {what}, which would see "
            f"torch.view_as_real's extra dimension (give it real parameters, or use an elementwise rule)")


def _op_text(op: str) -> str:
    return {"matmul": "@"}.get(op, op + "()" if op not in GROUPS["shape"] else op)


def _reduction_text(r) -> str:
    from ..ir.printer import expr_text

    return f"{r.op}({expr_text(r.arg)})"


def _event_doc(rule: Rule, method: str, sub: Rule | None) -> str:
    other = "eval" if method == "train" else "train"
    if sub is None:
        return f"Switch to {method} mode (the rule has no 'on {method}' block: parameters are left as they are)."
    changed = ", ".join(name for name, _ in sub.outputs if not (name != "p" and _keeps(sub, name)))
    return (f"Switch from {other} to {method} mode: run the rule's 'on {method}' block on every parameter "
            f"that has stepped (it sets {changed}).")


def _keeps(rule: Rule, name: str) -> bool:
    node = rule.output(name)
    return node.op == "input" and node.name == name


def update_body(
    rule: Rule, taken: set[str], helpers: set[str], betas: list[str], uses_grad: bool, traced: bool = False
) -> dict:
    """The lines of one update method (a step's ``_update``, or an ``on`` block's) for ``rule``;
    ``traced``: the body ``torch.compile`` traces (``torch_traced``: one tensor at a time, the
    step-dependent values computed per tensor as 0-d tensors from its ``state["step"]``)."""
    taken = set(taken) | {n for n, _ in rule.host}
    sched = schedule(rule, taken)
    taken |= set(sched.names.values())
    used = {n.name for n in postorder(rule.roots()) if n.op == "input" and n.attr[0] == HYPER}
    host_printer = PyPrinter(rule, helpers=helpers)
    group_host = [(n, v) for n, v in rule.host if v.kind == Kind.GROUP]
    shape_host = [(n, v) for n, v in rule.host if v.kind in (Kind.SHAPE, Kind.SCALAR)]
    host_lines = [f"{name} = {host_printer.expr(node)}" for name, node in group_host]

    foreach_lines: list[str] = []
    if not traced and not needs_per_tensor(rule):
        emitter = TorchEmitter(rule, sched, foreach=True, taken=set(taken), indent="")
        foreach_lines = emitter.emit()
        helpers |= emitter.host_printer.helpers
    single = TorchEmitter(rule, sched, foreach=False, taken=set(taken), indent="")
    single_lines = single.emit()
    helpers |= single.host_printer.helpers

    touched = _touched_states(rule)
    states = [s for s in rule.states if s.name in touched]
    tensor_states = [s.name for s in states if s.shape != "scalar"]
    prologue = []
    for s in states:
        if s.shape == "scalar":
            prologue.append(f"{s.name} = state[\"{s.name}\"]{'.item()' if s.on_host else ''}")
        elif s.when is not None:
            prologue.append(f'{s.name} = _get(state, "{s.name}", dtype)')
        else:
            prologue.append(f"{s.name} = state[\"{s.name}\"] if state[\"{s.name}\"].dtype == dtype else state[\"{s.name}\"].to(dtype)")
    shapes_used = {n.op for n in postorder(rule.roots()) if n.op in GROUPS["shape"]}
    prologue += _shape_lines(shapes_used)
    if traced and any(n.op == "input" and n.role == STEP for n in postorder(rule.roots())):
        prologue.append('t = state["step"].double()  # float64, as the eager step\'s Python floats')
    prologue += host_state_lines(rule, shape_host, host_printer, PyPrinter(rule, device=True, helpers=helpers))
    fit_group, fit_shape = _unbounded_scalars(rule)
    prologue += [_fit_line(fit_shape)] if fit_shape else []
    written = {name for name, _ in rule.outputs}
    epilogue = []
    for s in states:
        if s.shape == "scalar" or s.name not in written:
            continue
        test = f"{s.name} is not state[\"{s.name}\"]"
        if s.when is not None:
            test = f"{s.name} is not None and {test}"
        epilogue += [f"if {test}:", f"    state[\"{s.name}\"].copy_({s.name})"]
    reads = {n.name for n in postorder(rule.roots()) if n.op == "input" and n.attr[0] == REDUCED}
    reduced_lines = []
    if rule.reductions:
        names = [r.name for r in rule.reductions]
        reduced_lines = [f"{', '.join(names)}{',' if len(names) == 1 else ''} = reduced"] if reads else []
    return dict(
        hyper_lines=_hyper_lines(rule, used, betas),
        reduced_lines=reduced_lines,
        host_lines=host_lines,
        fit_lines=[_fit_line(fit_group)] if fit_group else [],
        fit_group=fit_group,
        fit_shape=fit_shape,
        foreach_lines=foreach_lines,
        tensor_states=tensor_states,
        prologue=prologue,
        single_lines=single_lines,
        epilogue=epilogue,
        uses_grad=uses_grad,
    )


def _touched_states(rule: Rule) -> set[str]:
    """The states an update body reads or changes: an ``on`` block that only moves p loads no
    other state (a scalar state's ``.item()`` would be a device sync per parameter)."""
    changed = [(name, node) for name, node in rule.outputs if not _keeps(rule, name)]
    roots = [n for _, n in rule.host] + [n for _, n in changed] + [r.arg for r in rule.reductions]
    roots += [s.when for s in rule.states if s.when is not None]
    read = {n.name for n in postorder(roots) if n.op == "input" and n.attr[0] == STATE}
    return read | {name for name, _ in changed if name != "p"}


def host_state_lines(rule: Rule, shape_host, printer: PyPrinter, device: PyPrinter | None = None) -> list[str]:
    """Per-tensor host values, each host scalar state stored as soon as its new value exists;
    values of per-tensor-scalar kind (a traced body's step-dependent values) printed by ``device``.

    The state is stored in its dtype (float32 by default, like tensor states) and read
    back, so later statements see the stored value, as they do for tensor states.
    """
    stored = {}
    late = []
    for name, node in rule.outputs:
        if name != "p" and rule.state(name).on_host:
            if node.op == "input" and node.attr[0] == "host":
                stored[node.name] = name
            else:
                late.append((name, node))
    lines = []
    for name, node in shape_host:
        lines.append(f"{name} = {(device if node.kind == Kind.SCALAR else printer).expr(node)}")
        if name in stored:
            state = stored[name]
            lines.append(f'state["{state}"].fill_({name})')
            lines.append(f'{name} = state["{state}"].item()')
    lines += [f'state["{state}"].fill_({printer.expr(node)})' for state, node in late]
    return lines


def _unbounded_scalars(rule: Rule) -> tuple[list[str], list[str]]:
    """Host values the per-element code passes to torch that may not fit a float16 (group, shape).

    torch raises instead of rounding to inf when a Python number given as ``alpha=``,
    ``value=``, a lerp weight or a clamp bound is out of the tensor dtype's range.
    """
    out: dict[Kind, list[str]] = {Kind.GROUP: [], Kind.SHAPE: []}
    seen: set[str] = set()
    cache: dict = {}
    for node in postorder([n for _, n in rule.outputs]):
        if node.op != "input" or node.kind > Kind.SHAPE or node.attr[0] not in (HYPER, HOST) or node.name in seen:
            continue
        seen.add(node.name)
        if node.attr[0] == HYPER and rule.hyper(node.name).type != "float":
            continue
        if not fits_float16(interval(node, rule, cache)):
            out[node.kind].append(node.name)
    return out[Kind.GROUP], out[Kind.SHAPE]


def _fit_line(names: list[str]) -> str:
    return f"{', '.join(names)}{',' if len(names) == 1 else ''} = _fit(dtype, {', '.join(names)})"


def _shape_lines(used: set[str], p: str = "p") -> list[str]:
    spell = {
        "numel": f"numel = {p}.numel()",
        "rows": f"rows = {p}.shape[-2] if {p}.dim() >= 2 else 1",
        "cols": f"cols = {p}.shape[-1] if {p}.dim() >= 1 else 1",
        "ndim": f"ndim = {p}.dim()",
        "channels": f"channels = {p}.shape[0] if {p}.dim() >= 1 else 1",
    }
    return [spell[s] for s in GROUPS["shape"] if s in used]


def _init_hypers(rule: Rule) -> set[str]:
    return {n.name for s in rule.states for n in postorder([s.init]) if n.op == "input" and n.attr[0] == HYPER}


def _hyper_lines(rule: Rule, used: set[str], betas: list[str]) -> list[str]:
    lines = []
    if any(b in used for b in betas):
        lines.append(f'{", ".join(betas)}{"," if len(betas) == 1 else ""} = group["betas"]')
    for h in rule.hypers:
        if h.name in used and h.name not in betas:
            lines.append(f'{h.name} = group["{h.name}"]')
    return lines


def _py_default(value) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, str):
        return f'"{value}"'
    return py_number(value)


def _signature(rule: Rule, betas: list[str]) -> list[str]:
    betas = betas or torch_api.split_betas(rule)  # split betas are still given as betas=(...)
    args = []
    for h in rule.hypers:
        if h.name in betas:
            if h.name == betas[0]:
                defaults = ", ".join(_py_default(rule.hyper(b).default) for b in betas)
                args.append(f"betas=({defaults}{',' if len(betas) == 1 else ''})")
            continue
        args.append(f"{h.name}={_py_default(h.default)}")
    return args


def _default_keys(rule: Rule, betas: list[str]) -> list[str]:
    keys = []
    for h in rule.hypers:
        if h.name in betas:
            if h.name == betas[0]:
                keys.append("betas")
            continue
        keys.append(h.name)
    return keys + [k.name for k in rule.keywords if k.value is not None]


def _checks(rule: Rule, betas: list[str]) -> list[str]:
    """The lines of ``_check_group(group)``: each hyper's type (a number may be a 1-element
    tensor, as torch allows), then its range or choices; the keywords' fixed values."""
    lines = ['_check_betas(group["betas"], group)'] if betas else []
    for h in rule.hypers:
        ref = f'group["betas"][{betas.index(h.name)}]' if h.name in betas else f'group["{h.name}"]'
        label = f"betas[{betas.index(h.name)}]" if h.name in betas else h.name
        if h.type == "float":
            lines.append(f'_check_number("{h.name}", "{label}", {ref}, group)')
        elif h.type == "bool":
            lines.append(f'_check_flag("{h.name}", {ref})')
        if h.type == "float" and h.low is not None:
            lines.append(
                f'_check_range("{h.name}", {ref}, {py_number(h.low)}, {py_number(h.high)}, '
                f"{h.low_closed}, {h.high_closed})"
            )
        elif h.type == "choice":
            options = ", ".join(f'"{c}"' for c in h.choices)
            lines.append(f"if {ref} not in ({options},):")
            ref_single = ref.replace('"', "'")
            lines.append(f'    raise ValueError(f"Invalid {h.name}: {{{ref_single}!r}} (one of {options.replace(chr(34), "")})")')
    for k in rule.keywords:
        if k.value is not None:
            value, message = torch_api.py_literal(k.value), torch_api.py_literal(k.message)
            lines.append(f'_check_keyword("{k.name}", group["{k.name}"], {value}, {message})')
    return lines + _requirement_checks(rule, betas)


def _requirement_checks(rule: Rule, betas: list[str]) -> list[str]:
    """``require CONDITION "MESSAGE"``: the condition over the group's hypers, after their checks."""
    def ref(node):
        if node.op != "input":
            return None
        return f'group["betas"][{betas.index(node.name)}]' if node.name in betas else f'group["{node.name}"]'

    printer = PyPrinter(rule, leaf=ref)
    lines = []
    for r in rule.requirements:
        lines.append(f"if not ({printer.expr(r.condition)}):")
        lines.append(f"    raise ValueError({torch_api.py_literal(r.message)})")
    return lines


def _module_doc(rule: Rule, spec_hash: str, imports: str = "torch") -> str:
    head = f"{rule.name}: {rule.doc}" if rule.doc else rule.name
    origin = f" from {rule.origin}" if rule.origin else ""
    variants = f" with variants {', '.join(rule.variants)}" if rule.variants else ""
    body = [
        head,
        "",
        f"Generated by optdsl {__version__}{origin}{variants} (spec sha256 {spec_hash[:16]}).",
        f"Self-contained: it imports only {imports}. Edit the spec and recompile rather than this file.",
        "",
        "The rule as written:",
        "",
        _indent_block(_rule_source(rule), "    "),
        "",
        "After simplification, in the order the code runs:",
        "",
        _indent_block(rule_text(rule), "    "),
    ]
    return "\n".join(body)


def _rule_source(rule: Rule) -> str:
    lines = []
    for line in rule.source.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        lines.append(stripped)
    return "\n".join(lines) or "(no source)"


def _class_doc(rule: Rule, betas: list[str], options: tuple[str, ...] = ()) -> str:
    lines = [rule.doc or rule.name, "", "Update rule (t is the step count, 1 on the first step)::", ""]
    lines.append(_indent_block(rule_text(rule), "    "))
    lines += ["", "Args:", "    params: iterable of parameters or dicts defining parameter groups."]
    for h in rule.hypers:
        if h.name in betas and h.name != betas[0]:
            continue
        if h.name in betas:
            defaults = ", ".join(format_number(rule.hyper(b).default) for b in betas)
            ranges = ", ".join(f"{b} in {rule.hyper(b).domain_text()}" for b in betas if rule.hyper(b).domain_text())
            lines.append(f"    betas: ({', '.join(betas)}), default ({defaults}){'; ' + ranges if ranges else ''}.")
            continue
        default = _py_default(h.default) if h.type != "float" else format_number(h.default)
        domain = f", in {h.domain_text()}" if h.domain_text() else ""
        lines.append(f"    {h.name}: default {default}{domain}.")
    lines += [
        "    maximize: maximize the objective instead of minimizing it.",
        "    foreach: run elementwise parts over all tensors of a group at once (default: on",
        "        accelerators; on CPU, as in torch, one tensor at a time is faster).",
        "    state_dtype: dtype of the states (default: float32, or float64 for float64 params).",
        *options,
    ]
    return "\n".join(lines)

