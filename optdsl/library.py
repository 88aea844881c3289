"""The table of built-in specs (``optdsl table``, ``docs/specs.md``), generated from the specs.

Static columns come from each spec through the compiler: its name, the paper and the
reference its default matches (read from the docstring, which follows a convention:
see :func:`parse_docstring`), its states and its memory traffic (the cost model of
``optdsl explain``). The tolerance column is measured, not typed: it is read from
``docs/spec_tolerances.json``, written by ``bench/spec_tolerances.py``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .compiler import SpecSource, builtin_specs, lower, optimize, resolve
from .ir.cost import traffic

TOLERANCES_FILE = Path("docs") / "spec_tolerances.json"
REGENERATE = "python bench/spec_tolerances.py && optdsl table -o docs/specs.md"
_YEAR = re.compile(r"\b(1[89]|20)\d\d\b")
_REFERENCE_LEAD = ("Matches ", "Default matches ")
_STATE_SHAPES = ("tensor", "row", "col", "scalar")


class DocConventionError(ValueError):
    """A spec whose docstring does not follow the convention the table is generated from."""


@dataclass(frozen=True)
class DocFields:
    title: str
    paper: str
    reference: str


@dataclass(frozen=True)
class StateInfo:
    name: str
    shape: str  # tensor, row, col or scalar
    conditional: bool  # declared with `when`: kept only for some parameters


@dataclass(frozen=True)
class SpecRow:
    name: str  # the file stem, e.g. "adamw"
    class_name: str
    title: str
    paper: str
    reference: str
    states: tuple[StateInfo, ...]
    bytes_fp32: int  # read + written per parameter per step, fp32 params, grads and states
    reduction_bytes_fp32: int  # re-read by whole-tensor or group reductions (a second pass)
    tolerance: dict | None  # the measured entry of spec_tolerances.json, None when absent


# --- the docstring convention ---------------------------------------------------------------------


def _unwrap(text: str) -> str:
    """One line: a path broken after '/' is joined, every other run of whitespace is one space."""
    return re.sub(r"\s+", " ", re.sub(r"/\s*\n\s*", "/", text)).strip()


def _closing_group(text: str) -> tuple[int, int] | None:
    """(start, end) of the parenthesized group that ends ``text`` (after an optional '.')."""
    end = len(text.rstrip(".")) - 1
    if end < 0 or text[end] != ")":
        return None
    depth = 0
    for i in range(end, -1, -1):
        depth += {")": 1, "(": -1}.get(text[i], 0)
        if depth == 0:
            return i, end
    return None


def _first_sentence(text: str) -> str:
    """``text`` up to the first ':' or sentence-ending '.' outside parentheses."""
    depth = 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        at_end = i + 1 == len(text) or text[i + 1].isspace()
        if depth == 0 and (ch == ":" or (ch == "." and at_end)):
            return text[:i]
    return text


def parse_docstring(name: str, doc: str) -> DocFields:
    """The title, paper and reference of a spec's docstring, which must read::

        Title (Authors, year, venue or arXiv id).

        Matches REFERENCE: details...   (or "Default matches REFERENCE: ...", when options
                                          select other references)

    REFERENCE ends at the first ':' or '.' outside parentheses. Raises DocConventionError
    naming the spec when the docstring does not follow this.
    """
    paragraphs = [_unwrap(p) for p in re.split(r"\n\s*\n", doc.strip()) if p.strip()]
    if len(paragraphs) < 2:
        raise DocConventionError(f"{name}: the docstring needs a title paragraph and a 'Matches ...' paragraph")
    first, second = paragraphs[0], paragraphs[1]
    group = _closing_group(first)
    if group is None or not _YEAR.search(first[group[0]:group[1]]):
        raise DocConventionError(
            f"{name}: the docstring's first paragraph must end with the citation in parentheses "
            f"(authors, year, ...): {first!r}"
        )
    lead = next((lead for lead in _REFERENCE_LEAD if second.startswith(lead)), None)
    if lead is None:
        raise DocConventionError(
            f"{name}: the docstring's second paragraph must start with 'Matches ' or 'Default matches ' "
            f"and name the reference: {second[:80]!r}"
        )
    title = first[: group[0]].strip().rstrip(",")
    return DocFields(title, first[group[0] + 1 : group[1]].strip(), _first_sentence(second[len(lead):]).strip())


# --- rows --------------------------------------------------------------------------------------------


def _states(rule) -> tuple[StateInfo, ...]:
    return tuple(StateInfo(s.name, s.shape, s.when is not None) for s in rule.states)


def spec_row(src: SpecSource, tolerance: dict | None = None) -> SpecRow:
    """The table row of one spec (``src`` from ``optdsl.compiler.resolve`` or ``from_text``)."""
    rule, _ = lower(src)
    optimized = optimize(rule)
    fields = parse_docstring(src.file, rule.doc)
    cost = traffic(optimized, 4, 4, 4)
    return SpecRow(
        name=Path(src.file).stem, class_name=rule.name, title=fields.title, paper=fields.paper,
        reference=fields.reference, states=_states(optimized), bytes_fp32=cost.total,
        reduction_bytes_fp32=cost.reduction_bytes, tolerance=tolerance,
    )


def default_tolerances_path() -> Path:
    """``docs/spec_tolerances.json`` of the checkout this package runs from."""
    return Path(__file__).resolve().parent.parent / TOLERANCES_FILE


def load_tolerances(path: Path | None = None) -> dict:
    """The measured entries by spec name; empty when the file is absent (an installed package)."""
    path = default_tolerances_path() if path is None else Path(path)
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))["specs"]


def spec_table(names: list[str] | None = None, tolerances: dict | None = None) -> list[SpecRow]:
    """One row per built-in spec (or per name in ``names``), in name order."""
    tolerances = load_tolerances() if tolerances is None else tolerances
    names = sorted(builtin_specs()) if names is None else names
    return [spec_row(resolve(name), tolerances.get(name)) for name in names]


# --- markdown ----------------------------------------------------------------------------------------

COLUMNS = (
    "Spec", "Paper", "Default matches", "Max rel. error, 200 steps", "Measured against", "States",
    "Bytes / param / step (fp32)",
)


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*")


def states_text(states: tuple[StateInfo, ...]) -> str:
    """E.g. ``2 tensor (m, v), 1 scalar (lr_ema)``; a conditional (``when``) state is marked †."""
    parts = []
    for shape in _STATE_SHAPES:
        named = [s.name + ("†" if s.conditional else "") for s in states if s.shape == shape]
        if named:
            parts.append(f"{len(named)} {shape} ({', '.join(named)})")
    return ", ".join(parts) or "none"


def tolerance_text(entry: dict | None) -> tuple[str, str]:
    """(error, what it was measured against) for a spec_tolerances.json entry."""
    if entry is None or entry.get("max_rel_err") is None:
        reason = (entry or {}).get("reason", "no entry in docs/spec_tolerances.json")
        return "not measured", reason
    shapes = f"; shapes {entry['shapes']}" if entry.get("shapes") else ""
    return f"{entry['max_rel_err']:.1e}", f"{entry['reference']} ({entry['case']}{shapes})"


def bytes_text(row: SpecRow) -> str:
    extra = f" + {row.reduction_bytes_fp32} re-read" if row.reduction_bytes_fp32 else ""
    return f"{row.bytes_fp32}{extra}"


def markdown_table(rows: list[SpecRow]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        error, against = tolerance_text(row.tolerance)
        cells = [
            f"`{row.name}` ({row.class_name})", row.paper, row.reference, error, against, states_text(row.states),
            bytes_text(row),
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


_HEADER = """# Built-in specs

<!-- Generated from specs/*.opt and docs/spec_tolerances.json: do not edit by hand. -->

This page is generated: do not edit it. Regenerate it with

    {regenerate}

(the first command measures the tolerances, a few minutes; the second writes this
page from the specs and the measurements; `optdsl table` prints the table alone).

* **Paper** and **Default matches** are read from each spec's docstring: its first
  paragraph ends with the citation in parentheses, its second starts with
  "Matches REFERENCE:" (or "Default matches", when options select other references).
* **Max rel. error**: max |ours - reference| / max |reference| over the parameters
  after 200 fp32 steps of identical random gradients, five shapes in two param groups
  (`tests/harness.py`), the worst of the foreach and per-tensor code paths; the case
  (the spec's keyword arguments) and the reference run are in the next column, and the
  measurements in `docs/spec_tolerances.json` ({measured}).
* **States**: kept per parameter; tensor (like p), row or col (one number per row or
  column of the last two dimensions), scalar (one number per tensor). † marks a state
  declared with `when`, kept only for the parameters its condition selects.
* **Bytes / param / step**: read + written per parameter element in one fused pass,
  fp32 parameters, gradients and states, as `optdsl explain` reports it; "re-read" is
  the extra pass over the inputs of whole-tensor or group reductions. The cost model
  counts every tensor state, so a spec with conditional (†) states reads less on the
  parameters that do not keep them.

"""


def specs_document(rows: list[SpecRow], measured: str = "") -> str:
    """The text of ``docs/specs.md``."""
    header = _HEADER.format(regenerate=REGENERATE, measured=measured or "see the file for the setup")
    return header + markdown_table(rows)


def measured_note(path: Path | None = None) -> str:
    """How the tolerances were measured (torch version, steps), from the JSON's header."""
    path = default_tolerances_path() if path is None else Path(path)
    if not path.is_file():
        return ""
    data = json.loads(path.read_text(encoding="utf-8"))
    return f"{data['steps']} steps, {data['dtype']}, torch {data['torch']}"


def write_specs_document(out: Path, tolerances_path: Path | None = None) -> Path:
    rows = spec_table(tolerances=load_tolerances(tolerances_path))
    Path(out).write_text(specs_document(rows, measured_note(tolerances_path)), encoding="utf-8")
    return Path(out)
