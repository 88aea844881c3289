"""The generated Triton modules as text: runtime hyperparameters, imports, determinism, CLI."""

from __future__ import annotations

import ast
import hashlib
import os
import subprocess
import sys

import pytest

import optdsl
from optdsl.compiler import lower, optimize, resolve
from optdsl.ir.printer import rule_text

SPECS = optdsl.builtin_specs()
# the only compile-time kernel parameters: dtypes, mode flags and the block-size rule
ALLOWED_CONSTEXPRS = {"P_DTYPE", "S_DTYPE", "DTYPE", "CAPTURABLE", "STOCHASTIC_ROUNDING", "ALIGNED", "BLOCK", "CHUNK"}


def _jit_functions(tree: ast.Module) -> list[ast.FunctionDef]:
    out = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            for dec in node.decorator_list:
                target = dec.func if isinstance(dec, ast.Call) else dec
                if ast.unparse(target) == "triton.jit":
                    out.append(node)
    return out


def _constexpr_params(fn: ast.FunctionDef) -> set[str]:
    return {a.arg for a in fn.args.args if a.annotation is not None and "constexpr" in ast.unparse(a.annotation)}


@pytest.mark.parametrize("spec", SPECS)
def test_hyperparameters_are_runtime_arguments(spec):
    """A constexpr hyper would recompile the kernel for every new lr or beta."""
    tree = ast.parse(optdsl.compile_spec(spec, backend="triton"))
    rule = optimize(lower(resolve(spec))[0])
    hypers = {h.name for h in rule.hypers}
    kernels = [fn for fn in _jit_functions(tree) if "_kernel" in fn.name or fn.name.endswith("_scalars")]
    assert kernels
    for fn in _jit_functions(tree):
        constexprs = _constexpr_params(fn)
        assert not constexprs & hypers, f"{fn.name}: constexpr hypers {constexprs & hypers}"
        assert constexprs <= ALLOWED_CONSTEXPRS, f"{fn.name}: unexpected constexprs {constexprs - ALLOWED_CONSTEXPRS}"
    used = set().union(*({a.arg for a in fn.args.args} for fn in kernels))
    host_names = {name for name, _ in rule.host}
    assert used & (hypers | host_names), "the kernels read hypers or host values as arguments"


@pytest.mark.parametrize("spec", SPECS)
def test_module_is_self_contained_and_documents_its_rule(spec):
    code = optdsl.compile_spec(spec, backend="triton")
    tree = ast.parse(code)
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
    assert imported <= {"math", "torch", "triton", "triton.language"}, imported
    doc = ast.get_docstring(tree)
    rule = optimize(lower(resolve(spec))[0])
    assert rule_text(rule) in doc.replace("\n    ", "\n")


@pytest.mark.parametrize("spec", SPECS)
def test_each_module_level_function_is_defined_once(spec):
    """A device function sharing a host helper's name (``_pow``: host math of ``t^r`` beside an
    in-kernel ``^``) replaced the helper, and the host code then called a @triton.jit function."""
    tree = ast.parse(optdsl.compile_spec(spec, backend="triton"))
    names = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]
    assert len(names) == len(set(names)), sorted(n for n in set(names) if names.count(n) > 1)


def test_device_functions_do_not_share_host_helper_names():
    from optdsl.backends.pyexpr import HELPERS
    from optdsl.backends.triton_functions import FUNCTIONS

    assert not set(HELPERS) & set(FUNCTIONS)


def test_generated_source_is_deterministic():
    """Same spec, same bytes: in this process and in another with a different hash seed."""
    here = {s: hashlib.sha256(optdsl.compile_spec(s, backend="triton").encode()).hexdigest() for s in SPECS}
    again = {s: hashlib.sha256(optdsl.compile_spec(s, backend="triton").encode()).hexdigest() for s in SPECS}
    assert here == again
    script = (
        "import hashlib, optdsl\n"
        "for s in optdsl.builtin_specs():\n"
        "    print(s, hashlib.sha256(optdsl.compile_spec(s, backend='triton').encode()).hexdigest())\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": root}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    other = dict(line.split() for line in out.stdout.strip().splitlines())
    assert other == here


def test_torch_module_is_unchanged_by_the_shared_template():
    """The Triton template extends the torch one; the torch output has no Triton in it."""
    code = optdsl.compile_spec("adamw")
    # no Triton code (its messages may point to backend="triton", e.g. for fused=True)
    assert "import triton" not in code and "@triton" not in code and "tl." not in code
    assert "_update_fused" not in code


def test_auto_backend_is_triton_where_triton_is_installed():
    from optdsl.compiler import resolve_backend

    assert resolve_backend("auto") == "triton"
    with pytest.raises(ValueError, match="unknown backend"):
        resolve_backend("cuda")


def test_cli_compiles_with_the_triton_backend(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / "adamw_triton.py"
    env = {**os.environ, "PYTHONPATH": root}
    result = subprocess.run([sys.executable, "-m", "optdsl", "compile", "adamw", "--backend", "triton", "-o", str(out)],
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "triton backend" in result.stdout
    text = out.read_text()
    assert "@triton.jit" in text and "class AdamW(torch.optim.Optimizer, metaclass=_SpecClass)" in text
    bad = subprocess.run([sys.executable, "-m", "optdsl", "compile", "adamw", "--backend", "cuda", "-o", "-"],
                         env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown backend" in bad.stderr


@pytest.mark.parametrize("name", ["tl", "triton", "stochastic_rounding", "rounding_seed"])
def test_names_the_triton_module_uses_are_reserved(name):
    """A hyper called tl would shadow triton.language inside the kernels."""
    with pytest.raises(optdsl.SpecError, match="used by the generated optimizer"):
        optdsl.compile_spec(source=f"optimizer X\nhyper {name} = 1\np = p - {name} * g\n", backend="triton")


def test_spec_names_that_match_kernel_locals_are_renamed_around():
    """Hypers and states named like the kernels' own locals (mask, meta, offs, ...) still work."""
    source = ("optimizer Clash\nhyper mask = 0.1\nhyper meta = 0.9\nstate offs = zeros\n"
              "offs = meta * offs + g\np = p - mask * offs\n")
    tri = optdsl.load(source=source, backend="triton")
    ref = optdsl.load(source=source)
    from triton_harness import relative_errors, run_both

    ours, theirs = run_both(lambda ps: tri(ps), lambda ps: ref(ps), steps=3)
    assert relative_errors(ours, theirs).max().item() <= 1e-6
