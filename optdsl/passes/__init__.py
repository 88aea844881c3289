"""The optimization passes: a printable sequence of small ``Rule -> Rule`` functions.

Each pass keeps what the rule computes (the tests check it numerically on random
inputs) and the IR is verified after every one. SymPy is imported lazily by the
simplification pass only, so loading a compiled optimizer never pays for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..ir.nodes import Rule, intern_graph
from ..ir.verify import verify
from .dead import eliminate_dead_code, eliminate_dead_state
from .hoist import hoist_host_scalars

Pass = Callable[[Rule], Rule]


def simplify_with_sympy(rule: Rule) -> Rule:
    """SymPy simplification of every definition, within a time budget."""
    from .sympy_simplify import simplify_with_sympy as run

    return run(rule)


def eliminate_common_subexpressions(rule: Rule) -> Rule:
    """Structurally equal values become one (computed once)."""
    return intern_graph(rule)


PIPELINE: tuple[Pass, ...] = (
    eliminate_dead_state,
    eliminate_common_subexpressions,
    simplify_with_sympy,
    eliminate_common_subexpressions,
    hoist_host_scalars,
    eliminate_common_subexpressions,
    eliminate_dead_code,
)

NO_SYMPY: tuple[Pass, ...] = tuple(p for p in PIPELINE if p is not simplify_with_sympy)


def run_passes(rule: Rule, passes: Sequence[Pass] = PIPELINE, trace: list | None = None) -> Rule:
    """Apply ``passes`` in order, verifying the IR after each; ``trace`` collects (name, rule).

    The rules of ``on`` blocks (``rule.events``) then get the same passes, except dead
    state elimination: which states live is decided for the whole optimizer, above.
    """
    verify(rule)
    for p in passes:
        rule = verify(p(rule))
        if trace is not None:
            trace.append((p.__name__, rule))
    if rule.events:
        event_passes = [p for p in passes if p is not eliminate_dead_state]
        events = []
        for name, sub in rule.events:
            sub = sub.with_(states=rule.states)
            for p in event_passes:
                sub = p(sub).with_(states=rule.states)
            events.append((name, sub))
        rule = verify(rule.with_(events=tuple(events)))
    return rule


def describe(passes: Sequence[Pass] = PIPELINE) -> str:
    """The pipeline as text, one pass a line with its summary."""
    lines = []
    for i, p in enumerate(passes, 1):
        summary = (p.__doc__ or "").strip().splitlines()[0] if p.__doc__ else ""
        lines.append(f"{i}. {p.__name__}: {summary}")
    return "\n".join(lines)
