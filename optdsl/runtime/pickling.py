"""Pickling the optimizer classes ``optdsl.load()`` returns: by their spec, not by module.

Such a class lives in a module imported from the cache directory, which another
process cannot import by name (its cache may be empty, or elsewhere). So each
generated module gives its class a metaclass of its own (``_SpecClass``, a plain
``type``), and ``load`` registers a reducer for that metaclass in
``copyreg.dispatch_table``, which every pickler (``pickle``, ``torch.save``,
``multiprocessing``) consults before pickling a class by reference. The class
then pickles as a call ``rebuild_class(spec, variants, backend, name)`` carrying
the spec's text and its variants' names and texts, and unpickling loads that spec
again: from the unpickling process's cache, compiled into it the first time.
Instances pickle as any ``torch.optim.Optimizer`` does (hyperparameters, state,
param groups), their class this way.
"""

from __future__ import annotations

import copyreg
import functools
import pickle

# (text, origin, file): the fields of compiler.SpecSource, as plain strings
SourceFields = tuple[str, str, str]


def register(cls: type, spec: SourceFields, variants: tuple[SourceFields, ...], backend: str) -> None:
    """Pickle ``cls``, loaded from ``spec`` with ``variants`` (both already read), by its spec."""
    args = (spec, variants, backend, cls.__name__)
    copyreg.pickle(type(cls), functools.partial(_reduce_class, cls, args))


def _reduce_class(loaded: type, args: tuple, cls: type):
    """The loaded class by its spec; a subclass of it (same metaclass) by reference, as any class."""
    if cls is not loaded:
        return cls.__qualname__
    return rebuild_class, args


def rebuild_class(spec: SourceFields, variants: tuple[SourceFields, ...], backend: str, name: str) -> type:
    """The class a pickle names: ``load`` of the carried spec text and variant texts."""
    from ..api import load_sources
    from ..compiler import SpecSource

    cls = load_sources(SpecSource(*spec), backend, tuple(SpecSource(*v) for v in variants))
    if cls.__name__ != name:
        raise pickle.UnpicklingError(f"the pickled spec compiles to class {cls.__name__}, not {name}")
    return cls
