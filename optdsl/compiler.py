"""The pipeline, stage by stage: source -> AST -> checked -> IR -> passes -> Python.

Each function here calls one stage and hands its result to the next; the
stages themselves live in ``frontend``, ``ir``, ``passes`` and ``backends``.
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from . import resources
from .frontend.errors import Diagnostic


BACKENDS = ("torch",)


class SpecNotFound(LookupError):
    """A spec name that is neither a built-in nor a readable file (a usage error)."""


@dataclass(frozen=True)
class SpecSource:
    text: str
    origin: str  # a path, "<string>" or the built-in's name
    file: str  # the name used in error locations


def builtin_specs() -> dict[str, Path]:
    """Built-in spec name -> path, e.g. ``{"adamw": .../specs/adamw.opt}``."""
    return {p.stem: p for p in sorted(resources.specs_dir().glob("*.opt"))}


def resolve(spec: str | Path) -> SpecSource:
    """A built-in name (``adamw``) or a path to a ``.opt`` file."""
    path = Path(spec)
    if path.suffix == ".opt" or path.exists() or "/" in str(spec) or "\\" in str(spec):
        if not path.is_file():
            raise SpecNotFound(f"no spec file at {spec}")
        try:
            return SpecSource(path.read_text(encoding="utf-8"), str(path), str(spec))
        except UnicodeDecodeError:
            raise SpecNotFound(f"{spec} is not UTF-8 text") from None
    specs = builtin_specs()
    name = str(spec).lower()
    if name in specs:
        p = specs[name]
        return SpecSource(p.read_text(encoding="utf-8"), name, f"specs/{p.name}")
    close = difflib.get_close_matches(name, list(specs), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `optdsl list` shows the built-in specs"
    raise SpecNotFound(f"unknown spec {spec!r}{hint}")


def from_text(text: str, origin: str = "<string>") -> SpecSource:
    return SpecSource(text, origin, origin)


# --- stages ---------------------------------------------------------------------------


def parse(src: SpecSource):
    from .frontend.parser import parse as parse_text

    return parse_text(src.text, src.file)


def check(src: SpecSource):
    """Parse and check; returns the checked spec (its ``warnings`` included)."""
    from .frontend.checker import check as check_spec

    return check_spec(parse(src))


def lower(src: SpecSource):
    """Parse, check and lower to IR; returns (rule, warnings)."""
    from .ir.lower import lower as lower_checked

    checked = check(src)
    return lower_checked(checked, src.origin), checked.warnings


def optimize(rule, trace: list | None = None):
    from .passes import run_passes

    return run_passes(rule, trace=trace)


@dataclass
class Compiled:
    code: str
    rule: object
    class_name: str
    warnings: list[Diagnostic] = field(default_factory=list)


def compile_source(src: SpecSource, backend: str = "torch") -> Compiled:
    """The optimizer module for ``src`` as Python source text."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (available: {', '.join(BACKENDS)})")
    rule, warnings = lower(src)
    rule = optimize(rule)
    from .backends.torch_backend import render

    code = render(rule, source_hash(src.text))
    return Compiled(code, rule, rule.name, warnings)


def source_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
