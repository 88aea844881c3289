"""Source spans and the one located error type of the frontend.

Every AST node carries a :class:`Span`. Every problem found in a spec becomes a
:class:`Diagnostic`; the checker collects all of a file's diagnostics and raises
one :class:`SpecError` holding them, printed as::

    specs/adamw.opt:12:9: error: unknown name 'mm'; did you mean 'm'?
       12 | u = mm / (sqrt(v) + eps)
          |     ^^
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Span:
    """A region of a source file: 1-based line and column, end exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def at(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


UNKNOWN_SPAN = Span("<generated>", 1, 1, 1, 1)


@dataclass(frozen=True)
class Diagnostic:
    span: Span
    message: str
    severity: str = "error"  # "error" | "warning"
    hint: str | None = None

    def format(self, source: str | dict[str, str] | None) -> str:
        """The diagnostic with its source line and a caret; ``source`` maps file -> text
        when a spec spans several files (an optimizer and its variants)."""
        if isinstance(source, dict):
            source = source.get(self.span.file)
        head = f"{self.span.at()}: {self.severity}: {self.message}"
        lines = [head]
        snippet = _caret_snippet(self.span, source)
        if snippet:
            lines.append(snippet)
        if self.hint:
            lines.append(f"   = hint: {self.hint}")
        return "\n".join(lines)


def _caret_snippet(span: Span, source: str | None) -> str:
    if not source:
        return ""
    text_lines = source.splitlines()
    if not 1 <= span.line <= len(text_lines):
        return ""
    text = text_lines[span.line - 1].expandtabs(1)
    start = max(span.col - 1, 0)
    if span.end_line == span.line and span.end_col > span.col:
        width = span.end_col - span.col
    else:
        width = max(len(text.rstrip()) - start, 1)
    gutter = f"{span.line:>5}"
    pad = " " * len(gutter)
    return f"{gutter} | {text}\n{pad} | {' ' * start}{'^' * max(width, 1)}"


@dataclass
class SpecError(Exception):
    """One or more located problems in a spec (never a Python traceback)."""

    diagnostics: list[Diagnostic]
    source: str | dict[str, str] | None = None  # the text, or file -> text
    warnings: list[Diagnostic] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.format())

    def format(self) -> str:
        return "\n".join(d.format(self.source) for d in self.diagnostics)

    def __str__(self) -> str:
        return self.format()


def fail(span: Span, message: str, source: str | None = None, hint: str | None = None):
    """Raise a SpecError with a single diagnostic."""
    raise SpecError([Diagnostic(span, message, hint=hint)], source)
