"""The wheel: grammar, templates and specs inside; the CLI mapped into the package;
a non-editable install works from any directory."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(REPO)],
        check=True,
        capture_output=True,
        text=True,
    )
    (whl,) = out.glob("optdsl-*.whl")
    return whl


def test_wheel_ships_data_and_no_toplevel_cli(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "optdsl/_cli.py" in names
    assert "optdsl/grammars/optdsl.lark" in names
    assert "optdsl/templates/torch_optimizer.py.j2" in names
    assert "optdsl/specs/adamw.opt" in names
    assert not any(n == "cli.py" or n.startswith("tests/") for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "optdsl = optdsl.__main__:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_installed_wheel_compiles_outside_the_repo(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bindir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / "python"
    # Dependencies (torch, lark, ...) come from the running environment, appended to the
    # new venv's path, so no CUDA torch is ever downloaded; optdsl itself only from the wheel.
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    outer = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()}
    (purelib / "outer_deps.pth").write_text("\n".join(sorted(outer)) + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)], check=True)

    work = tmp_path / "elsewhere"
    work.mkdir()
    run_env = {**os.environ, "OPTDSL_CACHE_DIR": str(tmp_path / "cache")}
    run_env.pop("PYTHONPATH", None)
    result = subprocess.run([str(bindir / "optdsl"), "compile", "adamw"], cwd=work, env=run_env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (work / "adamw.py").read_text().startswith('"""AdamW')
    where = subprocess.run(
        [str(python), "-c", "import optdsl, importlib.util; print(optdsl.__file__); print(importlib.util.find_spec('cli'))"],
        cwd=work, env=run_env, capture_output=True, text=True, check=True,
    ).stdout.split("\n")
    assert where[0].startswith(str(env_dir)), where
    assert where[1] == "None", "the wheel must not install a site-wide module named cli"
    listing = subprocess.run([str(bindir / "optdsl"), "list"], cwd=work, env=run_env, capture_output=True, text=True)
    assert "adamw" in listing.stdout and listing.returncode == 0
