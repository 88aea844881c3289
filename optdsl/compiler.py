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


def builtin_variants() -> dict[str, Path]:
    """Built-in variant name -> path (``specs/variants/*.opt``)."""
    return {p.stem: p for p in sorted((resources.specs_dir() / "variants").glob("*.opt"))}


def resolve_variant(name: str | Path | SpecSource) -> SpecSource:
    """A built-in variant name (``cautious``) or a path to a variant ``.opt`` file; a variant
    already read (a ``SpecSource``, as a pickled optimizer carries it) is returned as it is."""
    if isinstance(name, SpecSource):
        return name
    path = Path(name)
    if path.suffix == ".opt" or "/" in str(name):
        return resolve(path)
    variants = builtin_variants()
    key = str(name).lower()
    if key in variants:
        p = variants[key]
        return SpecSource(p.read_text(encoding="utf-8"), f"variant {key}", f"specs/variants/{p.name}")
    close = difflib.get_close_matches(key, list(variants), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `optdsl variants` lists them"
    raise SpecNotFound(f"unknown variant {name!r}{hint}")


# --- stages ---------------------------------------------------------------------------


def parse(src: SpecSource):
    from .frontend.parser import parse as parse_text

    return parse_text(src.text, src.file)


def build(src: SpecSource, variants: tuple[str, ...] = (), allow_variant: bool = False):
    """The syntax tree of ``src`` with its ``use`` variants and then ``variants`` inlined.

    A variant file alone (``allow_variant``) is applied to a probe optimizer, so
    that checking it reports everything that can be known without a rule.
    """
    from .frontend.errors import SpecError
    from .frontend.variants import apply_variants, probe_rule

    tree = parse(src)
    if tree.kind == "variant":
        if not allow_variant or variants:
            raise SpecError(
                [Diagnostic(tree.name_span, f"'{tree.name}' is a variant; apply it to an optimizer, "
                            f"e.g. optdsl compile OPTIMIZER --variant {Path(src.file).stem}")],
                src.text,
            )
        return apply_variants(probe_rule(tree), [tree])
    trees = []
    for item in [i for i in tree.items if type(i).__name__ == "Use"]:
        for name in item.variants:
            try:
                trees.append(parse(resolve_variant(name)))
            except SpecNotFound as exc:
                raise SpecError([Diagnostic(item.span, exc.args[0])], src.text) from None
    trees += [parse(resolve_variant(name)) for name in variants]
    return apply_variants(tree, trees)


def variant_names(tree, variants: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(tree.uses) + tuple(variant_name(v) for v in variants)


def variant_name(variant: str | Path | SpecSource) -> str:
    """A variant as the generated module names it: as given, or a read variant's ``origin``."""
    return variant.origin if isinstance(variant, SpecSource) else str(variant)


def check(src: SpecSource, variants: tuple[str, ...] = (), allow_variant: bool = False):
    """Parse, inline variants and check; returns the checked spec (its ``warnings`` included)."""
    from .frontend.checker import check as check_spec

    return check_spec(build(src, variants, allow_variant))


def lower(src: SpecSource, variants: tuple[str, ...] = ()):
    """Parse, inline variants, check and lower to IR; returns (rule, warnings)."""
    from .ir.lower import lower as lower_checked

    checked = check(src, variants)
    names = variant_names(parse(src), variants)
    return lower_checked(checked, src.origin).with_(variants=names), checked.warnings


def optimize(rule, trace: list | None = None):
    from .passes import run_passes

    return run_passes(rule, trace=trace)


@dataclass
class Compiled:
    code: str
    rule: object
    class_name: str
    warnings: list[Diagnostic] = field(default_factory=list)


def resolve_backend(backend: str) -> str:
    """``torch`` or ``triton``; ``auto`` is triton where it is installed (its module runs the
    torch code for tensors the kernels cannot take), else torch."""
    from .backends import BACKENDS

    if backend == "auto":
        import importlib.util

        return "triton" if importlib.util.find_spec("triton") is not None else "torch"
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (available: {', '.join(BACKENDS)}, auto)")
    return backend


def compile_source(src: SpecSource, backend: str = "torch", variants: tuple[str, ...] = ()) -> Compiled:
    """The optimizer module for ``src`` (with ``variants`` applied in order) as Python source."""
    backend = resolve_backend(backend)
    rule, warnings = lower(src, tuple(variants))
    rule = optimize(rule)
    if backend == "triton":
        from .backends.triton_backend import render
    else:
        from .backends.torch_backend import render

    code = render(rule, source_hash(src.text + "".join(resolve_variant(v).text for v in variants)))
    return Compiled(code, rule, rule.name, warnings)


def source_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
