"""A spec can never put code into the generated module.

Adversarial names, docstrings, choices and literals are each rejected with a
located error or emitted safely; every generated module (built-in, adversarial,
fuzzed) passes the allow-list of ``safety.assert_safe_module``; and generated
files are byte-identical whatever PYTHONHASHSEED is.
"""

from __future__ import annotations

import ast as pyast
import hashlib
import json
import keyword
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from optdsl.compiler import builtin_specs, compile_source, from_text, resolve
from optdsl.frontend.errors import SpecError
from optdsl.frontend.printer import quote
from safety import assert_safe_module
from specgen import random_spec_text

REPO = Path(__file__).resolve().parent.parent
FILE = "evil.opt"


def compile_or_error(text: str):
    """The Compiled result, or the SpecError (checked to be located in ``text``)."""
    try:
        return compile_source(from_text(text, FILE))
    except SpecError as exc:
        lines = text.splitlines()
        for d in exc.diagnostics:
            assert d.span.file == FILE and 1 <= d.span.line <= max(len(lines), 1), exc.format()
            assert d.span.col >= 1
            if lines:
                assert lines[d.span.line - 1].expandtabs(1) in d.format(text), d.format(text)
        assert exc.format().startswith(f"{FILE}:")
        return exc


def load_module(code: str, name: str):
    namespace: dict = {"__name__": f"optdsl_test_{name}"}
    exec(compile(code, f"<generated {name}>", "exec"), namespace)
    return namespace[namespace["__all__"][0]]


def one_step(cls, shape=(3, 3)) -> torch.Tensor:
    param = torch.ones(shape, requires_grad=True)
    param.grad = torch.full(shape, 0.5)
    cls([param]).step()
    return param.detach()


def assert_rejected(text: str, fragment: str) -> SpecError:
    result = compile_or_error(text)
    assert isinstance(result, SpecError), f"compiled:\n{text}"
    assert any(fragment in d.message for d in result.diagnostics), result.format()
    return result


def assert_emitted_safely(text: str):
    result = compile_or_error(text)
    assert not isinstance(result, SpecError), result.format()
    assert_safe_module(result.code, result.rule)
    return result


# --- names ------------------------------------------------------------------------------------

PYTHON_KEYWORDS = [k for k in keyword.kwlist if k[0].isalpha()] + keyword.softkwlist
BUILTINS = ["print", "eval", "exec", "compile", "open", "getattr", "setattr", "globals", "vars", "object", "type",
            "super", "len", "range", "float", "abs", "min", "max", "zip", "isinstance", "input", "breakpoint"]
GENERATED = ["self", "torch", "math", "group", "params", "state", "states", "defaults", "closure", "loss", "maximize",
             "foreach", "state_dtype", "betas", "dtype", "param", "grad", "grads", "step", "cls"]


@pytest.mark.parametrize("name", sorted(set(PYTHON_KEYWORDS + BUILTINS + GENERATED) - {"_"}))
@pytest.mark.parametrize("where", ["hyper", "state", "local", "class"])
def test_reserved_names_are_located_errors(name, where):
    text = {
        "hyper": f"optimizer X\nhyper {name} = 1\np = p - g\n",
        "state": f"optimizer X\nstate {name} = zeros\np = p - g\n",
        "local": f"optimizer X\n{name} = g\np = p - g\n",
        "class": f"optimizer {name}\np = p - g\n",
    }[where]
    result = compile_or_error(text)  # located in the text, or compiled
    assert isinstance(result, SpecError), f"{where} {name!r} compiled"
    d = result.diagnostics[0]
    assert d.span.line == (1 if where == "class" else 2), result.format()
    if "syntax error" not in d.message:  # "state = g" is a syntax error: state starts a declaration
        col = {"hyper": 7, "state": 7, "local": 1, "class": 11}[where]
        assert (d.span.col, d.span.end_col - d.span.col) == (col, len(name)), result.format()
        assert "cannot" in d.message and name in d.message


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("optimizer X\n__import__ = g\np = p - g\n", "unexpected character '_'"),
        ("optimizer X\nhyper x__ = 1\np = p - x__ * g\n", "double underscores are reserved"),
        ("optimizer X\nhyper a__b = 1\np = p - a__b * g\n", None),
        ("optimizer X\np = p - __class__\n", "unexpected character '_'"),
        ("optimizer X\np = p - g.__class__\n", "unexpected character '.'"),
        ("optimizer X\np = p - torch(g)\n", "unknown function 'torch'"),
        ("optimizer X\np = p - self * g\n", "unknown name 'self'"),
        ("optimizer X\np = p - exec(g)\n", "unknown function 'exec'"),
        ("optimizer X\np = p - getattr(g, g)\n", "unknown function 'getattr'"),
        ("optimizer X\np = p - g[0]\n", "unexpected '['"),
        ("optimizer X; import os\np = p - g\n", "unexpected character ';'"),
        ("optimizer X\np = p - g # \"\"\"; import os\n", None),
        ("optimizer X\nhyper " + "a" * 65 + " = 1\np = p - g\n", "at most 64 characters"),
        ("optimizer " + "A" * 65 + "\np = p - g\n", "at most 64 characters"),
        ("optimizer X\nhyper " + "a" * 64 + " = 1\np = p - " + "a" * 64 + " * g\n", None),
        ("optimizer X\nhyper c0 = 0.5\nhyper x0 = 2\nhyper m_stored = 3\nstate m = zeros\nm = m + g\n"
         "p = p * (1 - c0 ^ t) - x0 * m_stored * sqrt(m * m)\n", None),
        ("optimizer X\nx0 = g * g\nc0 = t * 2\ntmp = x0 + c0\nsel0 = sqrt(tmp)\np = p - sel0 / (sel0 + x0)\n", None),
    ],
)
def test_adversarial_names(text, fragment):
    if fragment is None:
        result = assert_emitted_safely(text)
        one_step(load_module(result.code, "names"))
    else:
        assert_rejected(text, fragment)


def test_generated_names_never_shadow_hypers():
    text = ("optimizer X\nhyper c0 = 0.25\nhyper x0 = 2\nhyper m_stored = 3\nstate m = zeros\nm = m + g\n"
            "p = p - c0 * x0 * m_stored * m\n")
    cls = load_module(assert_emitted_safely(text).code, "shadow")
    for foreach in (None, False):
        param = torch.ones(2, 2, requires_grad=True)
        param.grad = torch.ones(2, 2)
        cls([param], foreach=foreach).step()
        torch.testing.assert_close(param.detach(), torch.full((2, 2), 1 - 0.25 * 2 * 3))


# --- docstrings and text -----------------------------------------------------------------------

EVIL_DOCS = [
    '"""; import os; os.system("echo pwned"); """',
    'ends with a quote "',
    "ends with a backslash \\",
    "\\x00 and \\u2028 spelled out, and \\",
    'newline\n"""\nimport os\n',
    "nul \x00 byte\nand a second line",
    "line separator \u2028 and paragraph \u2029 and bom \ufeff",
    "carriage\rreturn\r\n",
    "{braces} %s %(x)s {{ jinja }} {% raw %}",
    "\U0001f600 emoji \x7f del \x1b[31m escape",
    "\t tabs \t and ''' single triples '''",
]


@pytest.mark.parametrize("doc", EVIL_DOCS)
def test_docstrings_are_emitted_safely(doc):
    text = f'optimizer X\n  {quote(doc)}\nhyper lr = 0.1\np = p - lr * g  # """ + __import__("os").system("x") + """\n'
    result = assert_emitted_safely(text)
    cls = load_module(result.code, "doc")
    assert one_step(cls)[0, 0].item() == pytest.approx(0.95)
    tree = pyast.parse(result.code)
    module_doc = pyast.get_docstring(tree, clean=False)
    assert module_doc.startswith(f"X: {doc}")  # the text survives, as text
    assert cls.__doc__.startswith(doc.split("\n")[0])
    assert [type(n).__name__ for n in tree.body[:2]] == ["Expr", "Import"]


def test_triple_quoted_docstring_with_everything():
    doc = 'first line\n  second "quoted" line\n  \\\\ backslash \u2028 sep \x0c feed\n  "" end'
    text = 'optimizer X\n  """' + doc + '"""\np = p - g\n'
    result = assert_emitted_safely(text)
    load_module(result.code, "triple")


@pytest.mark.parametrize(
    "decl, fragment",
    [
        ('hyper mode = "a\\"b" in {"a\\"b"}', "must be a plain name"),
        ('hyper mode = "a b" in {"a b"}', "must be a plain name"),
        ("hyper mode = \"x\" in {\"x\", \"y');import os#\"}", "must be a plain name"),
        ('hyper mode = "{x}" in {"{x}"}', "must be a plain name"),
        ('hyper mode = "" in {""}', "must be a plain name"),
        ('hyper mode = "' + "a" * 65 + '" in {"' + "a" * 65 + '"}', "must be a plain name"),
        ('hyper mode = "\\u00e9" in {"\\u00e9"}', "must be a plain name"),
    ],
)
def test_choice_strings_must_be_plain_names(decl, fragment):
    assert_rejected(f'optimizer X\n{decl}\np = where(mode == "x", p, p - g)\n', fragment)


def test_plain_choices_are_emitted_safely():
    text = 'optimizer X\nhyper mode = "fast" in {"fast", "slow_2", "A"}\np = where(mode == "slow_2", p, p - g)\n'
    result = assert_emitted_safely(text)
    cls = load_module(result.code, "choices")
    with pytest.raises(ValueError, match=r"Invalid mode: 'x\"y' \(one of fast, slow_2, A\)"):
        cls([torch.zeros(1, requires_grad=True)], mode='x"y')


# --- literals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "literal, ok",
    [("1e308", True), ("5e-324", True), ("1.7976931348623157e308", True), ("1e400", False), ("1e-400", True),
     ("0.1", True), ("123456789012345678901234567890", True), ("inf", True), ("1" * 400, False)],
)
def test_huge_and_tiny_literals(literal, ok):
    text = f"optimizer X\nhyper h = {literal}\nu = g * {literal}\np = p - h * u / (1 + {literal} * abs(u))\n"
    if not ok:
        assert_rejected(text, "too large for float64")
        return
    result = assert_emitted_safely(text)
    cls = load_module(result.code, "literal")
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        param = torch.ones(2, 2, dtype=dtype, requires_grad=True)
        param.grad = torch.ones(2, 2, dtype=dtype)
        cls([param]).step()  # inf or nan are fine; a Python exception is not


def test_overflowing_constants_saturate_instead_of_raising():
    # torch raises "value cannot be converted to type float without overflow" for
    # alpha=/value= out of the dtype's range; the generated code saturates to inf
    text = "optimizer X\nhyper big = 1e300\nu = rowmean(g)\np = p - (1e2)^1e2 / u * g - big * g + lerp(p, g, big)\n"
    cls = load_module(assert_emitted_safely(text).code, "overflow")
    for dtype in (torch.float32, torch.float16):
        param = torch.ones(2, 2, dtype=dtype, requires_grad=True)
        param.grad = torch.ones(2, 2, dtype=dtype)
        cls([param], state_dtype=dtype).step()
        assert not torch.isfinite(param).any()


# --- every generated module -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(builtin_specs()))
def test_builtin_modules_pass_the_allow_list(name):
    result = compile_source(resolve(name))
    assert_safe_module(result.code, result.rule)


def test_fuzzed_modules_pass_the_allow_list():
    rng = random.Random(20240601)
    compiled = 0
    for _ in range(120):
        result = compile_or_error(random_spec_text(rng, typed=True, max_depth=3))
        if isinstance(result, SpecError):
            continue
        assert_safe_module(result.code, result.rule)
        compiled += 1
    assert compiled >= 50


def test_the_allow_list_catches_injections():
    result = compile_source(resolve("sgd"))
    for evil in ('import os', 'eval("1")', 'x = getattr(torch, "__dict__")', 'torch.__class__', 'lambda: 0',
                 'del x', 'from os import path', '"injected string"'):
        with pytest.raises(AssertionError):
            assert_safe_module(result.code + "\n" + evil + "\n", result.rule)
    with pytest.raises(AssertionError):
        assert_safe_module(result.code.replace('"momentum"', '"__import__(\'os\')"'), result.rule)


# --- determinism ------------------------------------------------------------------------------------

HASH_SCRIPT = """
import hashlib, json, random, sys
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[1] + "/tests")
from optdsl.compiler import builtin_specs, compile_source, from_text, resolve
from specgen import random_spec_text
from optdsl.frontend.errors import SpecError
from optdsl.frontend.printer import quote
out = {name: hashlib.sha256(compile_source(resolve(name)).code.encode()).hexdigest() for name in builtin_specs()}
rng = random.Random(7)
for i in range(6):
    try:
        out[f"fuzz{i}"] = hashlib.sha256(compile_source(from_text(random_spec_text(rng))).code.encode()).hexdigest()
    except SpecError:
        out[f"fuzz{i}"] = "error"
print(json.dumps(out, sort_keys=True))
"""


def test_generated_code_is_identical_across_hash_seeds(tmp_path):
    runs = {}
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "OPTDSL_CACHE_DIR": str(tmp_path / "cache")}
        result = subprocess.run([sys.executable, "-c", HASH_SCRIPT, str(REPO)], env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        runs[seed] = json.loads(result.stdout)
    assert runs["0"] == runs["1"] == runs["12345"]
    assert set(builtin_specs()) <= set(runs["0"])
    here = {name: hashlib.sha256(compile_source(resolve(name)).code.encode()).hexdigest() for name in builtin_specs()}
    assert here == {name: runs["0"][name] for name in here}
