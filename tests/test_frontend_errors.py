"""Every problem in a spec is a located error: file:line:col, the source line, a caret.

Each semantic check of the frontend is exercised here, all errors of a file are
reported together, and the CLI turns them into exit codes without a traceback.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import optdsl
from optdsl.compiler import check, compile_source, from_text
from optdsl.frontend.errors import Diagnostic, SpecError
from optdsl.frontend.parser import MAX_EXPR_DEPTH, MAX_NESTING

REPO = Path(__file__).resolve().parent.parent
FILE = "bad.opt"


def spec_error(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        check(from_text(text, FILE))
    exc = info.value
    assert isinstance(exc, optdsl.SpecError)
    return exc


def find(exc: SpecError, fragment: str) -> Diagnostic:
    found = [d for d in exc.diagnostics if fragment in d.message]
    assert len(found) == 1, f"want one diagnostic with {fragment!r}, got:\n{exc.format()}"
    return found[0]


def assert_located(exc: SpecError, fragment: str, line: int, text: str, occurrence: int = 1) -> Diagnostic:
    """The diagnostic containing ``fragment`` points at the ``occurrence``-th ``text`` on ``line``."""
    d = find(exc, fragment)
    source_line = exc.source.splitlines()[line - 1]
    col = -1
    for _ in range(occurrence):
        col = source_line.index(text, col + 1)
    col += 1
    assert (d.span.file, d.span.line, d.span.col) == (FILE, line, col), exc.format()
    head, quoted, caret = d.format(exc.source).splitlines()[:3]
    assert head == f"{FILE}:{line}:{col}: {d.severity}: {d.message}"
    assert quoted == f"{line:>5} | {source_line}"
    assert caret == f"{'':>5} | {' ' * (col - 1)}{'^' * len(text)}", d.format(exc.source)
    assert f"{FILE}:{line}:{col}: error: {d.message}" in str(exc)
    return d


# --- names ---------------------------------------------------------------------------------


def test_unknown_name_suggests_the_close_one():
    exc = spec_error("optimizer X\nstate m = zeros\nm = mm + g\np = p - m\n")
    d = assert_located(exc, "unknown name 'mm'", 3, "mm")
    assert d.message == "unknown name 'mm'; did you mean 'm'?"


def test_unknown_name_without_a_close_one_has_no_suggestion():
    exc = spec_error("optimizer X\np = p - zzzzqqq * g\n")
    d = assert_located(exc, "unknown name", 2, "zzzzqqq")
    assert "did you mean" not in d.message


def test_unknown_function_suggests_the_close_one():
    exc = spec_error("optimizer X\np = p - sqrtt(g)\n")
    d = assert_located(exc, "unknown function", 2, "sqrtt")
    assert d.message == "unknown function 'sqrtt'; did you mean 'sqrt'?"


def test_wrong_number_of_arguments():
    exc = spec_error("optimizer X\np = p - lerp(g, p)\n")
    assert_located(exc, "lerp() takes 3 arguments, got 2", 2, "lerp(g, p)")


def test_use_before_assignment():
    exc = spec_error("optimizer X\nu = w + g\nw = g\np = p - u\n")
    d = assert_located(exc, "used before", 2, "w")
    assert d.message == "'w' is used before it is assigned (assigned at line 3)"


@pytest.mark.parametrize("target", ["g", "t"])
def test_assigning_a_given_name(target):
    exc = spec_error(f"optimizer X\n{target} = g * 2\np = p - g\n")
    assert_located(exc, f"cannot assign '{target}': it is given", 2, target)


def test_assigning_a_hyper():
    exc = spec_error("optimizer X\nhyper lr = 0.1\nlr = 2\np = p - lr * g\n")
    assert_located(exc, "cannot assign hyper 'lr'", 3, "lr")


@pytest.mark.parametrize(
    "target, reason",
    [
        ("sqrt", "is a function"),
        ("numel", "is a shape scalar"),
        ("zeros", "is a state initializer"),
        ("scalar", "is an optdsl keyword"),
        ("self", "used by the generated optimizer"),
        ("print", "is a Python builtin"),
        ("match", "is a Python keyword"),
    ],
)
def test_assigning_a_reserved_name(target, reason):
    exc = spec_error(f"optimizer X\n{target} = g\np = p - g\n")
    assert_located(exc, reason, 2, target)


def test_duplicate_declarations():
    exc = spec_error("optimizer X\nhyper lr = 1\nhyper lr = 2\nstate m = zeros\nstate m = ones\nhyper m = 3\np = p - lr * m\n")
    d = assert_located(exc, "'lr' (first declared at line 2)", 3, "lr")
    assert d.message.startswith("duplicate declaration")
    duplicates = [d for d in exc.diagnostics if d.message == "duplicate declaration of 'm' (first declared at line 4)"]
    assert [(d.span.line, d.span.col) for d in duplicates] == [(5, 7), (6, 7)]
    assert len(exc.diagnostics) == 3


@pytest.mark.parametrize("name", ["p", "g", "t"])
def test_declaring_a_given_name(name):
    exc = spec_error(f"optimizer X\nhyper {name} = 1\np = p - g\n")
    assert_located(exc, "it is a given name", 2, name, occurrence=2 if name == "p" else 1)  # "hyPer"


def test_p_never_assigned_points_at_the_optimizer_name():
    exc = spec_error("optimizer NoUpdate\nhyper lr = 0.1\nu = lr * g\n")
    assert_located(exc, "never assigns p", 1, "NoUpdate")


def test_variant_files_and_unknown_uses_are_located_errors():
    exc = spec_error("variant Clip on g\ng2 = g\n")
    assert_located(exc, "is a variant", 1, "Clip")
    exc = spec_error("optimizer X\nuse clip, decay\np = p - g\n")
    assert_located(exc, "unknown variant 'clip'", 2, "use clip, decay")


# --- kinds -----------------------------------------------------------------------------------


def test_p_assigned_a_reduction():
    exc = spec_error("optimizer X\np = sum(g)\n")
    d = assert_located(exc, "p must be assigned a tensor, but this is a per-tensor scalar", 2, "sum(g)")
    assert d.hint


def test_reduction_of_a_group_scalar():
    exc = spec_error("optimizer X\nhyper lr = 0.1\np = p - sum(lr) * g\n")
    assert_located(exc, "sum() reduces a tensor to a per-tensor scalar, but its argument is a group scalar", 3, "sum(lr)")


def test_reduction_of_a_per_tensor_scalar():
    exc = spec_error("optimizer X\np = p - norm(sum(g)) * g\n")
    assert_located(exc, "its argument is a per-tensor scalar", 2, "norm(sum(g))")


@pytest.mark.parametrize("call", ["rowsum(lr)", "transpose(sum(g))", "colmax(t)"])
def test_axis_reduction_and_matrix_ops_need_tensors(call):
    exc = spec_error(f"optimizer X\nhyper lr = 0.1\np = p - {call} * g\n")
    assert_located(exc, "needs a tensor argument", 3, call)


def test_matmul_of_a_scalar():
    exc = spec_error("optimizer X\nhyper lr = 0.1\np = p - lr @ g\n")
    assert_located(exc, "matmul() needs a tensor argument, but got a group scalar", 3, "lr @ g")


def test_matmul_of_shapes_that_never_fit():
    exc = spec_error("optimizer X\nu = rowsum(g)\np = p - u @ g + rowsum(g) @ colsum(g) + g @ colsum(p)\n")
    d = assert_located(exc, "left side has one column", 3, "u @ g")
    assert d.message == "'@' of shapes that never fit: the left side has one column, the right side as many rows as the parameter"
    assert_located(exc, "left side has as many columns", 3, "g @ colsum(p)")
    assert len(exc.diagnostics) == 2  # rowsum(g) @ colsum(g) is an outer product: fine


def test_tensor_state_assigned_a_reduction():
    exc = spec_error("optimizer X\nstate m = zeros\nm = sum(g)\np = p - m\n")
    assert_located(exc, "tensor state 'm' must be assigned a tensor, but this is a per-tensor scalar", 3, "sum(g)")


def test_scalar_state_assigned_a_tensor():
    exc = spec_error("optimizer X\nstate s: scalar = 0\ns = g * 2\np = p - s * g\n")
    assert_located(exc, "scalar state 's' cannot be assigned a tensor", 3, "g * 2")


def test_scalar_state_initialized_with_a_tensor():
    exc = spec_error("optimizer X\nstate s: scalar = g\np = p - s * g\n")
    assert_located(exc, "scalar state 's' cannot start as a tensor", 2, "g", occurrence=1)


def test_state_initializer_cannot_read_state():
    exc = spec_error("optimizer X\nstate m = zeros\nstate v = m\np = p - m * v\n")
    assert_located(exc, "a state initializer cannot read state 'm'", 3, "m")


def test_initializer_constants_only_in_initializers():
    exc = spec_error("optimizer X\np = p - zeros * g\n")
    assert_located(exc, "'zeros' is only meaningful as a state's initial value", 2, "zeros")


# --- hypers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "decl, value, domain",
    [
        ("hyper a = 1 in [0, 1)", "1", "[0, 1)"),
        ("hyper a = 0 in (0, 1]", "0", "(0, 1]"),
        ("hyper a = -1 in [0, inf)", "-1", "[0, inf)"),
        ("hyper a = 2.5 in [-1, 2]", "2.5", "[-1, 2]"),
        ("hyper a = inf in [0, inf)", "inf", "[0, inf)"),
        ("hyper a = -0.5 in (-0.5, 0.5)", "-0.5", "(-0.5, 0.5)"),
    ],
)
def test_hyper_default_outside_its_range(decl, value, domain):
    exc = spec_error(f"optimizer X\n{decl}\np = p - a * g\n")
    d = assert_located(exc, "is outside its range", 2, value)
    assert d.message == f"default {value} of 'a' is outside its range {domain}"


@pytest.mark.parametrize(
    "decl",
    ["hyper a = 1 in [0, 1]", "hyper a = 0 in [0, 1)", "hyper a = 0.5 in (0, 1)", "hyper a = inf in [0, inf]",
     "hyper a = -3 in (-inf, 0]", "hyper a = 1e-300 in (0, 1e-299)"],
)
def test_hyper_default_inside_its_range(decl):
    checked = check(from_text(f"optimizer X\n{decl}\np = p - a * g\n", FILE))
    assert not checked.warnings


def test_empty_range():
    exc = spec_error("optimizer X\nhyper a = 1 in [2, 0]\np = p - a * g\n")
    assert_located(exc, "empty range [2, 0]", 2, "[2, 0]")


def test_bad_choices_all_reported():
    text = (
        "optimizer X\n"
        'hyper mode = "x" in {"a", "b"}\n'
        'hyper kind = "a b" in {"a b"}\n'
        'hyper style = 1 in {"a"}\n'
        'hyper label = "a"\n'
        "hyper flag = true in [0, 1]\n"
        'p = where(mode == "c", p, p - g)\n'
        "p = p - mode * g\n"
    )
    exc = spec_error(text)
    assert_located(exc, "default 'x' of 'mode' is not one of its choices", 2, '"x"')
    assert_located(exc, "must be a plain name", 3, 'in {"a b"}')
    assert_located(exc, "choices need a text default", 4, 'in {"a"}')
    assert_located(exc, "has a text default but no choices", 5, '"a"')
    assert_located(exc, "is true/false and takes no range", 6, "[0, 1]")
    d = assert_located(exc, "is not a choice of 'mode'", 7, '"c"')
    assert "(a, b)" in d.message
    assert_located(exc, "choice hyper 'mode' can only be compared", 8, "mode")
    assert len(exc.diagnostics) == 7


def test_choice_comparison_suggests_the_close_choice():
    exc = spec_error('optimizer X\nhyper mode = "fast" in {"fast", "slow"}\np = where(mode == "fats", p, p - g)\n')
    d = assert_located(exc, "is not a choice", 3, '"fats"')
    assert d.message.endswith("did you mean 'fast'?")


def test_text_hyper_without_choices_used_in_a_comparison_is_one_error():
    # used to crash the checker (AttributeError: 'Interval' object has no attribute 'options')
    for decl in ('hyper mode = "a" in [0, 1]', 'hyper mode = "a"'):
        exc = spec_error(f'optimizer X\n{decl}\np = where(mode == "a", p, p - g)\nu = mode\n')
        assert len(exc.diagnostics) == 1, exc.format()
        assert_located(exc, "has a text default but no choices", 2, '"a"')


@pytest.mark.parametrize(
    "literal, message",
    [('"a \\q b"', "invalid escape sequence '\\q'"), ('"\\x4"', "malformed string literal"),
     ('"""two\nlines \\d"""', "invalid escape sequence '\\d'")],
)
def test_bad_escapes_in_strings_are_located_errors(literal, message):
    exc = spec_error(f"optimizer X\n  {literal}\np = p - g\n")
    d = exc.diagnostics[0]
    assert d.message == message and (d.span.line, d.span.col) == (2, 3)


def test_text_outside_a_choice_comparison():
    exc = spec_error('optimizer X\np = p - "abc" * g\n')
    assert_located(exc, "text is only allowed as a choice", 2, '"abc"')


# --- all errors together ------------------------------------------------------------------------


def test_all_errors_of_a_file_are_reported_together_in_order():
    text = (
        "optimizer X\n"
        "hyper lr = 2 in [0, 1]\n"
        "hyper lr = 3\n"
        "state m = zeros\n"
        "m = mm + g\n"
        "g = g * 2\n"
        "u = w * g\n"
        "w = sum(lr)\n"
        "p = sum(g)\n"
    )
    exc = spec_error(text)
    expected = [
        (2, "default 2 of 'lr' is outside its range [0, 1]"),
        (3, "duplicate declaration of 'lr'"),
        (5, "unknown name 'mm'"),
        (6, "cannot assign 'g'"),
        (7, "'w' is used before it is assigned"),
        (8, "sum() reduces a tensor"),
        (9, "p must be assigned a tensor"),
    ]
    assert len(exc.diagnostics) == len(expected), exc.format()
    for d, (line, fragment) in zip(exc.diagnostics, expected):
        assert d.span.line == line and fragment in d.message, exc.format()
    formatted = exc.format()
    for line, fragment in expected:
        assert re.search(rf"^{FILE}:{line}:\d+: error: .*{re.escape(fragment)}", formatted, re.M), formatted
    assert formatted.count(" | ") == 2 * len(expected)  # a source line and a caret line each


def test_errors_keep_the_warnings():
    exc = spec_error("optimizer X\nstate unused = zeros\np = sum(g)\n")
    assert [w.severity for w in exc.warnings] == ["warning"]


# --- warnings ---------------------------------------------------------------------------------------


def test_unused_state_is_a_warning_not_an_error():
    text = "optimizer X\nstate m = zeros\nstate k = ones\np = p - k * g\n"
    checked = check(from_text(text, FILE))
    messages = {w.message: w for w in checked.warnings}
    never_read = messages["state 'm' is never read: it does not affect the update"]
    never_written = messages["state 'k' is never assigned: it keeps its initial value"]
    assert never_read.severity == never_written.severity == "warning"
    assert never_read.format(text).splitlines() == [
        f"{FILE}:2:7: warning: state 'm' is never read: it does not affect the update",
        "    2 | state m = zeros",
        "      |       ^",
    ]
    compiled = compile_source(from_text(text, FILE))
    assert len(compiled.warnings) == 2


def test_empty_docstring_is_a_warning():
    checked = check(from_text('optimizer X\n  "   "\np = p - g\n', FILE))
    assert [w.message for w in checked.warnings] == ["empty docstring"]


def test_a_second_docstring_is_an_error():
    exc = spec_error('optimizer X\n"one"\np = p - g\n"two"\n')
    assert_located(exc, "a docstring must come right after the header", 4, '"two"')


# --- syntax ----------------------------------------------------------------------------------------

TERMINAL_NAME = re.compile(r"\b(?:[A-Z]+_[A-Z_]+|__ANON\w*|LPAR|RPAR|LSQB|RSQB|LBRACE|RBRACE|COMMA|MINUS|PLUS|STAR|SLASH|EQUAL)\b")


def assert_friendly(message: str) -> None:
    assert message.startswith("syntax error: ")
    assert not TERMINAL_NAME.search(message), message


def test_unexpected_token_lists_what_may_come_next():
    exc = spec_error("optimizer X\np = p - * g\n")
    d = assert_located(exc, "unexpected '*'", 2, "*")
    assert_friendly(d.message)
    expected = d.message.split("; expected ")[1]
    for word in ("'('", "'-'", "a name"):
        assert word in expected


def test_unexpected_character():
    exc = spec_error("optimizer X\np = p - $g\n")
    d = assert_located(exc, "unexpected character '$'", 2, "$")
    assert_friendly(d.message)


def test_names_start_with_a_letter():
    exc = spec_error("optimizer X\n_tmp = g\np = p - g\n")
    d = assert_located(exc, "unexpected character '_'", 2, "_")
    assert d.message.endswith("(names start with a letter)")


def test_unexpected_end_of_file():
    exc = spec_error("optimizer X\np = p - (g")
    d = find(exc, "unexpected end of file")
    assert d.message == "syntax error: unexpected end of file; expected ')'"
    assert (d.span.line, d.span.col) == (2, 11)
    assert d.format(exc.source).splitlines()[2] == "      |           ^"


def test_unexpected_end_of_line():
    exc = spec_error("optimizer X\nhyper lr =\np = p - g\n")
    d = find(exc, "unexpected end of line")
    assert_friendly(d.message)
    assert (d.span.line, d.span.col) == (2, 11)


def test_missing_header():
    exc = spec_error("p = p - g\n")
    d = assert_located(exc, "syntax error", 1, "p")
    assert "'optimizer'" in d.message and "'variant'" in d.message


def test_empty_file():
    exc = spec_error("")
    assert exc.diagnostics[0].span.at() == f"{FILE}:1:1"
    assert "unexpected end of file" in exc.diagnostics[0].message


def test_comparisons_do_not_chain():
    exc = spec_error("optimizer X\np = p - (g < p < 1)\n")
    assert_friendly(assert_located(exc, "unexpected '<'", 2, "<", occurrence=2).message)


def test_long_expected_lists_are_cut():
    exc = spec_error("optimizer X\np =\n")
    message = exc.diagnostics[0].message
    assert_friendly(message)
    assert message.count(",") <= 6


def test_a_syntax_error_is_the_only_error():
    exc = spec_error("optimizer X\nu = zz\np = p - (g\nv = yy\n")
    assert len(exc.diagnostics) == 1


# --- literals and nesting ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, literal",
    [
        ("p = p - 1e999 * g", "1e999"),
        ("hyper a = 1e999\np = p - a * g", "1e999"),
        ("hyper a = -1e400\np = p - a * g", "1e400"),
        ("hyper a = 1 in [0, 2e308]\np = p - a * g", "2e308"),
        ("p = p - 9" + "9" * 400 + " * g", "9" + "9" * 400),
    ],
)
def test_huge_literals_are_located_errors(line, literal):
    exc = spec_error(f"optimizer X\n{line}\n")
    d = find(exc, "too large for float64")
    assert d.span.line == 2 and exc.source.splitlines()[1][d.span.col - 1 :].startswith(literal)
    assert d.span.end_col - d.span.col == len(literal)
    assert d.message.startswith(f"number {literal[:40]!r}")


def test_tiny_and_extreme_literals_are_fine():
    compiled = compile_source(from_text("optimizer X\nhyper a = 5e-324\nhyper b = 1.7976931348623157e308\np = p - a * b * 1e-400 * g\n"))
    assert "class X" in compiled.code


def test_brackets_nested_too_deep():
    depth = MAX_NESTING + 1
    exc = spec_error(f"optimizer X\np = p - {'(' * depth}g{')' * depth}\n")
    d = find(exc, f"brackets nested deeper than {MAX_NESTING}")
    assert (d.span.line, d.span.col) == (2, 9 + MAX_NESTING)


@pytest.mark.parametrize(
    "expr",
    [
        "-" * 3000 + "g",
        "g" + " ^ g" * 3000,
        "g" + " + g" * 3000,
        "g" + " * g" * (MAX_EXPR_DEPTH + 1),
        "sqrt(" * 150 + "g" + ")" * 150,
        "(" * 150 + "g" + " + g)" * 150,
    ],
    ids=["unary", "power", "sum", "product", "calls", "parens"],
)
def test_deep_expressions_are_located_errors_not_recursion_errors(expr):
    exc = spec_error(f"optimizer X\np = p - {expr}\n")
    d = exc.diagnostics[0]
    assert d.message == f"expression nested more than {MAX_EXPR_DEPTH} operations deep"
    assert d.span.line == 2 and d.hint


def test_depth_through_assignments_is_limited():
    text = "optimizer X\nx = g\n" + "x = x * 2 + g\n" * 60 + "p = p - x\n"
    exc = spec_error(text)
    d = exc.diagnostics[0]
    assert d.message == f"'x' is {MAX_EXPR_DEPTH + 2} operations deep, counting the assignments it reads; at most {MAX_EXPR_DEPTH}"
    assert d.span.line == 2 + 51  # the first statement past the limit, once
    assert len(exc.diagnostics) == 1


def test_expressions_at_the_depth_limit_compile():
    depth = MAX_EXPR_DEPTH - 1  # and p - u is one more
    chain = "sqrt(" * depth + "g" + ")" * depth
    compiled = compile_source(from_text(f"optimizer X\nu = {chain}\np = p - u\n"))
    assert "class X" in compiled.code
    text = "optimizer X\nx = g\n" + "x = exp(x)\n" * depth + "p = p - x\n"
    assert "class X" in compile_source(from_text(text)).code


def test_oversized_source_is_rejected():
    exc = spec_error("optimizer X\n" + "#" * 1_000_001 + "\n")
    assert "larger than" in exc.diagnostics[0].message


# --- the CLI -------------------------------------------------------------------------------------------


def run_cli(*args: str, cwd: Path, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPTDSL_CACHE_DIR": str(cwd / "cache"), **(env_extra or {})}
    env.pop("OPTDSL_DEBUG", None)
    return subprocess.run(
        [sys.executable, str(REPO / "cli.py"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_cli_check_reports_all_errors_on_stderr_and_exits_1(tmp_path):
    bad = tmp_path / "bad.opt"
    bad.write_text("optimizer X\nstate m = zeros\nm = mm + g\nu = sum(lr)\n", encoding="utf-8")
    good = tmp_path / "good.opt"
    good.write_text("optimizer Good\nstate m = zeros\np = p - g\n", encoding="utf-8")
    result = run_cli("check", "bad.opt", "good.opt", cwd=tmp_path)
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr + result.stdout
    assert "bad.opt:3:5: error: unknown name 'mm'; did you mean 'm'?\n    3 | m = mm + g\n      |     ^^" in result.stderr
    assert "bad.opt:4:9: error: unknown name 'lr'" in result.stderr
    assert "bad.opt:1:11: error: optimizer 'X' never assigns p" in result.stderr
    assert "ok: good.opt (Good)" in result.stdout
    assert "good.opt:2:7: warning: state 'm' is never read" in result.stderr
    assert "error" not in result.stdout


def test_cli_check_syntax_error_exits_1(tmp_path):
    (tmp_path / "syntax.opt").write_text("optimizer X\np = p - * g\n", encoding="utf-8")
    result = run_cli("check", "syntax.opt", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("syntax.opt:2:9: error: syntax error: unexpected '*'")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (("check", "adamww"), "unknown spec 'adamww'; did you mean adamw"),
        (("check", "missing.opt"), "no spec file at missing.opt"),
        (("compile", "nope/missing.opt", "-o", "-"), "no spec file at nope/missing.opt"),
    ],
)
def test_cli_unknown_spec_or_missing_file_exits_2(tmp_path, args, message):
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2, result
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_bad_option_exits_2(tmp_path):
    result = run_cli("check", "--frobnicate", "adamw", cwd=tmp_path)
    assert result.returncode == 2
    assert "No such option" in result.stderr and "Traceback" not in result.stderr


def test_cli_check_all_builtin_specs_exits_0(tmp_path):
    names = optdsl.builtin_specs()
    assert len(names) >= 9
    result = run_cli("check", *names, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ok: ") == len(names)
    assert result.stderr == ""
    files = sorted(str(p) for p in (REPO / "specs").glob("*.opt"))
    result = run_cli("check", *files, cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.count("ok: ") == len(files)
