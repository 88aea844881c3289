"""Semantic checks of a parsed spec: names, order, kinds, ranges.

All problems of a file are collected and raised together as one SpecError;
warnings (an unused state, ...) are returned. Kinds follow ``ir.ops.result_kind``,
the same rule the IR verifier uses.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from ..ir.ops import GROUPS, SYMBOL_ARITH, SYMBOL_COMPARES, Kind, KindError, result_kind
from . import ast
from .errors import Diagnostic, Span, SpecError
from .names import (
    EVENTS, FUNCTIONS, GIVEN, INIT_CONSTANTS, INIT_FUNCTIONS, MAX_NAME_LENGTH, MOMENTUM_ROLE, SHAPE_NAMES, beta_run,
    reserved_reason,
)
from .parser import MAX_EXPR_DEPTH


@dataclass
class Checked:
    """A spec that passed the checks, with its warnings and the kind of each scalar state."""

    spec: ast.Spec
    warnings: list[Diagnostic] = field(default_factory=list)
    scalar_kinds: dict[str, Kind] = field(default_factory=dict)


def check(spec: ast.Spec) -> Checked:
    """Check ``spec``; raise SpecError listing every error, else return its warnings.

    A scalar state is a host value (``SHAPE`` kind: a Python float per tensor)
    unless an assignment gives it a device value (a reduction), which makes it a
    per-tensor device scalar; the check reruns until those kinds settle.
    """
    scalar_kinds = {s.name: Kind.SHAPE for s in spec.states if s.shape == "scalar"}
    while True:
        checker = _Checker(spec, scalar_kinds)
        checker.run()
        if checker.scalar_kinds == scalar_kinds:
            break
        scalar_kinds = checker.scalar_kinds
    if checker.errors:
        errors = sorted(checker.errors, key=lambda d: (d.span.line, d.span.col))
        raise SpecError(errors, spec.source, checker.warnings)
    checked = Checked(spec, checker.warnings, scalar_kinds)
    from .guard_checks import guard_errors

    errors = guard_errors(checked)
    if errors:
        raise SpecError(sorted(errors, key=lambda d: (d.span.line, d.span.col)), spec.source, checker.warnings)
    return checked


class _Checker:
    def __init__(self, spec: ast.Spec, scalar_kinds: dict[str, Kind]):
        self.spec = spec
        self.scalar_kinds = dict(scalar_kinds)
        self.errors: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []
        self.hypers: dict[str, ast.Hyper] = {}
        self.states: dict[str, ast.State] = {}
        self.locals: dict[str, Kind] = {}
        self.depths: dict[str, int] = {}  # operations nested in each local, through assignments
        self.extents: dict[str, tuple[bool, bool]] = {}  # see _extent
        self.state_reads: set[str] = set()
        self.state_writes: set[str] = set()
        # what each local's value depends on: states (and p) read after their assignment
        # in this step, and whether it holds a group reduction
        self.fresh: dict[str, frozenset[str]] = {}
        self.group_reduced: set[str] = set()
        self.assigned: dict[str, int] = {}  # state or p -> line of its first assignment so far
        self.event: str | None = None  # the `on` block being checked

    # reporting
    def error(self, span: Span, message: str, hint: str | None = None) -> None:
        self.errors.append(Diagnostic(span, message, "error", hint))

    def warn(self, span: Span, message: str) -> None:
        self.warnings.append(Diagnostic(span, message, "warning"))

    # the walk
    def run(self) -> None:
        spec = self.spec
        if spec.kind != "optimizer":
            self.error(
                spec.name_span,
                f"'{spec.name}' is a variant; compile an optimizer and apply it with --variant {spec.name}",
            )
            return
        self._check_header_name(spec.name, spec.name_span)
        self._check_docs()
        self._declare()
        for requirement in self.spec.requirements:
            self._check_requirement(requirement)
        for state in self.spec.states:
            self._check_state_init(state)
        for stmt in spec.statements:
            self._check_assign(stmt)
        if "p" not in self.locals:
            self.error(spec.name_span, f"optimizer '{spec.name}' never assigns p (the new parameter)")
        self._check_blocks()
        for name, state in self.states.items():
            if name not in self.state_reads:
                self.warn(state.name_span, f"state '{name}' is never read: it does not affect the update")
            elif name not in self.state_writes:
                self.warn(state.name_span, f"state '{name}' is never assigned: it keeps its initial value")

    def _check_header_name(self, name: str, span: Span) -> None:
        reason = reserved_reason(name)
        if reason:
            self.error(span, f"cannot name the optimizer '{name}': {reason}")

    def _check_docs(self) -> None:
        items = self.spec.items
        for index, item in enumerate(items):
            if isinstance(item, ast.Doc) and index != 0:
                self.error(item.span, "a docstring must come right after the header, once")
        if items and isinstance(items[0], ast.Doc) and not items[0].text.strip():
            self.warn(items[0].span, "empty docstring")

    def _declare(self) -> None:
        seen: dict[str, Span] = {}
        for item in self.spec.items:
            if not isinstance(item, (ast.Hyper, ast.State, ast.Keyword)):
                continue
            name, span = item.name, item.name_span
            what = {ast.Hyper: "hyper", ast.State: "state", ast.Keyword: "keyword"}[type(item)]
            if name in GIVEN:
                self.error(span, f"cannot declare '{name}': it is a given name (p, g, t)")
                continue
            reason = reserved_reason(name)
            if reason:
                self.error(span, f"cannot declare {what} '{name}': {reason}")
                continue
            if name in seen:
                first = seen[name]
                self.error(span, f"duplicate declaration of '{name}' (first declared at line {first.line})")
                continue
            seen[name] = span
            if isinstance(item, ast.Hyper):
                self._check_hyper(item)
                self.hypers[name] = item
            elif isinstance(item, ast.State):
                self.states[name] = item
            elif not item.message.strip():
                self.error(item.span, f"keyword '{name}' needs a message saying what to use instead")
        self._check_role()
        self._check_aliases()

    # what the torch.optim counterpart calls things
    def _check_role(self) -> None:
        """``as momentum``: one number hyper, named as torch's schedulers write it."""
        first: ast.Hyper | None = None
        for hyper in self.hypers.values():
            if hyper.role is None:
                continue
            if hyper.role != MOMENTUM_ROLE:
                self.error(hyper.role_span, f"unknown role '{hyper.role}': the one role is {MOMENTUM_ROLE} "
                           "(the hyper torch's schedulers cycle with cycle_momentum=True)")
            elif not isinstance(hyper.default, ast.Num):
                self.error(hyper.role_span, f"only a number hyper can play the {MOMENTUM_ROLE} role, "
                           f"and '{hyper.name}' is {'true/false' if isinstance(hyper.default, ast.Bool) else 'a choice'}")
            elif first is not None:
                self.error(hyper.role_span, f"a second hyper as {MOMENTUM_ROLE} (the first is '{first.name}' "
                           f"at line {first.name_span.line})")
            elif hyper.name not in (MOMENTUM_ROLE, "beta1"):
                self.error(hyper.role_span, f"'{hyper.name}' cannot play the {MOMENTUM_ROLE} role: torch's schedulers "
                           f"write a param group's '{MOMENTUM_ROLE}' or betas[0]",
                           hint=f"name it {MOMENTUM_ROLE}, or beta1 (the first of beta1..betaN)")
            elif hyper.name == "beta1" and not beta_run(self._float_hypers()):
                self.error(hyper.role_span, "beta1 plays the momentum role as betas[0], which needs the number "
                           "hypers beta1..betaN, without gaps")
            if hyper.role == MOMENTUM_ROLE and first is None and isinstance(hyper.default, ast.Num):
                first = hyper

    def _float_hypers(self) -> list[str]:
        return [h.name for h in self.hypers.values() if isinstance(h.default, ast.Num)]

    def _check_aliases(self) -> None:
        """``state NAME = ... as KEY``: one key per state, not the step's, not another state's name."""
        taken: dict[str, ast.State] = {}
        for state in self.states.values():
            key = state.alias
            if key is None:
                continue
            if key == "step":
                self.error(state.alias_span, "'step' is the step count's key; a state cannot take it")
            elif key.startswith("__") or key.endswith("__") or len(key) > MAX_NAME_LENGTH:
                self.error(state.alias_span, f"'{key[:40]}' cannot be a state's key: no double underscores, "
                           f"at most {MAX_NAME_LENGTH} characters")
            elif key in taken:
                self.error(state.alias_span, f"state '{taken[key].name}' is already known as '{key}' "
                           f"(line {taken[key].name_span.line})")
            elif key in self.states and key != state.name:
                self.error(state.alias_span, f"'{key}' is the name of another state: a state may take only "
                           "a key no other state has")
            else:
                taken[key] = state

    def _check_hyper(self, hyper: ast.Hyper) -> None:
        default, domain = hyper.default, hyper.domain
        if isinstance(default, ast.Str):
            if not isinstance(domain, ast.Choices):
                self.error(default.span, f"hyper '{hyper.name}' has a text default but no choices", hint='write: in {"a", "b"}')
                return
            for opt in domain.options:
                if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,63}", opt):
                    self.error(domain.span, f"choice {opt[:40]!r} must be a plain name (letters, digits, _)")
            if default.value not in domain.options:
                self.error(default.span, f"default {default.value!r} of '{hyper.name}' is not one of its choices")
            return
        if isinstance(domain, ast.Choices):
            self.error(domain.span, f"choices need a text default, e.g. hyper {hyper.name} = \"{domain.options[0]}\"")
            return
        if isinstance(default, ast.Bool):
            if domain is not None:
                self.error(domain.span, f"hyper '{hyper.name}' is true/false and takes no range")
            return
        if domain is None:
            return
        if domain.low > domain.high:
            self.error(domain.span, f"empty range {domain.text()}")
        elif not domain.contains(default.value):
            self.error(default.span, f"default {_num(default.value)} of '{hyper.name}' is outside its range {domain.text()}")

    def _check_requirement(self, requirement: ast.Require) -> None:
        """``require CONDITION "MESSAGE"``: a condition on hypers alone (checked per param group)."""
        if not requirement.message.strip():
            self.error(requirement.span, "a requirement needs a message saying what is wrong")
        others = [n for n in _names(requirement.condition) if n.id not in self.hypers]
        for name in others:
            self.error(name.span, f"a requirement reads hypers only, not '{name.id}'"
                       if name.id in GIVEN or name.id in self.states or name.id in SHAPE_NAMES
                       else f"unknown name '{name.id}'")
        if not others:
            self._kind(requirement.condition, init=True, when=True)

    # state initializers
    def _check_state_init(self, state: ast.State) -> None:
        if state.when is not None:
            self._check_when(state)
        kind = self._kind(state.init, init=True)
        if kind is None:
            return
        if state.shape == "scalar" and kind == Kind.TENSOR:
            self.error(state.init.span, f"scalar state '{state.name}' cannot start as a tensor")
        elif kind == Kind.TENSOR:
            self._check_fits(state, state.init, "start as")

    def _check_when(self, state: ast.State) -> None:
        saved = self.errors
        self.errors = []
        kind = self._kind(state.when, init=True, when=True)
        errors, self.errors = self.errors, saved
        self.errors += errors
        if kind is not None and kind > Kind.SHAPE:
            self.error(
                state.when.span,
                f"the condition of state '{state.name}' must be a group or shape scalar "
                f"(hypers, shape scalars, numbers), but it is {kind.noun}",
            )

    def _check_fits(self, state: ast.State, value: ast.Expr, verb: str) -> None:
        """A row (col) state holds one number per row (column): its value must not vary along
        the last (second-to-last) dimension."""
        if state.shape not in ("row", "col"):
            return
        last, second = self._extent(value)
        if (state.shape == "row" and last) or (state.shape == "col" and second):
            reduce = "a row* reduction (rowmean(x), ...)" if state.shape == "row" else "a col* reduction (colmean(x), ...)"
            dim = "last" if state.shape == "row" else "second-to-last"
            self.error(
                value.span,
                f"{state.shape} state '{state.name}' cannot {verb} a value that varies along the {dim} dimension",
                hint=f"{state.shape} states hold one number per {'row' if state.shape == 'row' else 'column'}: "
                f"use {reduce}, a scalar, or another {state.shape} state",
            )

    # statements
    def _check_assign(self, stmt: ast.Assign) -> None:
        target, span = stmt.target, stmt.target_span
        kind = self._kind(stmt.value, init=False)
        if target == "g" and stmt.variant is not None:
            if kind is not None and kind != Kind.TENSOR:
                self.error(stmt.value.span, f"variant '{stmt.variant}' must assign g a tensor, but this is {kind.noun}")
            self.locals["g"] = Kind.TENSOR
            return
        if target == "g" and self.event is not None:
            self.error(span, f"cannot assign 'g' in 'on {self.event}': it runs outside a step, where there is no gradient")
            return
        if target in ("g", "t"):
            self.error(span, f"cannot assign '{target}': it is given" + (" (use a variant 'on g' to change the gradient)" if target == "g" else ""))
            return
        if target in self.hypers:
            self.error(span, f"cannot assign hyper '{target}': hypers are read-only in a rule")
            return
        if target not in self.states and target != "p":
            reason = reserved_reason(target)
            if reason:
                self.error(span, f"cannot assign '{target}': {reason}")
                return
        depth = self._depth(stmt.value)
        if depth > MAX_EXPR_DEPTH:
            self.error(
                stmt.value.span,
                f"'{target}' is {depth} operations deep, counting the assignments it reads; at most {MAX_EXPR_DEPTH}",
                hint="the compiler inlines every assignment; keep long chains in a state",
            )
            depth = 0
        self.depths[target] = depth
        self.extents[target] = self._extent(stmt.value)
        if kind is None:
            self.locals.setdefault(target, Kind.TENSOR)
            self._track(target, stmt)
            return
        if target in self.states and kind == Kind.TENSOR:
            self._check_fits(self.states[target], stmt.value, "be assigned")
        if target == "p" or (target in self.states and self.states[target].shape != "scalar"):
            if kind != Kind.TENSOR:
                what = "p" if target == "p" else f"tensor state '{target}'"
                self.error(
                    stmt.value.span,
                    f"{what} must be assigned a tensor, but this is {kind.noun}",
                    hint="a per-tensor scalar broadcasts only inside tensor arithmetic, e.g. x * g",
                )
        elif target in self.states and kind == Kind.TENSOR:
            self.error(stmt.value.span, f"scalar state '{target}' cannot be assigned a tensor")
        elif target in self.states and kind == Kind.SCALAR:
            self.scalar_kinds[target] = Kind.SCALAR
        if target in self.states:
            self.state_writes.add(target)
        self.locals[target] = kind
        self._track(target, stmt)

    # what values depend on
    def _track(self, target: str, stmt: ast.Assign) -> None:
        """Record what ``target``'s new value reads: new values of states (for group reductions,
        which may only read values from before the step) and group reductions."""
        fresh: set[str] = set()
        reduced = False
        for node in ast.walk(stmt.value):
            if isinstance(node, ast.Name):
                fresh |= self.fresh.get(node.id, frozenset())
                reduced = reduced or node.id in self.group_reduced
            elif isinstance(node, ast.Call) and FUNCTIONS.get(node.func, {}).get(len(node.args)) in GROUPS["group_reduce"]:
                reduced = True
        if target in self.states or target == "p":
            self.assigned.setdefault(target, stmt.target_span.line)
            fresh.add(target)
        self.fresh[target] = frozenset(fresh)
        if reduced:
            self.group_reduced.add(target)
        else:
            self.group_reduced.discard(target)

    def _group_reduction_ok(self, expr: ast.Call, init: bool) -> bool:
        where = "a state initializer" if init else f"'on {self.event}'" if self.event else None
        if where is not None:
            self.error(expr.func_span, f"{expr.func}() cannot be used in {where}: group reductions are computed once per step, before the update")
            return False
        ok = True
        for node in ast.walk(expr.args[0]):
            if isinstance(node, ast.Name) and self.fresh.get(node.id):
                state = sorted(self.fresh[node.id])[0]
                self.error(
                    node.span,
                    f"{expr.func}() is computed before the update, from the values before the step, "
                    f"but this reads the new value of '{state}' (assigned at line {self.assigned[state]})",
                    hint="reduce the old value: move the reduction above the assignment",
                )
                ok = False
            nested = isinstance(node, ast.Name) and node.id in self.group_reduced
            if isinstance(node, ast.Call) and FUNCTIONS.get(node.func, {}).get(len(node.args)) in GROUPS["group_reduce"]:
                nested = True
            if nested:
                self.error(node.span, f"{expr.func}() cannot read another group reduction: they are all computed in one pass before the update")
                ok = False
        return ok

    # on blocks
    def _check_blocks(self) -> None:
        seen: dict[str, int] = {}
        for block in self.spec.blocks:
            if block.event not in EVENTS:
                close = difflib.get_close_matches(block.event, EVENTS, n=1)
                self.error(
                    block.event_span,
                    f"unknown event '{block.event}': an on block is for {' or '.join(EVENTS)}"
                    + (f"; did you mean '{close[0]}'?" if close else ""),
                )
                continue
            if block.event in seen:
                self.error(block.event_span, f"a second 'on {block.event}' block (the first is at line {seen[block.event]})")
                continue
            seen[block.event] = block.event_span.line
            saved = (self.locals, self.depths, self.extents, self.fresh, self.group_reduced, self.assigned)
            self.locals, self.depths, self.extents, self.fresh, self.group_reduced, self.assigned = {}, {}, {}, {}, set(), {}
            self.event = block.event
            for stmt in block.statements:
                self._check_assign(stmt)
            self.event = None
            self.locals, self.depths, self.extents, self.fresh, self.group_reduced, self.assigned = saved

    # expressions
    def _depth(self, expr: ast.Expr) -> int:
        """Nested operations in ``expr``, locals counting as deep as their values."""
        if isinstance(expr, ast.Name):
            return self.depths.get(expr.id, 0)
        if isinstance(expr, ast.Unary):
            return 1 + self._depth(expr.operand)
        if isinstance(expr, ast.Binary):
            return 1 + max(self._depth(expr.left), self._depth(expr.right))
        if isinstance(expr, ast.Call):
            return 1 + max((self._depth(a) for a in expr.args), default=0)
        return 0

    def _extent(self, expr: ast.Expr) -> tuple[bool, bool]:
        """Whether ``expr`` spans the parameter's last and second-to-last dimensions.

        False: size 1 there, after a row* (last) or col* (second-to-last) reduction,
        or for any scalar.
        """
        if isinstance(expr, ast.Name):
            if expr.id in self.extents:
                return self.extents[expr.id]
            state = self.states.get(expr.id)
            if state is not None and state.shape in ("row", "col"):
                return (state.shape == "col", state.shape == "row")
            full = expr.id in ("p", "g") or (state is not None and state.shape == "tensor")
            return (full, full)
        if isinstance(expr, ast.Unary):
            return self._extent(expr.operand)
        if isinstance(expr, ast.Binary):
            left, right = self._extent(expr.left), self._extent(expr.right)
            if expr.op == "@":
                return (right[0], left[1])
            return (left[0] or right[0], left[1] or right[1])
        if isinstance(expr, ast.Call) and expr.args:
            args = [self._extent(a) for a in expr.args]
            if expr.func.startswith("row") and expr.func in FUNCTIONS:
                return (False, args[0][1])
            if expr.func.startswith("col") and expr.func in FUNCTIONS:
                return (args[0][0], False)
            if expr.func == "transpose":
                return (args[0][1], args[0][0])
            op = FUNCTIONS.get(expr.func, {}).get(len(args))
            if op in GROUPS["reduce"] or op in GROUPS["group_reduce"]:
                return (False, False)
            if op == "newton_schulz" or op in GROUPS["chan_reduce"]:
                return args[0]
            return (any(a[0] for a in args), any(a[1] for a in args))
        return (False, False)

    def _kind(self, expr: ast.Expr, init: bool, when: bool = False) -> Kind | None:
        """The kind of ``expr``, or None after reporting an error inside it."""
        if isinstance(expr, (ast.Num, ast.Bool)):
            return Kind.GROUP
        if isinstance(expr, ast.Str):
            self.error(expr.span, "text is only allowed as a choice, compared with == or !=")
            return None
        if isinstance(expr, ast.Name):
            return self._name_kind(expr, init, when)
        if isinstance(expr, ast.Unary):
            return self._kind(expr.operand, init, when)
        if isinstance(expr, ast.Binary):
            return self._binary_kind(expr, init, when)
        if isinstance(expr, ast.Call):
            return self._call_kind(expr, init, when)
        raise AssertionError(expr)  # pragma: no cover

    def _name_kind(self, expr: ast.Name, init: bool, when: bool = False) -> Kind | None:
        name = expr.id
        if when:
            if name in self.hypers:
                return self._hyper_kind(expr)
            if name in SHAPE_NAMES:
                return Kind.SHAPE
            if name in INIT_CONSTANTS:
                return Kind.GROUP
            self.error(
                expr.span,
                f"a state's condition can read hypers and shape scalars only, not '{name}'"
                if name in GIVEN or name in self.states else f"unknown name '{name}'",
            )
            return None
        if self.event is not None and name == "g":
            self.error(expr.span, f"'on {self.event}' runs outside a step: there is no gradient g")
            return None
        if init:
            if name in INIT_CONSTANTS:
                return Kind.GROUP
            if name in ("p", "g", "t"):
                return GIVEN[name]
            if name in self.hypers:
                return self._hyper_kind(expr)
            if name in SHAPE_NAMES:
                return Kind.SHAPE
            if name in self.states:
                self.error(expr.span, f"a state initializer cannot read state '{name}'")
                return None
            self._unknown(expr, ["p", "g", *self.hypers, *SHAPE_NAMES, *INIT_CONSTANTS])
            return None
        if name in self.locals:
            if name in self.states:
                self.state_reads.add(name)
            return self.locals[name]
        if name in self.states:
            self.state_reads.add(name)
            return Kind.TENSOR if self.states[name].shape != "scalar" else self.scalar_kinds[name]
        if name in GIVEN:
            return GIVEN[name]
        if name in self.hypers:
            return self._hyper_kind(expr)
        if name in SHAPE_NAMES:
            return Kind.SHAPE
        if name in INIT_CONSTANTS:
            self.error(expr.span, f"'{name}' is only meaningful as a state's initial value", hint="write 0 or 1")
            return None
        later = [s for s in self.spec.statements if s.target == name]
        if later:
            self.error(expr.span, f"'{name}' is used before it is assigned (assigned at line {later[0].target_span.line})")
            return None
        self._unknown(expr, [*self.locals, *self.states, *GIVEN, *self.hypers, *SHAPE_NAMES])
        return None

    def _hyper_kind(self, expr: ast.Name) -> Kind | None:
        hyper = self.hypers[expr.id]
        if isinstance(hyper.default, ast.Str):
            if isinstance(hyper.domain, ast.Choices):  # else its declaration is reported already
                self.error(expr.span, f"choice hyper '{expr.id}' can only be compared, e.g. {expr.id} == \"{hyper.domain.options[0]}\"")
            return None
        return Kind.GROUP

    def _unknown(self, expr: ast.Name, candidates: list[str]) -> None:
        close = difflib.get_close_matches(expr.id, candidates, n=1)
        message = f"unknown name '{expr.id}'" + (f"; did you mean '{close[0]}'?" if close else "")
        self.error(expr.span, message)

    def _binary_kind(self, expr: ast.Binary, init: bool, when: bool = False) -> Kind | None:
        if expr.op in ("==", "!=") and self._is_choice_compare(expr):
            return Kind.GROUP
        left = self._kind(expr.left, init, when)
        right = self._kind(expr.right, init, when)
        if left is None or right is None:
            return None
        op = SYMBOL_COMPARES.get(expr.op) or SYMBOL_ARITH[expr.op]
        try:
            kind = result_kind(op, (left, right))
        except KindError as exc:
            self.error(expr.span, str(exc))
            return None
        if op == "matmul":
            columns, rows = self._extent(expr.left)[0], self._extent(expr.right)[1]
            if columns != rows:
                left_cols = "as many columns as the parameter" if columns else "one column"
                right_rows = "as many rows as the parameter" if rows else "one row"
                self.error(
                    expr.span,
                    f"'@' of shapes that never fit: the left side has {left_cols}, the right side {right_rows}",
                    hint="a row* reduction leaves one column, a col* reduction one row",
                )
        return kind

    def _is_choice_compare(self, expr: ast.Binary) -> bool:
        sides = (expr.left, expr.right)
        names = [s for s in sides if isinstance(s, ast.Name) and s.id in self.hypers and isinstance(self.hypers[s.id].default, ast.Str)]
        texts = [s for s in sides if isinstance(s, ast.Str)]
        if not texts and not names:
            return False
        if len(names) == 1 and len(texts) == 1:
            domain = self.hypers[names[0].id].domain
            if not isinstance(domain, ast.Choices):
                return True  # a text hyper without choices: its declaration is reported already
            options = domain.options
            if texts[0].value not in options:
                close = difflib.get_close_matches(texts[0].value, options, n=1)
                self.error(
                    texts[0].span,
                    f"{texts[0].value!r} is not a choice of '{names[0].id}' ({', '.join(options)})"
                    + (f"; did you mean {close[0]!r}?" if close else ""),
                )
            return True
        span = (texts or names)[0].span
        self.error(span, "compare a choice hyper with one of its choices, e.g. mode == \"name\"")
        return True

    def _call_kind(self, expr: ast.Call, init: bool, when: bool = False) -> Kind | None:
        table = FUNCTIONS.get(expr.func)
        if table is None:
            close = difflib.get_close_matches(expr.func, list(FUNCTIONS), n=1)
            self.error(expr.func_span, f"unknown function '{expr.func}'" + (f"; did you mean '{close[0]}'?" if close else ""))
            for a in expr.args:
                self._kind(a, init, when)
            return None
        kinds = [self._kind(a, init, when) for a in expr.args]
        if table.get(len(expr.args)) in GROUPS["group_reduce"] and not self._group_reduction_ok(expr, init):
            return None
        if expr.func in INIT_FUNCTIONS and not init:
            self.error(
                expr.func_span,
                f"{expr.func}() is only allowed in a state initializer: it draws once, when the state is created",
                hint=f"state x = {expr.func}() * std",
            )
            return None
        op = table.get(len(expr.args))
        if op is None:
            counts = " or ".join(str(n) for n in sorted(table))
            self.error(expr.span, f"{expr.func}() takes {counts} argument{'s' if counts != '1' else ''}, got {len(expr.args)}")
            return None
        if any(k is None for k in kinds):
            return None
        try:
            return result_kind(op, tuple(kinds))
        except KindError as exc:
            self.error(expr.span, str(exc))
            return None


def _num(x: float) -> str:
    from .printer import format_number

    return format_number(x)


def _names(expr: ast.Expr) -> list[ast.Name]:
    """The names an expression reads, in order."""
    if isinstance(expr, ast.Name):
        return [expr]
    if isinstance(expr, ast.Unary):
        return _names(expr.operand)
    if isinstance(expr, ast.Binary):
        return _names(expr.left) + _names(expr.right)
    if isinstance(expr, ast.Call):
        return [n for a in expr.args for n in _names(a)]
    return []
