"""The syntax tree of a spec: frozen nodes, each with a source span.

Spans do not take part in equality, so ``parse(print(tree)) == tree`` compares
what a spec says, not where it says it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import UNKNOWN_SPAN, Span


def _span() -> Span:
    return field(default=UNKNOWN_SPAN, compare=False, repr=False)


# --- expressions ---------------------------------------------------------------------


@dataclass(frozen=True)
class Num:
    value: float
    span: Span = _span()


@dataclass(frozen=True)
class Bool:
    value: bool
    span: Span = _span()


@dataclass(frozen=True)
class Str:
    value: str
    span: Span = _span()


@dataclass(frozen=True)
class Name:
    id: str
    span: Span = _span()


@dataclass(frozen=True)
class Unary:
    op: str  # "-"
    operand: Expr
    span: Span = _span()


@dataclass(frozen=True)
class Binary:
    op: str  # + - * / @ ^  and comparisons < <= > >= == !=
    left: Expr
    right: Expr
    span: Span = _span()


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Expr, ...]
    span: Span = _span()
    func_span: Span = _span()


Expr = Num | Bool | Str | Name | Unary | Binary | Call

COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")


# --- declarations and statements ----------------------------------------------------


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    low_closed: bool
    high_closed: bool
    span: Span = _span()

    def contains(self, x: float) -> bool:
        above = x >= self.low if self.low_closed else x > self.low
        below = x <= self.high if self.high_closed else x < self.high
        return above and below

    def text(self) -> str:
        lo = "[" if self.low_closed else "("
        hi = "]" if self.high_closed else ")"
        return f"{lo}{_bound(self.low)}, {_bound(self.high)}{hi}"


def _bound(x: float) -> str:
    from .printer import format_number

    return format_number(x)


@dataclass(frozen=True)
class Choices:
    options: tuple[str, ...]
    span: Span = _span()

    def contains(self, x: object) -> bool:
        return x in self.options


@dataclass(frozen=True)
class Hyper:
    name: str
    default: Num | Bool | Str
    domain: Interval | Choices | None
    span: Span = _span()
    name_span: Span = _span()
    role: str | None = None  # ``as momentum``: the hyper torch's schedulers cycle as momentum
    role_span: Span = _span()


@dataclass(frozen=True)
class State:
    name: str
    shape: str  # "tensor" | "scalar" | "row" | "col"
    init: Expr
    span: Span = _span()
    name_span: Span = _span()
    when: Expr | None = None  # the state exists only for parameters where this holds
    alias: str | None = None  # ``as NAME``: its key in the torch.optim counterpart's state
    optional: bool = False  # ``as NAME?``: the counterpart may lack it (it then starts at its initial value)
    alias_span: Span = _span()


@dataclass(frozen=True)
class Keyword:
    """``keyword NAME [= VALUE] "MESSAGE"``: a keyword argument of the torch.optim counterpart
    that the rule accepts only at VALUE (kept as a param-group key), or never without one;
    any other value raises ValueError with MESSAGE."""

    name: str
    value: Num | Bool | Str | None
    message: str
    span: Span = _span()
    name_span: Span = _span()


@dataclass(frozen=True)
class Assign:
    target: str
    value: Expr
    span: Span = _span()
    target_span: Span = _span()
    variant: str | None = field(default=None, compare=False)  # set when inlined from a variant


@dataclass(frozen=True)
class Use:
    variants: tuple[str, ...]
    span: Span = _span()


@dataclass(frozen=True)
class Doc:
    text: str
    span: Span = _span()


@dataclass(frozen=True)
class OnBlock:
    """``on EVENT:`` and its indented statements: what the optimizer's EVENT() method does."""

    event: str
    statements: tuple[Assign, ...]
    span: Span = _span()
    event_span: Span = _span()


@dataclass(frozen=True)
class Require:
    """``require CONDITION "MESSAGE"``: a condition on the hypers every param group must meet,
    e.g. torch's SGD: Nesterov momentum needs a momentum and no dampening."""

    condition: Expr
    message: str
    span: Span = _span()


Item = Doc | Hyper | State | Keyword | Require | Use | Assign | OnBlock


@dataclass(frozen=True)
class Spec:
    """A whole `.opt` file: an optimizer rule or a variant."""

    kind: str  # "optimizer" | "variant"
    name: str
    hook: str | None  # for variants: "u" or "g"
    items: tuple[Item, ...]
    span: Span = _span()
    name_span: Span = _span()
    source: str | None = field(default=None, compare=False, repr=False)

    @property
    def doc(self) -> str:
        docs = [i.text for i in self.items if isinstance(i, Doc)]
        return docs[0] if docs else ""

    @property
    def hypers(self) -> tuple[Hyper, ...]:
        return tuple(i for i in self.items if isinstance(i, Hyper))

    @property
    def states(self) -> tuple[State, ...]:
        return tuple(i for i in self.items if isinstance(i, State))

    @property
    def keywords(self) -> tuple[Keyword, ...]:
        return tuple(i for i in self.items if isinstance(i, Keyword))

    @property
    def requirements(self) -> tuple[Require, ...]:
        return tuple(i for i in self.items if isinstance(i, Require))

    @property
    def statements(self) -> tuple[Assign, ...]:
        return tuple(i for i in self.items if isinstance(i, Assign))

    @property
    def blocks(self) -> tuple[OnBlock, ...]:
        return tuple(i for i in self.items if isinstance(i, OnBlock))

    @property
    def uses(self) -> tuple[str, ...]:
        return tuple(v for i in self.items if isinstance(i, Use) for v in i.variants)


def walk(expr: Expr):
    """Yield every node of an expression, parents before children."""
    yield expr
    if isinstance(expr, Unary):
        yield from walk(expr.operand)
    elif isinstance(expr, Binary):
        yield from walk(expr.left)
        yield from walk(expr.right)
    elif isinstance(expr, Call):
        for a in expr.args:
            yield from walk(a)
