"""Entry point of the ``optdsl`` command (and ``python -m optdsl``).

The Typer app lives in the repository's top-level ``cli.py``. The wheel maps
that file into the package as ``optdsl/_cli.py`` (see pyproject.toml), so an
installed optdsl never adds a site-wide module named ``cli``; in a source
checkout the file is loaded from the repository root by path.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def _cli_module():
    try:
        from . import _cli  # type: ignore[attr-defined]

        return _cli
    except ImportError:
        path = Path(__file__).resolve().parent.parent / "cli.py"
        spec = importlib.util.spec_from_file_location("optdsl._cli", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["optdsl._cli"] = module
        spec.loader.exec_module(module)
        return module


def main() -> None:
    _cli_module().main()


if __name__ == "__main__":
    main()
