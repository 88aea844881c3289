"""The ``optdsl`` command line, run as a user runs it: a subprocess, its output and exit code.

Exit codes: 0 success, 1 a spec has errors (or is not canonical, for fmt --check),
2 bad usage, 3 an internal error (no traceback unless OPTDSL_DEBUG=1).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import optdsl
import optdsl.compiler
from optdsl.passes import PIPELINE

REPO = Path(__file__).resolve().parent.parent
BUILTINS = sorted(optdsl.builtin_specs())


def class_name(spec: str) -> str:
    """The optimizer class a built-in spec declares (``optimizer AdamW``)."""
    text = optdsl.compiler.builtin_specs()[spec].read_text(encoding="utf-8")
    return re.search(r"^optimizer\s+(\w+)", text, re.M).group(1)


def optdsl_cli(*args: str, cwd: Path, module: bool = False, **env_extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPTDSL_CACHE_DIR": str(cwd / "cache"), **env_extra}
    if "OPTDSL_DEBUG" not in env_extra:
        env.pop("OPTDSL_DEBUG", None)
    command = [sys.executable, "-m", "optdsl"] if module else [sys.executable, str(REPO / "cli.py")]
    if module:
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return subprocess.run([*command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def assert_no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stdout + result.stderr


def test_version(tmp_path):
    result = optdsl_cli("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout == f"optdsl {optdsl.__version__}\n"
    assert optdsl_cli("--version", cwd=tmp_path, module=True).stdout == result.stdout


def test_list_prints_one_line_per_builtin(tmp_path):
    result = optdsl_cli("list", cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == BUILTINS
    rows = dict((line.split()[0], line.split()[1]) for line in lines)
    assert rows["adamw"] == "AdamW" and rows["sgd"] == "SGD"
    assert rows == {name: class_name(name) for name in BUILTINS}  # each with its optimizer's class
    assert all(len(line.split()) > 2 for line in lines)  # and the first line of the docstring


def test_compile_writes_the_default_file(tmp_path):
    result = optdsl_cli("compile", "lion", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "wrote lion.py (Lion, torch backend)\n"
    code = (tmp_path / "lion.py").read_text(encoding="utf-8")
    assert "class Lion(torch.optim.Optimizer, metaclass=_SpecClass)" in code
    ast.parse(code)


def test_compile_to_a_named_file_and_to_stdout(tmp_path):
    spec = tmp_path / "mine.opt"
    spec.write_text("optimizer Mine\nhyper lr = 0.1 in [0, inf)\nstate unused = zeros\np = p - lr * g\n", encoding="utf-8")
    out = tmp_path / "sub" / "mine_optimizer.py"
    out.parent.mkdir()
    result = optdsl_cli("compile", "mine.opt", "-o", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "warning: state 'unused' is never read" in result.stderr
    assert f"wrote {out} (Mine, torch backend)" in result.stdout
    to_stdout = optdsl_cli("compile", "mine.opt", "-o", "-", cwd=tmp_path)
    assert to_stdout.returncode == 0
    assert to_stdout.stdout == out.read_text(encoding="utf-8")
    namespace: dict = {}
    exec(compile(to_stdout.stdout, "mine_optimizer.py", "exec"), namespace)
    assert namespace["Mine"].__name__ == "Mine"


def test_compile_all_into_a_folder(tmp_path):
    result = optdsl_cli("compile", "--all", "-o", "generated", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = sorted(p.stem for p in (tmp_path / "generated").glob("*.py"))
    assert written == BUILTINS
    assert len(result.stdout.splitlines()) == len(BUILTINS)
    for name in BUILTINS:  # each an importable module holding its optimizer class
        path = tmp_path / "generated" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"generated_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.__all__ == [class_name(name)]
        cls = getattr(module, class_name(name))
        assert issubclass(cls, torch.optim.Optimizer)
        param = torch.nn.Parameter(torch.ones(3, 2))
        param.grad = torch.full((3, 2), 0.5)
        cls([param]).step()
        assert torch.isfinite(param).all() and not torch.equal(param.detach(), torch.ones(3, 2)), name


@pytest.mark.parametrize(
    "args, message",
    [
        (("compile", "--all"), "--all takes no SPEC and needs -o FOLDER"),
        (("compile", "adamw", "--all", "-o", "x"), "--all takes no SPEC"),
        (("compile",), "give a SPEC"),
        (("compile", "adamw", "--backend", "cobol"), "unknown backend 'cobol'"),
        (("compile", "adamww"), "unknown spec 'adamww'; did you mean adamw"),
        (("frobnicate",), "No such command 'frobnicate'"),
        (("list", "--frobnicate"), "No such option"),
        (("demo", "--steps", "0"), "--steps"),
        (("explain", "nope.opt"), "no spec file at nope.opt"),
        (("fmt", "missing/spec.opt"), "no spec file at missing/spec.opt"),
    ],
)
def test_usage_errors_exit_2(tmp_path, args, message):
    result = optdsl_cli(*args, cwd=tmp_path)
    assert result.returncode == 2, result
    assert message in result.stderr
    assert_no_traceback(result)


def test_no_command_prints_help_and_exits_2(tmp_path):
    result = optdsl_cli(cwd=tmp_path)
    assert result.returncode == 2
    assert "Usage:" in result.stdout and "compile" in result.stdout


def test_compile_of_a_bad_spec_exits_1(tmp_path):
    (tmp_path / "bad.opt").write_text("optimizer Bad\np = p - lr * g\n", encoding="utf-8")
    result = optdsl_cli("compile", "bad.opt", "-o", "-", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("bad.opt:2:9: error: unknown name 'lr'\n    2 | p = p - lr * g\n      |         ^^")
    assert_no_traceback(result)


def test_internal_errors_exit_3_without_a_traceback(tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("", encoding="utf-8")
    result = optdsl_cli("compile", "sgd", "-o", str(blocked / "sgd.py"), cwd=tmp_path)
    assert result.returncode == 3
    assert result.stderr.startswith("optdsl: internal error: ")
    assert "OPTDSL_DEBUG=1" in result.stderr
    assert_no_traceback(result)
    debug = optdsl_cli("compile", "sgd", "-o", str(blocked / "sgd.py"), cwd=tmp_path, OPTDSL_DEBUG="1")
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_explain_prints_the_rule_and_its_traffic(tmp_path):
    result = optdsl_cli("explain", "adamw", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("AdamW: ")
    assert "memory traffic per parameter and step (one fused pass):" in out
    assert "  fp32 params and states: read 16 B (p, g, m, v), write 12 B (p, m, v): 28 B" in out
    assert "  bf16 params and grads, fp32 states: read 12 B (p, g, m, v), write 10 B (p, m, v): 22 B" in out
    assert "flops per parameter:" in out and "LaTeX:" in out and "canonical hash:" in out
    for i, p in enumerate(PIPELINE, 1):
        assert f"  {i}. {p.__name__}" in out
    plain = optdsl_cli("explain", "sgd", "--no-latex", cwd=tmp_path)
    assert plain.returncode == 0 and "LaTeX:" not in plain.stdout and "read " in plain.stdout


def test_explain_shows_reductions_and_warnings(tmp_path):
    (tmp_path / "norm.opt").write_text(
        "optimizer Normed\nstate m = zeros\nstate dead = zeros\nm = lerp(m, g, 0.1)\np = p - m / (norm(m) + 1e-8)\n",
        encoding="utf-8",
    )
    result = optdsl_cli("explain", "norm.opt", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "re-read for whole-tensor reductions" in result.stdout
    assert "(dead, removed: dead)" in result.stdout
    assert "warning: state 'dead' is never read" in result.stdout


def test_fmt_check(tmp_path):
    spec = tmp_path / "messy.opt"
    spec.write_text("optimizer Messy\nhyper lr=0.1\np=p-lr*g\n", encoding="utf-8")
    check = optdsl_cli("fmt", "--check", "messy.opt", cwd=tmp_path)
    assert check.returncode == 1
    assert check.stderr == "messy.opt: not in canonical form (run `optdsl fmt --write`)\n"
    canonical = optdsl_cli("fmt", "messy.opt", cwd=tmp_path).stdout
    assert canonical == "optimizer Messy\n\nhyper lr = 0.1\n\np = p - lr * g\n"
    spec.write_text(canonical, encoding="utf-8")
    again = optdsl_cli("fmt", "--check", "messy.opt", cwd=tmp_path)
    assert again.returncode == 0 and again.stdout == "ok: messy.opt\n"
    builtin = optdsl_cli("fmt", "adam", cwd=tmp_path)
    assert builtin.returncode == 0 and builtin.stdout.startswith("optimizer Adam\n")


def test_fmt_of_a_bad_spec_exits_1(tmp_path):
    (tmp_path / "bad.opt").write_text("optimizer X\np = p - (g\n", encoding="utf-8")
    result = optdsl_cli("fmt", "bad.opt", cwd=tmp_path)
    assert result.returncode == 1 and "bad.opt:2:" in result.stderr
    assert_no_traceback(result)


def test_passes(tmp_path):
    result = optdsl_cli("passes", cwd=tmp_path)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert len(lines) == len(PIPELINE)
    for i, (line, p) in enumerate(zip(lines, PIPELINE), 1):
        assert line.startswith(f"{i}. {p.__name__}: ") and len(line) > len(f"{i}. {p.__name__}: ")


def test_demo_runs_a_few_steps(tmp_path):
    result = optdsl_cli("demo", "--steps", "5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[0].startswith("training a ") and "5 steps" in out[0]
    steps = [line.split() for line in out if line.strip() and line.split()[0].isdigit()]
    assert [int(s[0]) for s in steps] == [1, 2, 3, 4, 5]
    for _, ours, theirs in steps:
        assert abs(float(ours) - float(theirs)) < 1e-3  # adamw matches torch.optim.AdamW
    assert out[-1].startswith("optimizer step time: ")
