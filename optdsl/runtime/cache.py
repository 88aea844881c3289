"""The compiled-module cache: real ``.py`` files keyed by content hashes.

A key covers the spec text, the backend and variants, the optdsl version and a
fingerprint of its own sources, templates and grammar, and the installed torch
version. Files are written atomically (temp file + rename), so many processes
of a distributed job may compile and load the same spec at once.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import sys
import tempfile
from functools import cache
from pathlib import Path
from types import ModuleType

from .. import __version__, resources

_PACKAGE = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """``$OPTDSL_CACHE_DIR``, else ``$XDG_CACHE_HOME/optdsl``, else ``~/.cache/optdsl``."""
    env = os.environ.get("OPTDSL_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "optdsl"


@cache
def compiler_fingerprint() -> str:
    """A hash of everything that shapes generated code: optdsl's sources, templates, grammar."""
    h = hashlib.sha256(__version__.encode())
    files = sorted(_PACKAGE.rglob("*.py")) + sorted(resources.template_dir().glob("*.j2"))
    files += sorted(resources.specs_dir().rglob("*.opt"))  # `use` and --variant read built-in variants
    files.append(resources.grammar_path())
    for f in files:
        if "runtime" in f.parts and f.parent.name == "runtime":
            continue
        h.update(f.name.encode())
        h.update(f.read_bytes())
    try:
        h.update(importlib.metadata.version("torch").encode())
    except importlib.metadata.PackageNotFoundError:
        pass
    return h.hexdigest()


def cache_key(text: str, backend: str, variants: tuple[str, ...] = ()) -> str:
    h = hashlib.sha256()
    for part in (text, backend, ",".join(variants), compiler_fingerprint()):
        h.update(part.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def module_path(key: str) -> Path:
    return cache_dir() / key[:2] / f"optdsl_{key[:32]}.py"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see either nothing or the whole file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".py", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with _suppress():
            os.unlink(tmp)
        raise


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return True


_MODULES: dict[Path, ModuleType] = {}


def import_file(path: Path) -> ModuleType:
    """Import a generated module from its file (``@triton.jit`` needs real source files).

    It is registered in ``sys.modules`` under a name no import can reach (``<optdsl ...>``,
    as ``<string>`` names code without a file): what ``load`` returns pickles by its spec
    (``runtime.pickling``), never by this name. Being registered still matters: cloudpickle
    pickles a class whose module is not in ``sys.modules`` by value, not through copyreg.
    """
    module = _MODULES.get(path)
    if module is not None:
        return module
    name = f"<optdsl {path.stem}>"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    _MODULES[path] = module
    return module
