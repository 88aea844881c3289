"""``parse(print_spec(tree)) == tree`` and ``optdsl fmt`` is idempotent.

For every built-in spec and for hypothesis-generated syntax trees: expressions
over every operator of the grammar (``^`` right-associative and tighter than
unary minus, comparisons, calls, nesting), hypers with intervals, choices and
bools, states, and docstrings with quotes, backslashes, newlines and unicode.
"""

from __future__ import annotations

import keyword
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optdsl import format_spec
from optdsl.frontend import ast
from optdsl.frontend.parser import parse
from optdsl.frontend.printer import format_number, print_expr, print_spec, quote

REPO = Path(__file__).resolve().parent.parent
BUILTINS = sorted((REPO / "specs").glob("*.opt"))

settings.register_profile(
    "optdsl-roundtrip",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ROUNDTRIP = settings.get_profile("optdsl-roundtrip")

# The contextual lexer reads most keywords as names where a name may stand
# ("x = tensor", "optimizer on"); these words are literals wherever they stand,
# and these start a declaration (an `on` block too), so no tree the parser builds
# has them as an assignment's target.
LITERAL_WORDS = {"inf", "true", "false"}
DECLARATION_WORDS = {"hyper", "state", "use", "on", "keyword"}
KEYWORDS = ["optimizer", "variant", "on", "in", "scalar", "tensor", "row", "col", "when", "hyper", "state", "use",
            "keyword", "as"]

names = st.one_of(
    st.sampled_from(["p", "g", "t", "m", "v", "lr", "beta1", "x_1", "A", "sqrt", "numel", "inf_x", "true1", "infinity", *KEYWORDS]),
    st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,10}", fullmatch=True),
).filter(lambda n: n not in LITERAL_WORDS)
targets = names.filter(lambda n: n not in DECLARATION_WORDS)

# a spec file is UTF-8 text: anything but lone surrogates
texts = st.one_of(
    st.sampled_from(['"', '"""', '\\', "\\n", "\n", "\r\n", "\t", "\x00", "\x7f", "\u2028", "\ufeff", "\U0001f600",
                     'a "quoted" word', 'ends with "', "back\\slash", "line one\nline two"]),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=30),
)

# numbers in expressions are unsigned (the parser reads "-1" as a negation)
unsigned = st.one_of(
    st.floats(min_value=0.0, allow_nan=False).map(lambda x: abs(x) + 0.0),
    st.sampled_from([0.0, 1.0, 0.5, 1e-8, 0.999, 1e16, 1e17, 5e-324, 1.7976931348623157e308, math.inf, 123456789.125]),
)


def expressions(max_leaves: int = 25) -> st.SearchStrategy[ast.Expr]:
    leaves = st.one_of(
        st.builds(ast.Name, names),
        st.builds(ast.Num, unsigned),
        st.builds(ast.Bool, st.booleans()),
        st.builds(ast.Str, texts),
    )

    def extend(children):
        return st.one_of(
            st.builds(ast.Binary, st.sampled_from(["+", "-", "*", "/", "@", "^"]), children, children),
            st.builds(ast.Binary, st.sampled_from(list(ast.COMPARISONS)), children, children),
            st.builds(ast.Unary, st.just("-"), children),
            st.builds(ast.Call, names, st.lists(children, max_size=3).map(tuple)),
        )

    return st.recursive(leaves, extend, max_leaves=max_leaves)


signed = st.one_of(unsigned.filter(math.isfinite).map(lambda x: -x), unsigned)  # no "-inf" default in the grammar
literals = st.one_of(st.builds(ast.Num, signed), st.builds(ast.Bool, st.booleans()), st.builds(ast.Str, texts))
bounds = st.one_of(st.floats(allow_nan=False), st.sampled_from([0.0, -0.0, 1.0, -1.0, math.inf, -math.inf]))
domains = st.one_of(
    st.none(),
    st.builds(ast.Interval, bounds, bounds, st.booleans(), st.booleans()),
    st.builds(ast.Choices, st.lists(texts, min_size=1, max_size=4).map(tuple)),
)
items = st.one_of(
    st.builds(ast.Doc, texts),
    st.builds(ast.Hyper, names, literals, domains, role=st.one_of(st.none(), names)),
    st.builds(ast.State, names, st.sampled_from(["tensor", "scalar"]), expressions(8)),
    st.builds(ast.State, names, st.sampled_from(["tensor", "row"]), expressions(8), when=expressions(4),
              alias=names, optional=st.booleans()),
    st.builds(ast.Keyword, names, st.one_of(st.none(), literals), texts),
    st.builds(ast.Use, st.lists(names, min_size=1, max_size=3).map(tuple)),
    st.builds(ast.Assign, targets, expressions()),
)
specs = st.one_of(
    st.builds(ast.Spec, st.just("optimizer"), names, st.none(), st.lists(items, max_size=10).map(tuple)),
    st.builds(ast.Spec, st.just("variant"), names, names, st.lists(items, max_size=6).map(tuple)),
)


def reparse(tree: ast.Spec) -> tuple[str, ast.Spec]:
    text = print_spec(tree)
    return text, parse(text, "<printed>")


# --- built-in specs ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", BUILTINS, ids=[p.stem for p in BUILTINS])
def test_builtin_spec_round_trips(path):
    tree = parse(path.read_text(encoding="utf-8"), str(path))
    text, again = reparse(tree)
    assert again == tree
    assert print_spec(again) == text  # fmt(fmt(x)) == fmt(x)
    assert again.doc == tree.doc and tree.doc


def test_spans_do_not_take_part_in_equality():
    a = parse("optimizer X\np = p - g\n")
    b = parse("optimizer   X\n\n\np=p-(g)   # same rule\n")
    assert a == b and a.items[0].span != b.items[0].span


# --- generated trees -----------------------------------------------------------------------------


@settings(ROUNDTRIP, max_examples=600)
@given(specs)
def test_generated_specs_round_trip(tree):
    text, again = reparse(tree)
    assert again == tree, text
    assert print_spec(again) == text


@settings(ROUNDTRIP, max_examples=800)
@given(expressions(40))
def test_generated_expressions_round_trip(expr):
    text = print_expr(expr)
    tree = parse(f"optimizer X\nx = {text}\n")
    assert tree.items[0].value == expr, text


@settings(ROUNDTRIP, max_examples=300)
@given(texts)
def test_docstrings_and_strings_round_trip(text):
    tree = ast.Spec("optimizer", "X", None, (ast.Doc(text), ast.Assign("u", ast.Str(text)), ast.Doc(text + "\n" + text)))
    printed, again = reparse(tree)
    assert again == tree, printed
    assert parse(f"optimizer X\nx = {quote(text)}\n").items[0].value.value == text


@settings(ROUNDTRIP, max_examples=400)
@given(st.floats(allow_nan=False).filter(lambda x: x != -math.inf))  # the grammar has no "-inf" literal
def test_numbers_print_exactly(x):
    text = format_number(x)
    if x < 0 or (x == 0 and math.copysign(1, x) < 0):
        assert text.startswith("-")
        value = parse(f"optimizer X\nhyper h = {text}\n").hypers[0].default.value
    else:
        value = parse(f"optimizer X\nx = {text}\n").items[0].value.value
    assert value == x and math.copysign(1, value) == math.copysign(1, x)


# --- precedence and associativity, by hand -------------------------------------------------------------


def b(op, left, right):
    return ast.Binary(op, left, right)


N = ast.Name
x, y, z = N("x"), N("y"), N("z")


@pytest.mark.parametrize(
    "tree, text",
    [
        (b("^", x, b("^", y, z)), "x ^ y ^ z"),
        (b("^", b("^", x, y), z), "(x ^ y) ^ z"),
        (ast.Unary("-", b("^", x, y)), "-x ^ y"),
        (b("^", ast.Unary("-", x), y), "(-x) ^ y"),
        (b("^", x, ast.Unary("-", y)), "x ^ -y"),
        (b("-", x, b("-", y, z)), "x - (y - z)"),
        (b("-", b("-", x, y), z), "x - y - z"),
        (b("/", x, b("*", y, z)), "x / (y * z)"),
        (b("@", b("*", x, y), z), "x * y @ z"),
        (b("*", x, b("@", y, z)), "x * (y @ z)"),
        (b("-", x, ast.Unary("-", y)), "x - -y"),
        (ast.Unary("-", ast.Unary("-", x)), "--x"),
        (ast.Unary("-", ast.Num(2.0)), "-2"),
        (b("<", b("+", x, y), z), "x + y < z"),
        (b("<", b("<", x, y), z), "(x < y) < z"),
        (b("==", x, b("!=", y, z)), "x == (y != z)"),
        (b("*", b("<", x, y), z), "(x < y) * z"),
        (ast.Call("f", ()), "f()"),
        (ast.Call("max", (b("+", x, y), ast.Unary("-", z))), "max(x + y, -z)"),
        (b("^", ast.Call("f", (x,)), ast.Num(0.5)), "f(x) ^ 0.5"),
        (b("^", ast.Num(2.0), ast.Num(1e-8)), "2 ^ 1e-8"),
    ],
)
def test_fewest_parentheses(tree, text):
    assert print_expr(tree) == text
    assert parse(f"optimizer X\nv = {text}\n").items[0].value == tree


def test_doc_literals_that_need_escapes():
    for doc in ['say "hi"\nthere', 'two\nlines ending with "', "tab\tand\nnewline", 'with """ inside\nx', "nul\x00\nbyte",
                "back\\slash\nx", "cr\r\nlf"]:
        tree = ast.Spec("optimizer", "X", None, (ast.Doc(doc),))
        printed, again = reparse(tree)
        assert again == tree, printed


# --- fmt --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", BUILTINS, ids=[p.stem for p in BUILTINS])
def test_format_spec_is_idempotent(path):
    once = format_spec(path)
    twice = format_spec(source=once)
    assert once == twice
    assert parse(once) == parse(path.read_text(encoding="utf-8"))


def test_fmt_cli_is_idempotent_and_check_agrees(tmp_path):
    env = {**os.environ, "OPTDSL_CACHE_DIR": str(tmp_path / "cache")}
    spec = tmp_path / "messy.opt"
    spec.write_text(
        'optimizer   Messy  # comment\n"""Doc with \\"quotes\\"\n  and a second line."""\nhyper lr=1E-3 in [0,inf)\n'
        "hyper mode = \"a\" in {\"a\",\"b\"}\nstate m=zeros\nm=lerp(m,g,(1-0.9))\n"
        "p = p - lr*(m/(sqrt(m^2)+1e-8)) - where(mode == \"b\", 1, 0) * -(-g)\n",
        encoding="utf-8",
    )

    def cli(*args):
        return subprocess.run([sys.executable, str(REPO / "cli.py"), *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    check = cli("fmt", "--check", "messy.opt")
    assert check.returncode == 1 and "not in canonical form" in check.stderr
    first = cli("fmt", "messy.opt")
    assert first.returncode == 0
    assert parse(first.stdout) == parse(spec.read_text(encoding="utf-8"))
    assert cli("fmt", "--write", "messy.opt").returncode == 0
    assert spec.read_text(encoding="utf-8") == first.stdout
    second = cli("fmt", "messy.opt")
    assert second.stdout == first.stdout
    assert cli("fmt", "--check", "messy.opt").returncode == 0


def test_generated_names_avoid_python_keywords_only_by_choice():
    # the printer does not judge names: the checker does (see test_codegen_safety)
    tree = ast.Spec("optimizer", "X", None, (ast.Assign("lambda", ast.Name("class")),))
    assert reparse(tree)[1] == tree
    assert keyword.iskeyword("lambda")
