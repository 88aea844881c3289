"""docs/specs.md is generated from the specs and the measured tolerances, and stays so.

The page is regenerated in memory and compared with the committed file; every built-in
spec has a row there and an entry (measured, or with the reason it is not) in
docs/spec_tolerances.json. The docstring convention the table is read from fails
loudly, naming the spec, when a spec does not follow it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import optdsl
from optdsl import library
from optdsl.compiler import from_text

from conftest import REPO

DOC = REPO / "docs" / "specs.md"
TOLERANCES = REPO / "docs" / "spec_tolerances.json"
BUILTINS = sorted(optdsl.builtin_specs())


@pytest.fixture(scope="module")
def rows():
    return library.spec_table(tolerances=library.load_tolerances(TOLERANCES))


def test_docs_page_is_up_to_date(rows):
    expected = library.specs_document(rows, library.measured_note(TOLERANCES))
    assert DOC.read_text(encoding="utf-8") == expected, f"docs/specs.md is stale: run {library.REGENERATE}"


def test_every_builtin_spec_has_a_row(rows):
    assert [r.name for r in rows] == BUILTINS
    table_names = [line.split("|")[1].strip().split()[0].strip("`") for line in DOC.read_text().splitlines()
                   if line.startswith("| `")]
    assert table_names == BUILTINS


def test_every_builtin_spec_has_a_tolerance_entry():
    entries = json.loads(TOLERANCES.read_text(encoding="utf-8"))["specs"]
    assert sorted(entries) == BUILTINS, "run python bench/spec_tolerances.py --only NEW_SPEC"
    for name, entry in entries.items():
        if entry["max_rel_err"] is None:
            assert entry["reason"], name
        else:
            assert entry["max_rel_err"] == max(entry["foreach"], entry["for_loop"]), name
            assert entry["reference"] and entry["from"], name


def test_states_count_shapes_and_conditions():
    text = """optimizer Factored
  \"\"\"Factored: a test rule (Nobody, 2025, nowhere).

  Matches nothing in particular: it only has states.\"\"\"
hyper lr = 0.1
state m = zeros
state vr: row = zeros when ndim >= 2
state vc: col = zeros when ndim >= 2
state v = zeros when ndim < 2
state k: scalar = 0
k = k + 1
m = 0.9 * m + g
vr = where(ndim >= 2, 0.9 * vr + rowmean(g^2), vr)
vc = where(ndim >= 2, 0.9 * vc + colmean(g^2), vc)
v = where(ndim >= 2, v, 0.9 * v + g^2)
var = where(ndim >= 2, vr * vc, v)
p = p - lr * m / (k + 1) / (sqrt(var) + 1)
"""
    row = library.spec_row(from_text(text, "factored.opt"))
    assert (row.name, row.class_name, row.title, row.paper) == ("factored", "Factored", "Factored: a test rule",
                                                                "Nobody, 2025, nowhere")
    assert row.reference == "nothing in particular"
    assert library.states_text(row.states) == "2 tensor (m, v†), 1 row (vr†), 1 col (vc†), 1 scalar (k)"


def test_bytes_per_parameter_of_adamw(rows):
    # fp32: read p, g, m, v (16 B), write p, m, v (12 B); no reductions.
    adamw = next(r for r in rows if r.name == "adamw")
    assert (adamw.bytes_fp32, adamw.reduction_bytes_fp32) == (28, 0)
    assert library.bytes_text(adamw) == "28"


@pytest.mark.parametrize("doc,message", [
    ("Adam.\n\n  Matches torch.optim.Adam.", "first paragraph must end with the citation"),
    ("Adam (a paper without a year).\n\n  Matches torch.optim.Adam.", "first paragraph must end with the citation"),
    ("Adam (Kingma & Ba, 2015).\n\n  As torch.optim.Adam.", "second paragraph must start with 'Matches '"),
    ("Adam (Kingma & Ba, 2015).", "needs a title paragraph and a 'Matches ...' paragraph"),
])
def test_docstring_off_convention_fails_loudly(doc, message):
    text = f'optimizer Broken\n  """{doc}"""\nhyper lr = 0.1\np = p - lr * g\n'
    with pytest.raises(library.DocConventionError) as err:
        library.spec_row(from_text(text, "broken.opt"))
    assert str(err.value).startswith("broken.opt: ") and message in str(err.value)


def test_reference_sentence_ends_outside_parentheses():
    fields = library.parse_docstring("x", "T (A, 2020).\n\nDefault matches a/b.py (v1.2: c. d) on\n  e/\n  f.py. More.")
    assert fields.reference == "a/b.py (v1.2: c. d) on e/f.py"


def test_cells_escape_markdown():
    assert library._cell("|g| * 2") == "\\|g\\| \\* 2"


def test_cli_prints_the_table_and_refuses_bad_use(tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, str(REPO / "cli.py"), *args], capture_output=True, text=True,
                              cwd=tmp_path, timeout=300)

    result = cli("table", "adamw", "sgd", "--tolerances", str(TOLERANCES))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("| Spec | Paper |") and len(lines) == 4
    assert lines[2].startswith("| `adamw` (AdamW) | Loshchilov & Hutter, 2019") and "not measured" not in lines[2]
    assert cli("table", "nosuch").returncode == 2
    assert cli("table", "adamw", "-o", "x.md").returncode == 2
