"""IR values and rules.

A rule is a dataflow graph of :class:`Node` values: leaves are inputs (``p``,
``g``, ``t``, hypers, the states' values before the step, hoisted host values)
and constants; each output (``p`` and every updated state) is a node computing
its new value. Statements, local names and their order are gone after lowering:
two specs that compute the same graph are the same rule.

Nodes compare by identity. :func:`intern_graph` rebuilds a graph so that equal
structure means the same node (that is CSE).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from .ops import OPS, Kind, result_kind

# Roles of input leaves. A REDUCED leaf is a group reduction's value (Rule.reductions).
PARAM, GRAD, STEP, HYPER, STATE, HOST = "param", "grad", "step", "hyper", "state", "host"
REDUCED = "reduced"

# State shapes: like p, one number per tensor, one per row (p's shape with the last
# dimension 1), one per column (p's shape with the second-to-last dimension 1).
STATE_SHAPES = ("tensor", "scalar", "row", "col")


class Node:
    """One value of the rule: ``op`` applied to ``args``; ``attr`` holds leaf data."""

    __slots__ = ("op", "args", "attr", "kind", "hint")

    def __init__(self, op: str, args: tuple[Node, ...], attr, kind: Kind, hint: str | None = None):
        self.op = op
        self.args = args
        self.attr = attr
        self.kind = kind
        self.hint = hint  # a readable name for printing (a local's name), never semantic

    def __repr__(self) -> str:
        from .printer import expr_text

        return f"<{self.kind.name} {expr_text(self)}>"

    @property
    def role(self) -> str | None:
        return self.attr[0] if self.op == "input" else None

    @property
    def name(self) -> str | None:
        return self.attr[1] if self.op == "input" else None


def fresh_name(base: str, taken: set[str]) -> str:
    """``base``, or ``base2``, ``base3``, ... whichever is not in ``taken`` (which then holds it)."""
    name, i = base, 1
    while name in taken:
        i += 1
        name = f"{base}{i}"
    taken.add(name)
    return name


def const(value: float | str) -> Node:
    if isinstance(value, bool):
        value = float(value)
    elif isinstance(value, int):
        value = float(value)
    return Node("const", (), value, Kind.GROUP)


def leaf(role: str, name: str, kind: Kind) -> Node:
    return Node("input", (), (role, name), kind)


def op(name: str, *args: Node, hint: str | None = None) -> Node:
    """Build ``name(*args)``; raises ops.KindError on kind misuse."""
    spec = OPS[name]
    if len(args) != spec.arity:
        raise TypeError(f"{name} takes {spec.arity} arguments, got {len(args)}")
    return Node(name, tuple(args), None, result_kind(name, tuple(a.kind for a in args)), hint)


def shape_scalar(name: str) -> Node:
    return Node(name, (), None, Kind.SHAPE)


def random_normal(index: int) -> Node:
    """A standard normal draw per element; ``index`` (the rule's n-th randn() call) is its
    identity: two calls are two independent draws, so CSE must never merge them."""
    return Node("randn", (), ("randn", index), Kind.TENSOR)


def rebuild(node: Node, args: tuple[Node, ...]) -> Node:
    """``node`` with new arguments (same op, attr and hint)."""
    if node.op in ("const", "input") or not OPS[node.op].arity:
        return node
    if all(a is b for a, b in zip(args, node.args)):
        return node
    return Node(node.op, args, node.attr, result_kind(node.op, tuple(a.kind for a in args)), node.hint)


# --- declarations and the rule ----------------------------------------------------


@dataclass(frozen=True)
class HyperDecl:
    """A hyperparameter: a constructor keyword and a param_groups key."""

    name: str
    type: str  # "float" | "bool" | "choice"
    default: float | bool | str
    low: float | None = None
    high: float | None = None
    low_closed: bool = True
    high_closed: bool = True
    choices: tuple[str, ...] = ()
    role: str | None = None  # "momentum": what torch's schedulers cycle (``as momentum``); not hashed

    def domain_text(self) -> str:
        from ..frontend.printer import format_number

        if self.type == "choice":
            return "{" + ", ".join(f'"{c}"' for c in self.choices) + "}"
        if self.low is None:
            return ""
        lo = "[" if self.low_closed else "("
        hi = "]" if self.high_closed else ")"
        return f"{lo}{format_number(self.low)}, {format_number(self.high)}{hi}"


@dataclass(frozen=True)
class StateDecl:
    """A value kept between steps: a tensor like ``p``, one per row or column, or a per-tensor scalar.

    ``when`` (a group/shape-kind condition, or None) says for which parameters the
    state exists: it is created the first time the condition holds for a parameter.
    """

    name: str
    shape: str  # one of STATE_SHAPES
    init: Node
    on_host: bool = False  # a scalar state computed from host values only: a Python float
    when: Node | None = None
    alias: str | None = None  # its key in the torch.optim counterpart's state (``as KEY``); not hashed
    optional: bool = False  # ``as KEY?``: the counterpart may lack it (then it starts at its init)

    @property
    def kind(self) -> Kind:
        if self.shape != "scalar":
            return Kind.TENSOR
        return Kind.SHAPE if self.on_host else Kind.SCALAR

    @property
    def is_tensor(self) -> bool:
        """Stored as a tensor of p's shape or a reduced shape (not a per-tensor scalar)."""
        return self.shape != "scalar"


@dataclass(frozen=True)
class KeywordDecl:
    """``keyword NAME [= VALUE] "MESSAGE"``: a torch.optim keyword accepted only at ``value``
    (never when ``value`` is None); another value raises ValueError with ``message``."""

    name: str
    value: float | bool | str | None
    message: str


@dataclass(frozen=True)
class RequireDecl:
    """``require CONDITION "MESSAGE"``: ``condition``, a graph over hypers and constants, must hold
    for every param group; a group where it does not raises ValueError with ``message``."""

    condition: Node
    message: str


@dataclass(frozen=True)
class Reduction:
    """A group reduction: ``op`` of ``arg`` over the tensors of a param group (``group_*``) or of
    the optimizer (``global_*``), computed before the update from the values before the step;
    the rule reads it as the GROUP leaf ``input(REDUCED, name)``."""

    name: str
    op: str
    arg: Node

    @property
    def scope(self) -> str:
        return self.op.split("_")[0]

    @property
    def kind_of_reduction(self) -> str:
        return self.op.split("_")[1]


@dataclass(frozen=True)
class Rule:
    """An update rule in IR form: what the passes transform and the backends print."""

    name: str
    doc: str
    hypers: tuple[HyperDecl, ...]
    states: tuple[StateDecl, ...]
    outputs: tuple[tuple[str, Node], ...]  # ("p", new p), (state, new value), ...
    host: tuple[tuple[str, Node], ...] = ()  # hoisted GROUP / SHAPE values, in order
    source: str = ""  # the spec's text, for docstrings and cache keys
    origin: str = ""  # where the spec came from (a path or a built-in name)
    variants: tuple[str, ...] = ()
    hoisted: bool = False  # True once hoist_host_scalars has run: host math lives in `host`
    notes: tuple[str, ...] = ()  # what passes want the user to know (e.g. a time bound hit)
    reductions: tuple[Reduction, ...] = ()  # group reductions, read through REDUCED leaves
    events: tuple[tuple[str, Rule], ...] = ()  # ("eval", rule of the `on eval` block), ...
    keywords: tuple[KeywordDecl, ...] = ()  # the counterpart's keywords the rule accepts at one value
    requirements: tuple[RequireDecl, ...] = ()  # conditions on the hypers, checked per param group

    def output(self, name: str) -> Node | None:
        for n, node in self.outputs:
            if n == name:
                return node
        return None

    def state(self, name: str) -> StateDecl:
        for s in self.states:
            if s.name == name:
                return s
        raise KeyError(name)

    def hyper(self, name: str) -> HyperDecl:
        for h in self.hypers:
            if h.name == name:
                return h
        raise KeyError(name)

    def roots(self) -> list[Node]:
        """Every node a backend must compute: outputs, hoisted values, state inits and conditions,
        group reductions' arguments (events are rules of their own)."""
        return (
            [n for _, n in self.host] + [n for _, n in self.outputs] + [s.init for s in self.states]
            + [s.when for s in self.states if s.when is not None] + [r.arg for r in self.reductions]
        )

    def reduction(self, name: str) -> Reduction:
        for r in self.reductions:
            if r.name == name:
                return r
        raise KeyError(name)

    def event(self, name: str) -> Rule | None:
        for n, rule in self.events:
            if n == name:
                return rule
        return None

    def with_(self, **changes) -> Rule:
        return replace(self, **changes)


def postorder(roots: Iterable[Node], children=None) -> Iterator[Node]:
    """Every node reachable from ``roots``, each once, arguments before users (the arguments of
    a node are ``children(node)`` if given, else ``node.args``)."""
    seen: set[int] = set()
    for root in roots:
        if id(root) in seen:
            continue
        stack: list[tuple[Node, bool]] = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                yield node
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            for a in reversed(node.args if children is None else children(node)):
                if id(a) not in seen:
                    stack.append((a, False))


def transform(roots: list[Node], fn) -> dict[int, Node]:
    """Rebuild the graph bottom-up: ``fn(node, new_args)`` returns each replacement.

    Returns a map from id(old node) to its replacement.
    """
    done: dict[int, Node] = {}
    for node in postorder(roots):
        new_args = tuple(done[id(a)] for a in node.args)
        done[id(node)] = fn(node, new_args)
    return done


def map_rule(rule: Rule, fn) -> Rule:
    """Apply a bottom-up node rewrite to every root of a rule."""
    done = transform(rule.roots(), fn)
    return rule.with_(
        host=tuple((n, done[id(v)]) for n, v in rule.host),
        outputs=tuple((n, done[id(v)]) for n, v in rule.outputs),
        states=tuple(
            replace(s, init=done[id(s.init)], when=done[id(s.when)] if s.when is not None else None)
            for s in rule.states
        ),
        reductions=tuple(replace(r, arg=done[id(r.arg)]) for r in rule.reductions),
    )


def structural_key(node: Node, ids: dict[int, int]) -> tuple:
    """A key equal for structurally equal nodes, given interned ids for arguments."""
    args = tuple(ids[id(a)] for a in node.args)
    attr = node.attr
    if node.op == "const" and isinstance(attr, float):
        attr = ("f", attr.hex()) if attr == attr else ("f", "nan")
    return (node.op, args, attr)


def intern_graph(rule: Rule) -> Rule:
    """Common-subexpression elimination: structurally equal nodes become one."""
    table: dict[tuple, Node] = {}
    ids: dict[int, int] = {}

    def fn(node: Node, args: tuple[Node, ...]) -> Node:
        new = rebuild(node, args)
        key = structural_key(new, ids)
        existing = table.get(key)
        if existing is None:
            table[key] = new
            ids[id(new)] = len(table)
            existing = new
        elif existing.hint is None and new.hint is not None:
            existing.hint = new.hint
        return existing

    return map_rule(rule, fn)


def use_counts(roots: Iterable[Node]) -> dict[int, int]:
    """How many times each node is an argument (or a root) in the graph."""
    roots = list(roots)
    counts: dict[int, int] = {}
    for node in postorder(roots):
        for a in node.args:
            counts[id(a)] = counts.get(id(a), 0) + 1
    for r in roots:
        counts[id(r)] = counts.get(id(r), 0) + 1
    return counts
