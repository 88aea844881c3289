"""Duplicate detection: a candidate is trained only if no earlier one is the same rule.

Four keys, cheapest first, each a different notion of "the same":

* ``text``: the canonical spec text;
* ``structural``: the compiler's canonical hash (``ir.hashing``): equal up to
  names, statement order and dead code;
* ``symbolic``: the SymPy canonical form (``passes.sympy_simplify``): equal up
  to algebra (``m/sqrt(m*m)`` is ``sign(m)``, sums in any order);
* ``numeric``: the probe hash (``probe``): equal steps on fixed random inputs.

``Deduper`` maps every key of every candidate seen to that candidate's id;
the first key found names the original a duplicate repeats.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..compiler import from_text, lower
from ..ir.hashing import canonical_hash
from ..ir.nodes import Rule
from ..passes.sympy_simplify import canonical_form
from .probe import probe_hash

KEYS = ("text", "structural", "symbolic", "numeric")


@dataclass(frozen=True)
class Fingerprint:
    text: str
    structural: str
    symbolic: str | None
    numeric: str | None  # None when the probe could not run the rule

    def keys(self) -> list[tuple[str, str]]:
        return [(k, v) for k in KEYS if (v := getattr(self, k)) is not None]


def lower_text(text: str) -> Rule:
    """The IR rule of candidate text (checked)."""
    rule, _ = lower(from_text(text, "<candidate>"))
    return rule


def fingerprint(text: str, rule: Rule | None = None) -> Fingerprint:
    rule = rule if rule is not None else lower_text(text)
    try:
        numeric = probe_hash(rule)
    except (RuntimeError, ValueError, TypeError, ZeroDivisionError, OverflowError):
        numeric = None
    return Fingerprint(text, canonical_hash(rule), canonical_form(rule), numeric)


class Deduper:
    """Every key seen -> the id of the first candidate that had it."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], int] = {}

    def find(self, fp: Fingerprint) -> tuple[str, int] | None:
        """(the key that matched, the original's id), or None for a new rule."""
        for key in fp.keys():
            if key in self.seen:
                return key[0], self.seen[key]
        return None

    def add(self, fp: Fingerprint, candidate_id: int) -> None:
        for key in fp.keys():
            self.seen.setdefault(key, candidate_id)
