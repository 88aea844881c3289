"""Bad input: matrix rules on tensors of the wrong rank, shape-dependent rules with no branch
for a shape, reductions over an axis a tensor does not have.

Where the spec alone shows the problem it is a located compile-time error (file:line:col,
the line, a caret; ``optdsl check`` exits 1 without a traceback). Where it depends on the
parameter, the generated optimizer raises a ValueError at its first step, before touching
anything, naming the optimizer and the parameter's shape. (tests/test_frontend_errors.py
covers the other located errors of the checker.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import optdsl
from optdsl.compiler import check, from_text
from optdsl.frontend.errors import SpecError

REPO = Path(__file__).resolve().parent.parent
NS = "newton_schulz({x}, 5, 3.4445, -4.775, 2.0315, false)"
NORMED = "g / (norm(g) + 1e-7)"  # Newton-Schulz diverges unless the spectral norm is below ~1
FILE = "bad.opt"


# (spec text, the located text, the line it is on, a fragment of the message)
COMPILE_TIME = {
    "transpose of a per-tensor scalar": (
        "optimizer X\np = p - transpose(norm(g)) * g\n", "transpose(norm(g))", 2,
        "transpose() needs a tensor argument, but got a per-tensor scalar"),
    "@ of a per-tensor scalar": (
        "optimizer X\np = p - (g @ norm(g))\n", "g @ norm(g)", 2,
        "matmul() needs a tensor argument, but got a per-tensor scalar"),
    "newton_schulz of a per-tensor scalar": (
        f"optimizer X\np = p - {NS.format(x='sum(g)')} * g\n", NS.format(x="sum(g)"), 2,
        "newton_schulz() needs a tensor as its first argument, but got a per-tensor scalar"),
    "newton_schulz of a hyper": (
        f"optimizer X\nhyper lr = 0.1\np = p - {NS.format(x='lr')} * g\n", NS.format(x="lr"), 3,
        "newton_schulz() needs a tensor as its first argument, but got a group scalar"),
    "rowsum of a per-tensor scalar": (
        "optimizer X\np = p - rowsum(sum(g)) * g\n", "rowsum(sum(g))", 2,
        "rowsum() needs a tensor argument, but got a per-tensor scalar"),
    "chanrms of the step count": (
        "optimizer X\np = p - chanrms(t) * g\n", "chanrms(t)", 2,
        "chanrms() needs a tensor argument, but got a group scalar"),
    "a row state used as a col state": (
        "optimizer X\nstate r: row = 0\nstate c: col = 0\nr = rowmean(g^2)\nc = r\np = p - c * r * g\n", "r", 5,
        "col state 'c' cannot be assigned a value that varies along the second-to-last dimension"),
    "a col reduction into a row state": (
        "optimizer X\nstate r: row = 0\nr = colmean(g^2)\np = p - r * g\n", "colmean(g^2)", 3,
        "row state 'r' cannot be assigned a value that varies along the last dimension"),
    "a row state started from a tensor": (
        "optimizer X\nstate r: row = g\nr = rowmean(g)\np = p - r * g\n", "g", 2,
        "row state 'r' cannot start as a value that varies along the last dimension"),
    "a row state started from a col reduction": (
        "optimizer X\nstate r: row = colsum(g)\nr = rowmean(g)\np = p - r * g\n", "colsum(g)", 2,
        "row state 'r' cannot start as a value that varies along the last dimension"),
    "a col state started from a row reduction": (
        "optimizer X\nstate c: col = rowsum(g)\nc = colmean(g)\np = p - c * g\n", "rowsum(g)", 2,
        "col state 'c' cannot start as a value that varies along the second-to-last dimension"),
    "a when condition on the gradient": (
        "optimizer X\nstate m = zeros when norm(g) > 0\nm = where(norm(g) > 0, g, m)\np = p - g\n", "g", 2,
        "a state's condition can read hypers and shape scalars only, not 'g'"),
    "a when condition on the step": (
        "optimizer X\nstate m = zeros when t > 1\np = p - g\n", "t", 2,
        "a state's condition can read hypers and shape scalars only, not 't'"),
    "an unknown event": (
        "optimizer X\nstate m = zeros\nm = g\np = p - m\non evaluate:\n  p = m\n", "evaluate", 5,
        "unknown event 'evaluate': an on block is for train or eval; did you mean 'eval'?"),
    "an on block assigning g": (
        "optimizer X\nstate m = zeros\nm = g\np = p - m\non eval:\n  g = m\n", "g", 6,
        "cannot assign 'g' in 'on eval': it runs outside a step, where there is no gradient"),
    "an on block reading g": (
        "optimizer X\nstate m = zeros\nm = g\np = p - m\non train:\n  p = p - g\n", "g", 6,
        "'on train' runs outside a step: there is no gradient g"),
    "colsum where only 1-D parameters go": (
        "optimizer X\np = p - where(ndim == 1, colsum(g), g)\n", "colsum(g)", 2,
        "colsum() needs parameters with at least 2 dimensions, but it is only computed where ndim is 1"),
    "newton_schulz where only vectors and scalars go": (
        f"optimizer X\np = p - where(ndim < 2, {NS.format(x='g')}, g)\n", NS.format(x="g"), 2,
        "newton_schulz() needs parameters with at least 2 dimensions, but it is only computed where ndim is 0 or 1"),
    "rowmean where only 0-d parameters go": (
        "optimizer X\np = p - where(ndim == 0, rowmean(g), g)\n", "rowmean(g)", 2,
        "rowmean() needs parameters with at least 1 dimension, but it is only computed where ndim is 0"),
    "a col state that exists only for vectors": (
        "optimizer X\nstate c: col = 0 when ndim == 1\nc = where(ndim == 1, colmean(g), c)\np = p - g\n", "ndim == 1", 2,
        "col state 'c' needs parameters with at least 2 dimensions, but it exists only where ndim is 1"),
}


def expected_head(case: str) -> tuple[str, int, int]:
    text, located, line, message = COMPILE_TIME[case]
    source_line = text.splitlines()[line - 1]
    # a lone name: its last occurrence on the line; else the first
    col = (source_line.rindex(located) if located in ("r", "g", "t") else source_line.index(located)) + 1
    return f"{FILE}:{line}:{col}: error: {message}", line, col


@pytest.mark.parametrize("case", list(COMPILE_TIME))
def test_knowable_errors_are_located_at_compile_time(case):
    text, located, line, _ = COMPILE_TIME[case]
    with pytest.raises(SpecError) as info:
        check(from_text(text, FILE))
    head, line, col = expected_head(case)
    first, quoted, caret = str(info.value).splitlines()[:3]
    assert first == head, str(info.value)
    assert quoted == f"{line:>5} | {text.splitlines()[line - 1]}"
    assert caret == f"{'':>5} | {' ' * (col - 1)}{'^' * len(located)}", str(info.value)


def test_the_cli_reports_them_and_exits_1_without_a_traceback(tmp_path):
    files = []
    for index, case in enumerate(COMPILE_TIME):
        folder = tmp_path / str(index)
        folder.mkdir()
        (folder / FILE).write_text(COMPILE_TIME[case][0], encoding="utf-8")
        files.append(f"{index}/{FILE}")
    env = {**os.environ, "OPTDSL_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("OPTDSL_DEBUG", None)
    result = subprocess.run([sys.executable, "-m", "optdsl", "check", *files], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result
    assert "Traceback" not in result.stdout + result.stderr and "ok: " not in result.stdout
    for index, case in enumerate(COMPILE_TIME):
        assert f"{index}/{expected_head(case)[0]}" in result.stderr.splitlines(), (case, result.stderr)


# --- at the first step ------------------------------------------------------------------------

# (spec text, a parameter shape it cannot take, the message after "X applies ")
FIRST_STEP = {
    "newton_schulz on a vector": (
        f"optimizer X\nhyper lr = 0.1\np = p - lr * {NS.format(x=NORMED)}\n", (5,),
        "newton_schulz to this parameter, which needs at least 2 dimensions; it has shape (5,)"),
    "transpose on a vector": (
        "optimizer X\np = p - 0.1 * transpose(transpose(g))\n", (5,),
        "transpose to this parameter, which needs at least 2 dimensions; it has shape (5,)"),
    "@ on a vector": (
        "optimizer X\np = p - 0.1 * (g @ transpose(g)) @ g\n", (5,),
        "transpose, @ to this parameter, which needs at least 2 dimensions; it has shape (5,)"),
    "a col reduction on a vector": (
        "optimizer X\nstate c: col = 0\nc = lerp(c, colmean(g^2), 0.1)\np = p - g / (sqrt(c) + 1e-8)\n", (5,),
        "colmean, col state c to this parameter, which needs at least 2 dimensions; it has shape (5,)"),
    "a channel reduction on a 0-d tensor": (
        "optimizer X\np = p - g / (chanrms(g) + 1e-8)\n", (),
        "chanrms to this parameter, which needs at least 1 dimension; it has shape ()"),
    "a row reduction on a 0-d tensor": (
        "optimizer X\np = p - g / (rownorm(g) + 1e-8)\n", (),
        "rownorm to this parameter, which needs at least 1 dimension; it has shape ()"),
    "branches that leave out 0-d tensors": (
        f"optimizer X\np = p - 0.1 * where(ndim >= 2, {NS.format(x=NORMED)}, g / (rowrms(g) + 1e-8))\n", (),
        "rowrms to this parameter, which needs at least 1 dimension; it has shape ()"),
    "branches that leave out vectors": (
        f"optimizer X\np = p - 0.1 * where(ndim == 2, {NS.format(x=NORMED)}, colsum(g))\n", (5,),
        "colsum to this parameter, which needs at least 2 dimensions; it has shape (5,)"),
}


@pytest.mark.parametrize("foreach", [False, True], ids=["for-loop", "foreach"])
@pytest.mark.parametrize("case", list(FIRST_STEP))
def test_shape_dependent_errors_are_raised_at_the_first_step(case, foreach):
    text, shape, message = FIRST_STEP[case]
    cls = optdsl.load(source=text)
    param = torch.nn.Parameter(torch.randn(shape))
    before = param.detach().clone()
    param.grad = torch.randn(shape)
    opt = cls([param], foreach=foreach)
    with pytest.raises(ValueError) as info:
        opt.step()
    assert str(info.value) == f"X applies {message}"
    assert torch.equal(param.detach(), before) and not opt.state[param].get("step")


@pytest.mark.parametrize("case", list(FIRST_STEP))
def test_the_same_rules_step_on_parameters_of_a_rank_they_take(case):
    """The checks refuse only what fails: a 3-D parameter takes every rule above."""
    cls = optdsl.load(source=FIRST_STEP[case][0])
    param = torch.nn.Parameter(torch.randn(3, 4, 4))
    param.grad = torch.randn(3, 4, 4)
    cls([param]).step()
    assert torch.isfinite(param).all()


def test_the_message_names_only_the_branch_that_applies():
    """Operations needing the same rank under different conditions are checked apart."""
    text = f"optimizer X\np = p - 0.1 * where(ndim == 2, {NS.format(x=NORMED)}, where(ndim == 1, rowsum(g), colsum(g)))\n"
    cls = optdsl.load(source=text)
    for shape, message in [((), "colsum to this parameter, which needs at least 2 dimensions; it has shape ()")]:
        param = torch.nn.Parameter(torch.randn(shape))
        param.grad = torch.randn(shape)
        with pytest.raises(ValueError) as info:
            cls([param]).step()
        assert str(info.value) == f"X applies {message}"
    for shape in [(5,), (4, 6), (2, 3, 4)]:  # every branch that runs has its rank
        param = torch.nn.Parameter(torch.randn(shape))
        param.grad = torch.randn(shape)
        cls([param]).step()


def test_builtin_matrix_specs_take_every_rank_through_their_branches():
    """The built-in rules that use matrix operations branch on ndim: no parameter rank is refused."""
    for name in ["adafactor", "muon", "adamuon", "auon", "scale", "mars", "adamp", "sgdp"]:
        cls = optdsl.load(name)
        for shape in [(), (5,), (4, 6), (2, 3, 4)]:
            param = torch.nn.Parameter(torch.randn(shape))
            param.grad = torch.randn(shape)
            cls([param]).step()
            assert torch.isfinite(param).all(), (name, shape)
