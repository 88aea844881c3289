"""optdsl: optimizer update rules written as math, compiled to fast PyTorch code.

    >>> import optdsl
    >>> AdamW = optdsl.load("adamw")            # a torch.optim.Optimizer subclass
    >>> opt = AdamW(model.parameters(), lr=3e-4)

Importing optdsl is cheap: the compiler (Lark, SymPy, jinja2) loads only when a
spec is compiled, and a compiled spec is cached on disk, so a second
``load`` imports the cached module and nothing else.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .api import (  # noqa: E402
    SpecError,
    builtin_specs,
    builtin_variants,
    cache_dir,
    compile_spec,
    explain,
    format_spec,
    load,
    rule_hash,
)

__all__ = [
    "SpecError",
    "builtin_specs",
    "builtin_variants",
    "cache_dir",
    "compile_spec",
    "explain",
    "format_spec",
    "load",
    "rule_hash",
    "__version__",
]
