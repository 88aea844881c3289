"""Checks that need the rule's dataflow: where conditional states are used, and which ranks
rank-dependent operations can meet.

* A state declared ``when COND`` exists only for parameters where COND holds, so every
  read and every write of it must be guarded by COND: under a ``where`` whose host
  condition implies it (``ir.guards``). A write that keeps the old value
  (``v = where(c, new, v)``) does not count where it keeps it.
* An operation that needs a rank (``newton_schulz``, ``@``, ``transpose`` and column
  reductions need two dimensions, row and channel reductions one) is an error when the
  conditions on its path leave only smaller ranks (``where(ndim == 1, colsum(g), ...)``);
  otherwise a parameter of too small a rank gets a clear error at its first step.
"""

from __future__ import annotations

from ..ir import guards as G
from ..ir.nodes import STATE, Node, Rule, postorder
from ..ir.ops import RANK_NEEDED
from .checker import Checked
from .errors import Diagnostic, Span

STATE_RANK = {"row": 1, "col": 2}


def guard_errors(checked: Checked) -> list[Diagnostic]:
    from ..ir.lower import lower

    spans: dict[int, Span] = {}
    rule = lower(checked, spans=spans)
    decls = {s.name: s for s in checked.spec.states}
    errors: list[Diagnostic] = []
    for part in [rule] + [sub for _, sub in rule.events]:
        analysis = analyse(part, rule)
        errors += _state_errors(part, analysis, spans, decls)
        errors += _rank_errors(part, analysis, spans)
    for s in rule.states:
        if s.when is not None and s.shape in STATE_RANK:
            guards = G.Guards({}, {}, {})
            ranks = G.reachable_ranks(guards.condition_of(s.when))
            if ranks and max(ranks) < STATE_RANK[s.shape]:
                decl = decls[s.name]
                errors.append(Diagnostic(
                    decl.when.span,
                    f"{s.shape} state '{s.name}' needs parameters with at least {STATE_RANK[s.shape]} "
                    f"dimension{'s' if STATE_RANK[s.shape] > 1 else ''}, but it exists only where ndim is "
                    f"{_ranks_text(ranks)}", "error"))
    return _unique(errors)


def _unique(errors: list[Diagnostic]) -> list[Diagnostic]:
    seen, out = set(), []
    for e in errors:
        key = (e.span.line, e.span.col, e.message)
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out


class Analysis:
    """Guards of one rule's graph. A state's output is entered below its keep-the-old-value
    branches: ``v = where(c, new, v)`` reads the old ``v`` only where it computes ``new``
    (other uses of the same value, reading the new ``v``, are followed in full)."""

    def __init__(self, rule: Rule, whole: Rule):
        scratch = G.Guards({}, {}, dict(rule.host))
        roots: list[tuple[Node, G.Guard]] = []
        for name, root in rule.outputs:
            if name == "p":
                roots.append((root, G.TRUE))
            else:
                self._enter(root, name, G.TRUE, roots, scratch)
        if rule is whole:
            roots += [(r.arg, G.TRUE) for r in whole.reductions]
        self.guards = G.compute(roots, dict(rule.host))

    def _enter(self, node: Node, state: str, guard: G.Guard, roots: list, scratch: G.Guards) -> None:
        if node.op == "input" and node.attr == (STATE, state):
            return
        if not G.is_host_where(node):
            roots.append((node, guard))
            return
        cond = node.args[0]
        roots.append((cond, guard))
        self._enter(node.args[1], state, G.conjoin(guard, scratch.condition_of(cond)), roots, scratch)
        self._enter(node.args[2], state, G.conjoin(guard, scratch.negation_of(cond)), roots, scratch)

    def write_guard(self, root: Node, state: str) -> G.Guard:
        """Where the output ``root`` of ``state`` changes it (not where it keeps the old value)."""
        if root.op == "input" and root.attr == (STATE, state):
            return G.FALSE
        if not G.is_host_where(root):
            return G.TRUE
        cond = root.args[0]
        yes = G.conjoin(self.guards.condition_of(cond), self.write_guard(root.args[1], state))
        no = G.conjoin(self.guards.negation_of(cond), self.write_guard(root.args[2], state))
        return G.disjoin(yes, no)

def analyse(rule: Rule, whole: Rule) -> Analysis:
    return Analysis(rule, whole)


def _state_errors(rule: Rule, analysis: Analysis, spans: dict[int, Span], decls) -> list[Diagnostic]:
    errors = []
    guards = analysis.guards
    parents: dict[int, list[Node]] = {}
    for root in rule.roots():
        for node in postorder([root]):
            for a in node.args:
                parents.setdefault(id(a), []).append(node)
    leaves = {n.attr[1]: n for n in postorder(rule.roots()) if n.op == "input" and n.attr[0] == STATE}
    for s in rule.states:
        if s.when is None:
            continue
        condition = guards.condition_of(s.when)
        decl = decls[s.name]
        where = _text(decl.when)
        leaf = leaves.get(s.name)
        if leaf is not None and not G.implies(guards[leaf], condition):
            bad = [p for p in parents.get(id(leaf), []) if not G.implies(guards[p], condition) and id(p) in spans]
            span = spans[id(bad[0])] if bad else decl.name_span
            errors.append(Diagnostic(
                span,
                f"state '{s.name}' exists only where {where} (line {decl.span.line}), "
                f"but this reads it where that is not known to hold",
                "error",
                hint=f"read it inside where({where}, ..., ...)",
            ))
        out = rule.output(s.name)
        if out is not None and not G.implies(analysis.write_guard(out, s.name), condition):
            span = spans.get(id(out), decl.name_span)
            errors.append(Diagnostic(
                span,
                f"state '{s.name}' exists only where {where} (line {decl.span.line}), "
                f"but this assigns it where that is not known to hold",
                "error",
                hint=f"keep its value elsewhere: {s.name} = where({where}, <new value>, {s.name})",
            ))
    return errors


def _rank_errors(rule: Rule, analysis: Analysis, spans: dict[int, Span]) -> list[Diagnostic]:
    errors = []
    for node in postorder(rule.roots()):
        need = RANK_NEEDED.get(node.op)
        if need is None:
            continue
        ranks = G.reachable_ranks(analysis.guards[node])
        if ranks and max(ranks) < need and id(node) in spans:
            fn = "@" if node.op == "matmul" else f"{node.op}()"
            errors.append(Diagnostic(
                spans[id(node)],
                f"{fn} needs parameters with at least {need} dimension{'s' if need > 1 else ''}, "
                f"but it is only computed where ndim is {_ranks_text(ranks)}",
                "error",
            ))
    return errors


def _ranks_text(ranks: set[int]) -> str:
    return " or ".join(str(r) for r in sorted(ranks))


def _text(expr) -> str:
    from .printer import print_expr

    return print_expr(expr)
