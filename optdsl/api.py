"""The Python API: load, compile, explain, format and hash specs.

Thin wrappers: each resolves its arguments and calls the pipeline in
``optdsl.compiler``; the compiler itself is imported only when needed.
"""

from __future__ import annotations

from pathlib import Path

from .frontend.errors import SpecError
from .runtime.cache import cache_dir, cache_key, import_file, module_path, write_atomic


def _source(spec, source):
    from .compiler import from_text, resolve

    if (spec is None) == (source is None):
        raise TypeError("give a spec name or path, or source=TEXT (not both)")
    return from_text(source) if source is not None else resolve(spec)


def _read_variants(variants) -> tuple:
    """Each variant (a name or path) read, named as the caller gave it: a pickled class carries these."""
    from .compiler import SpecSource, resolve_variant

    read = [(str(v), resolve_variant(v)) for v in variants]
    return tuple(SpecSource(src.text, name, src.file) for name, src in read)


def load(
    spec: str | Path | None = None,
    *,
    source: str | None = None,
    backend: str = "torch",
    variants: list[str] | tuple[str, ...] = (),
):
    """The optimizer class for a built-in spec name, a ``.opt`` path, or spec ``source`` text,
    with ``variants`` (names or paths) applied in order.

    Compiled once into the cache directory (``optdsl.cache_dir()``); later calls,
    in any process, import the cached module without compiling. The class (and so
    its instances) pickles by the spec's and variants' text (``runtime.pickling``).
    """
    if backend == "auto":  # resolved before the cache key, so that a pickle names a concrete backend
        from .compiler import resolve_backend

        backend = resolve_backend(backend)
    return load_sources(_source(spec, source), backend, _read_variants(variants))


def load_sources(src, backend: str, variants: tuple = ()):
    """``load`` of a spec and variants already read (``SpecSource``s; a variant is named by its
    ``origin``): what ``load`` and the unpickling of its classes (``runtime.pickling``) call."""
    from .compiler import variant_name
    from .runtime.pickling import register

    names = tuple(variant_name(v) for v in variants)
    path = module_path(cache_key(src.text + "\0" + "\0".join(v.text for v in variants), backend, names))
    if not path.exists():
        from .compiler import compile_source

        write_atomic(path, compile_source(src, backend, variants).code)
    module = import_file(path)
    cls = getattr(module, module.__all__[0])
    register(cls, _fields(src), tuple(_fields(v) for v in variants), backend)
    return cls


def _fields(src) -> tuple[str, str, str]:
    return (src.text, src.origin, src.file)


def compile_spec(
    spec: str | Path | None = None, *, source: str | None = None, backend: str = "torch", variants=()
) -> str:
    """The generated module's Python source for a spec (with ``variants`` applied in order)."""
    from .compiler import compile_source

    return compile_source(_source(spec, source), backend, tuple(variants)).code


def explain(spec: str | Path | None = None, *, source: str | None = None, variants=()) -> str:
    """What the compiler made of a spec: the simplified rule, states, traffic and flops."""
    from .explainer import explain_source

    return explain_source(_source(spec, source), variants=tuple(variants))


def format_spec(spec: str | Path | None = None, *, source: str | None = None) -> str:
    """Canonical ``.opt`` text of a spec (``optdsl fmt``)."""
    from .compiler import parse
    from .frontend.printer import print_spec

    return print_spec(parse(_source(spec, source)))


def rule_hash(spec: str | Path | None = None, *, source: str | None = None, variants=()) -> str:
    """Canonical hash of the rule: equal for specs differing only in names, order or dead code."""
    from .compiler import lower
    from .ir.hashing import canonical_hash

    rule, _ = lower(_source(spec, source), tuple(variants))
    return canonical_hash(rule)


def builtin_specs() -> list[str]:
    from .compiler import builtin_specs as specs

    return list(specs())


def builtin_variants() -> list[str]:
    from .compiler import builtin_variants as variants

    return list(variants())


def describe_variants() -> list[tuple[str, str, str]]:
    """(name, hook, first paragraph of its docstring) for every built-in variant."""
    from .compiler import builtin_variants as variants
    from .compiler import parse, resolve_variant

    rows = []
    for name in variants():
        tree = parse(resolve_variant(name))
        rows.append((name, f"on {tree.hook}", _summary(tree.doc)))
    return rows


__all__ = [
    "SpecError", "load", "compile_spec", "explain", "format_spec", "rule_hash", "builtin_specs",
    "builtin_variants", "cache_dir",
]


def describe_builtins() -> list[tuple[str, str, str]]:
    """(name, optimizer class, first paragraph of its docstring) for every built-in spec."""
    from .compiler import builtin_specs as specs
    from .compiler import parse, resolve

    rows = []
    for name in specs():
        tree = parse(resolve(name))
        rows.append((name, tree.name, _summary(tree.doc)))
    return rows


def _summary(doc: str) -> str:
    """A docstring's first paragraph on one line (a title with its citation may wrap)."""
    return " ".join(doc.strip().split("\n\n")[0].split())


def compile_to_file(spec: str | Path, out: Path | None, backend: str = "torch", variants=()):
    """Compile ``spec`` and write the module to ``out`` (None: only return it); returns the Compiled result."""
    from .compiler import compile_source, resolve

    compiled = compile_source(resolve(spec), backend, tuple(variants))
    if out is not None:
        write_atomic(Path(out), compiled.code)
    return compiled


def check_specs(specs: list[str | Path]) -> list[tuple[str, str | None, list, "SpecError | None"]]:
    """Check each spec: (spec, class name or None, warnings, error or None)."""
    from .compiler import check, resolve

    results = []
    for spec in specs:
        try:
            src = resolve(spec)
            checked = check(src, allow_variant=True)
            warnings = [w for w in checked.warnings if w.span.file != "<probe>"]
            results.append((src.file, checked.spec.name, warnings, None))
        except SpecError as exc:
            results.append((str(spec), None, exc.warnings, exc))
    return results
