"""Where the grammar, templates and built-in specs live.

In a checkout they are the top-level folders ``grammars/``, ``templates/`` and
``specs/``; the wheel maps them into the package (see ``pyproject.toml``), so
both layouts are looked up here and nowhere else.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


@cache
def data_dir(name: str) -> Path:
    """The folder ``name`` (grammars, templates or specs), installed or in a checkout."""
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"optdsl data folder {name!r} not found next to {_PACKAGE}")


def grammar_path() -> Path:
    return data_dir("grammars") / "optdsl.lark"


def template_dir() -> Path:
    return data_dir("templates")


def specs_dir() -> Path:
    return data_dir("specs")
