"""Applying variants: a variant's statements are inlined into a rule's syntax tree.

A variant is a small spec (``variant cautious on u``) hooked

* ``on u``: its statements run right after the rule's last assignment to ``u``
  (the update direction) and may reassign ``u``;
* ``on g``: its statements run before the rule's first statement and may
  reassign ``g``, which the rule then reads.

It may read ``p``, ``g``, ``t``, the hook's ``u``, its own hypers and states,
and the rule's states and hypers by their conventional names (``m``, ``v``,
``lr``). Its locals are renamed (``mask`` -> ``cautious_mask``) so they never
meet the rule's. Problems are located in whichever file they are in.
"""

from __future__ import annotations

import dataclasses
import difflib

from . import ast
from ..ir.nodes import fresh_name
from .errors import Diagnostic, SpecError
from .names import FUNCTIONS, GIVEN, INIT_CONSTANTS, SHAPE_NAMES

HOOKS = ("u", "g")


def class_prefix(variant: ast.Spec) -> str:
    return variant.name[:1].upper() + variant.name[1:]


def local_prefix(variant: ast.Spec) -> str:
    return variant.name.lower() + "_"


def _reads(expr: ast.Expr) -> list[ast.Name]:
    return [n for n in ast.walk(expr) if isinstance(n, ast.Name)]


def _rename(expr: ast.Expr, names: dict[str, str]) -> ast.Expr:
    if isinstance(expr, ast.Name) and expr.id in names:
        return dataclasses.replace(expr, id=names[expr.id])
    if isinstance(expr, ast.Unary):
        return dataclasses.replace(expr, operand=_rename(expr.operand, names))
    if isinstance(expr, ast.Binary):
        return dataclasses.replace(expr, left=_rename(expr.left, names), right=_rename(expr.right, names))
    if isinstance(expr, ast.Call):
        return dataclasses.replace(expr, args=tuple(_rename(a, names) for a in expr.args))
    return expr


class _Applier:
    def __init__(self, rule: ast.Spec):
        self.rule = rule
        self.items: list[ast.Item] = [i for i in rule.items if not isinstance(i, ast.Use)]
        self.errors: list[Diagnostic] = []
        self.taken: set[str] = {i.name for i in self.items if isinstance(i, (ast.Hyper, ast.State))}
        self.taken |= {i.target for i in self.items if isinstance(i, ast.Assign)} | set(GIVEN)
        self.rule_states = {s.name for s in rule.states}
        self.rule_hypers = {h.name for h in rule.hypers}
        self.g_insert = next((k for k, i in enumerate(self.items) if isinstance(i, ast.Assign)), len(self.items))
        self.applied: list[ast.Spec] = []

    def error(self, span, message: str, hint: str | None = None) -> None:
        self.errors.append(Diagnostic(span, message, "error", hint))

    def apply(self, v: ast.Spec) -> None:
        if v.kind != "variant":
            self.error(v.name_span, f"'{v.name}' is an optimizer, not a variant (a variant starts with: variant NAME on u)")
            return
        if v.hook not in HOOKS:
            self.error(v.name_span, f"variant '{v.name}' hooks '{v.hook}'; a variant hooks 'u' (the update) or 'g' (the gradient)")
            return
        if any(a.name.lower() == v.name.lower() for a in self.applied):
            self.error(v.name_span, f"variant '{v.name}' is applied twice")
            return
        if v.hook == "u" and not any(isinstance(i, ast.Assign) and i.target == "u" for i in self.items):
            self.error(
                v.name_span,
                f"variant '{v.name}' hooks u, but optimizer '{self.rule.name}' never assigns u",
                hint="name the rule's update direction u, e.g. u = m / (sqrt(v) + eps); p = p - lr * u",
            )
            return
        self._declare(v)
        own = {i.name for i in v.items if isinstance(i, (ast.Hyper, ast.State))}
        locals_ = _variant_locals(v, own)
        renames: dict[str, str] = {}
        for local in locals_:
            if local not in renames:
                renames[local] = self._fresh(local_prefix(v) + local)
        self._check_reads(v, own, locals_)
        self._check_writes(v, own | locals_)
        statements = [
            dataclasses.replace(s, target=renames.get(s.target, s.target), value=_rename(s.value, renames), variant=v.name)
            for s in v.statements
        ]
        if v.hook == "u":
            last_u = max(k for k, i in enumerate(self.items) if isinstance(i, ast.Assign) and i.target == "u")
            self.items[last_u + 1:last_u + 1] = statements
        else:
            self.items[self.g_insert:self.g_insert] = statements
            self.g_insert += len(statements)
        self.applied.append(v)

    def _fresh(self, name: str) -> str:
        return fresh_name(name, self.taken)

    def _declare(self, v: ast.Spec) -> None:
        """Append the variant's hypers and states to the rule; names must not clash."""
        for item in v.items:
            if isinstance(item, ast.Keyword):
                self.error(item.name_span, f"variant '{v.name}' cannot declare keyword '{item.name}': keywords "
                           "belong to an optimizer (its torch.optim counterpart's arguments)")
                continue
            if isinstance(item, ast.Require):
                self.error(item.span, f"variant '{v.name}' cannot require a condition: requirements belong "
                           "to an optimizer (a condition on its hypers)")
                continue
            if not isinstance(item, (ast.Hyper, ast.State)):
                continue
            if item.name in self.taken:
                owner = "optimizer" if item.name in self.rule_hypers | self.rule_states else "an earlier variant or the optimizer"
                self.error(
                    item.name_span,
                    f"{'hyper' if isinstance(item, ast.Hyper) else 'state'} '{item.name}' of variant '{v.name}' "
                    f"clashes with '{item.name}' of {owner} '{self.rule.name}'",
                    hint=f"rename it, e.g. {local_prefix(v)}{item.name}",
                )
                continue
            self.taken.add(item.name)
            self.items.append(item)

    def _check_reads(self, v: ast.Spec, own: set[str], locals_: set[str]) -> None:
        allowed = own | locals_ | set(GIVEN) | set(SHAPE_NAMES) | {v.hook}
        exprs = [s.value for s in v.statements] + [s.init for s in v.states]
        reported: set[str] = set()
        for expr in exprs:
            for name in _reads(expr):
                n = name.id
                if n in allowed or n in INIT_CONSTANTS or n in FUNCTIONS or n in reported:
                    continue
                if v.hook == "g" and n == "u":
                    self.error(name.span, f"variant '{v.name}' runs before the rule ('on g'), so it cannot read u")
                    reported.add(n)
                    continue
                if n not in self.rule_states | self.rule_hypers:
                    reported.add(n)
                    have = sorted(self.rule_states)
                    close = difflib.get_close_matches(n, have + sorted(self.rule_hypers), n=1)
                    self.error(
                        name.span,
                        f"variant '{v.name}' reads '{n}', which optimizer '{self.rule.name}' does not have"
                        + (f" (its states: {', '.join(have)})" if have else " (it has no states)"),
                        hint=f"did you mean '{close[0]}'?" if close else None,
                    )

    def _check_writes(self, v: ast.Spec, own: set[str]) -> None:
        for s in v.statements:
            t = s.target
            if t == v.hook or t in own:
                continue
            if t in ("p", "t") or t in self.rule_states or t in self.rule_hypers or t in HOOKS:
                self.error(
                    s.target_span,
                    f"variant '{v.name}' (on {v.hook}) cannot assign '{t}': it may assign {v.hook}, its own states and locals",
                )

    def result(self) -> ast.Spec:
        prefix = "".join(class_prefix(v) for v in self.applied)
        items = list(self.items)
        if self.applied:
            notes = "\n".join(f"- {v.name} (on {v.hook}): {_first_line(v.doc)}" for v in self.applied)
            doc = (self.rule.doc + "\n\n" if self.rule.doc else "") + "With variants, applied in this order:\n" + notes
            docs = [k for k, i in enumerate(items) if isinstance(i, ast.Doc)]
            if docs:
                items[docs[0]] = dataclasses.replace(items[docs[0]], text=doc)
            else:
                items.insert(0, ast.Doc(doc))
        if not self.applied:
            return dataclasses.replace(self.rule, items=tuple(items))
        sources = {self.rule.span.file: self.rule.source or ""}
        sources.update({v.span.file: v.source or "" for v in self.applied})
        return dataclasses.replace(self.rule, name=prefix + self.rule.name, items=tuple(items), source=sources)


def _variant_locals(v: ast.Spec, own: set[str]) -> set[str]:
    """Names the variant assigns before it reads them: its own locals, whatever the rule calls
    its states. A name read first (``m``) is the rule's, and assigning it is an error."""
    read: set[str] = set()
    locals_: set[str] = set()
    for s in v.statements:
        read |= {n.id for n in _reads(s.value)} - locals_
        t = s.target
        if t not in locals_ and t != v.hook and t not in own and t not in read and t not in ("p", "t", "g", "u"):
            locals_.add(t)
    return locals_


def _first_line(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0] if text else "(no docstring)"


def apply_variants(rule: ast.Spec, variants: list[ast.Spec]) -> ast.Spec:
    """The rule with each variant inlined, in order; SpecError lists every problem."""
    applier = _Applier(rule)
    for v in variants:
        applier.apply(v)
    if applier.errors:
        sources = {rule.span.file: rule.source or ""}
        sources.update({v.span.file: v.source or "" for v in variants})
        raise SpecError(applier.errors, sources)
    return applier.result()


def probe_rule(variant: ast.Spec) -> ast.Spec:
    """A minimal optimizer exposing every name ``variant`` reads, to check a variant file alone."""
    own = {i.name for i in variant.items if isinstance(i, (ast.Hyper, ast.State))}
    locals_ = {s.target for s in variant.statements}
    external = []
    for expr in [s.value for s in variant.statements] + [s.init for s in variant.states]:
        for name in _reads(expr):
            n = name.id
            if n in own or n in locals_ or n in GIVEN or n in SHAPE_NAMES or n in INIT_CONSTANTS or n in external:
                continue
            if n != "u":
                external.append(n)
    lines = ["optimizer Probe"]
    lines += [f"state {n} = zeros" for n in external]
    lines += ["u = g" + "".join(f" + 0 * {n}" for n in external), "p = p - 0.001 * u"]
    from .parser import parse

    return parse("\n".join(lines) + "\n", "<probe>")
