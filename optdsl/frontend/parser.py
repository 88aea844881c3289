"""Text -> syntax tree, with Lark (LALR, strict) and located syntax errors."""

from __future__ import annotations

import ast as pyast
import math
import warnings
from dataclasses import replace
from functools import cache

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from .. import resources
from . import ast
from .errors import Diagnostic, Span, SpecError

MAX_SOURCE_CHARS = 1_000_000
MAX_NESTING = 200
# Operations nested in one expression (and, in the checker, through the assignments
# an expression reads): every later stage recurses on expressions, and generated
# Python must stay within the interpreter's own nesting limits.
MAX_EXPR_DEPTH = 100


class ParenNewlines:
    """Post-lexer: newlines inside (), [] and {} are dropped so long expressions may wrap,
    and an ``on NAME:`` block ends (``_BLOCK_END``) before the first line that is not
    indented. A newline token runs over blank and comment lines (grammar: ``_NL``), so its
    text ends with the indentation of the next line of code."""

    always_accept = ("_NL",)
    _open = {"LPAR", "LSQB", "LBRACE"}
    _close = {"RPAR", "RSQB", "RBRACE"}

    def process(self, stream):
        depth = 0
        block = False  # inside an `on NAME:` block
        line: list[str] = []  # token types of the current line, to spot `on NAME :`
        for tok in stream:
            if tok.type == "_NL":
                if depth > 0:
                    continue
                if block and not _indented(tok):
                    block = False
                    yield Token.new_borrow_pos("_BLOCK_END", "", tok)
                line = []
            elif tok.type in self._open:
                depth += 1
            elif tok.type in self._close:
                depth = max(depth - 1, 0)
            elif tok.type == "COLON" and depth == 0 and line == ["ON", "NAME"]:
                block = True
            if tok.type != "_NL":
                line.append(tok.type)
            yield tok
        if block:
            yield Token("_BLOCK_END", "")


def _indented(newline: Token) -> bool:
    return bool(str(newline).rsplit("\n", 1)[-1])


@cache
def _lark() -> Lark:
    return Lark(
        resources.grammar_path().read_text(),
        parser="lalr",
        strict=True,
        propagate_positions=True,
        maybe_placeholders=False,
        postlex=ParenNewlines(),
        cache=True,  # the LALR tables, cached on disk by grammar hash: a fresh process skips building them
    )


def parse(source: str, file: str = "<string>") -> ast.Spec:
    """Parse spec text into an :class:`ast.Spec`; syntax errors raise :class:`SpecError`."""
    if len(source) > MAX_SOURCE_CHARS:
        span = Span(file, 1, 1, 1, 2)
        raise SpecError([Diagnostic(span, f"spec is larger than {MAX_SOURCE_CHARS} characters")])
    _check_nesting(source, file)
    try:
        tree = _lark().parse(source)
    except UnexpectedInput as exc:
        raise SpecError([_syntax_diagnostic(exc, source, file)], source) from None
    _check_depth(tree, file, source)
    try:
        return _ToAst(file, source).transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, _LiteralError):
            raise SpecError([Diagnostic(exc.orig_exc.span, exc.orig_exc.message)], source) from None
        raise


def _check_nesting(source: str, file: str) -> None:
    """Reject absurd nesting before the parser recurses on it."""
    depth = 0
    line, col = 1, 0
    for ch in source:
        col += 1
        if ch == "\n":
            line, col = line + 1, 0
        elif ch in "([{":
            depth += 1
            if depth > MAX_NESTING:
                span = Span(file, line, col, line, col + 1)
                raise SpecError([Diagnostic(span, f"brackets nested deeper than {MAX_NESTING}")], source)
        elif ch in ")]}":
            depth -= 1


_OPERATIONS = frozenset("compare add sub mul div matmul neg pow call".split())


def _check_depth(tree: Tree, file: str, source: str) -> None:
    """Reject expressions nested deeper than MAX_EXPR_DEPTH, before anything recurses on them."""
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if node.data in _OPERATIONS:
            depth += 1
            if depth > MAX_EXPR_DEPTH:
                meta = node.meta
                span = Span(file, meta.line, meta.column, meta.end_line, meta.end_column)
                message = f"expression nested more than {MAX_EXPR_DEPTH} operations deep"
                raise SpecError([Diagnostic(span, message, hint="split it into several assignments")], source)
        stack.extend((child, depth) for child in node.children if isinstance(child, Tree))


# --- syntax errors -------------------------------------------------------------------

_TOKEN_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a string",
    "_NL": "end of line",
    "_BLOCK_END": "the end of the indented block",
    "$END": "end of file",
    "COMPARE": "a comparison",
    "STATE_SHAPE": "'scalar' or 'tensor'",
}


def _describe_expected(names: set[str]) -> str:
    words = []
    for name in sorted(names):
        if name in _TOKEN_WORDS:
            words.append(_TOKEN_WORDS[name])
            continue
        try:
            pattern = _lark().get_terminal(name).pattern
            words.append(repr(pattern.value) if pattern.type == "str" else name.lower())
        except KeyError:
            words.append(name.lower())
    words = sorted(set(words))
    if len(words) > 6:
        words = words[:6] + ["..."]
    return ", ".join(words)


def _syntax_diagnostic(exc: UnexpectedInput, source: str, file: str) -> Diagnostic:
    line = getattr(exc, "line", 1) or 1
    col = getattr(exc, "column", 1) or 1
    if isinstance(exc, UnexpectedToken):
        tok = exc.token
        if tok.type == "$END":
            line, col = _end_position(source)
            found = "end of file"
        elif tok.type == "_NL":
            found = "end of line"
        elif tok.type == "_BLOCK_END":
            found = "a line that is not indented (the statements of an `on` block are indented under it)"
        else:
            found = repr(str(tok))
        expected = _describe_expected(set(exc.accepts or exc.expected))
        width = max(len(str(tok)), 1) if tok.type not in ("$END", "_NL", "_BLOCK_END") else 1
        message = f"syntax error: unexpected {found}; expected {expected}"
    elif isinstance(exc, UnexpectedCharacters):
        ch = source[exc.pos_in_stream] if exc.pos_in_stream < len(source) else ""
        message = f"syntax error: unexpected character {ch!r}"
        if ch == "_":
            message += " (names start with a letter)"
        width = 1
    elif isinstance(exc, UnexpectedEOF):
        line, col = _end_position(source)
        message = f"syntax error: unexpected end of file; expected {_describe_expected(set(exc.expected))}"
        width = 1
    else:  # pragma: no cover - lark has no other UnexpectedInput subclasses
        message, width = f"syntax error: {exc}", 1
    return Diagnostic(Span(file, line, col, line, col + width), message)


def _end_position(source: str) -> tuple[int, int]:
    lines = source.splitlines() or [""]
    return len(lines), len(lines[-1]) + 1


# --- parse tree -> AST ---------------------------------------------------------------


class _When:
    """A state's ``when`` clause while the tree is being built."""

    def __init__(self, value):
        self.value = value


class _Suffix:
    """An ``as NAME`` suffix (a hyper's role, a state's torch name) while the tree is being built."""

    def __init__(self, name: str, span: Span, optional: bool = False):
        self.name, self.span, self.optional = name, span, optional


class _LiteralError(Exception):
    def __init__(self, span: Span, message: str):
        self.span, self.message = span, message


def _number(text: str, span: Span) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _LiteralError(span, f"number {text[:40]!r} is too large for float64")
    return value


def _string(text: str, span: Span) -> str:
    try:
        with warnings.catch_warnings():  # "\q": deprecated in Python, so an error here on every version
            warnings.simplefilter("error")
            value = pyast.literal_eval(text)
    except (ValueError, SyntaxError) as exc:
        detail = getattr(exc, "msg", "")
        reason = detail if detail.startswith("invalid escape sequence") else "malformed string literal"
        raise _LiteralError(span, reason) from None
    if not isinstance(value, str):  # pragma: no cover - the grammar only admits strings
        raise _LiteralError(span, "malformed string literal")
    return value


@v_args(meta=True)
class _ToAst(Transformer):
    def __init__(self, file: str, source: str):
        super().__init__()
        self.file = file
        self.source = source

    # spans
    def _meta_span(self, meta) -> Span:
        if getattr(meta, "empty", True):
            return Span(self.file, 1, 1, 1, 1)
        return Span(self.file, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tok_span(self, tok: Token) -> Span:
        return Span(self.file, tok.line, tok.column, tok.end_line, tok.end_column)

    # file
    def start(self, meta, children):
        header, *items = children
        kind, name, hook, name_span = header
        return ast.Spec(kind, name, hook, tuple(items), self._meta_span(meta), name_span, self.source)

    def optimizer_header(self, meta, children):
        (name,) = children
        return ("optimizer", str(name), None, self._tok_span(name))

    def variant_header(self, meta, children):
        name, hook = children
        return ("variant", str(name), str(hook), self._tok_span(name))

    def doc(self, meta, children):
        (tok,) = children
        return ast.Doc(_string(str(tok), self._tok_span(tok)), self._meta_span(meta))

    # declarations
    def hyper_decl(self, meta, children):
        name, default, *rest = children
        role = rest.pop() if rest and isinstance(rest[-1], _Suffix) else None
        hyper = ast.Hyper(str(name), default, rest[0] if rest else None, self._meta_span(meta), self._tok_span(name))
        return hyper if role is None else replace(hyper, role=role.name, role_span=role.span)

    def role(self, meta, children):
        (name,) = children
        return _Suffix(str(name), self._tok_span(name))

    def alias(self, meta, children):
        name, *optional = children
        return _Suffix(str(name), self._tok_span(name), bool(optional))

    def require_decl(self, meta, children):
        condition, message = children
        return ast.Require(condition, _string(str(message), self._tok_span(message)), self._meta_span(meta))

    def keyword_decl(self, meta, children):
        name, *value, message = children
        text = _string(str(message), self._tok_span(message))
        return ast.Keyword(str(name), value[0] if value else None, text, self._meta_span(meta), self._tok_span(name))

    def interval(self, meta, children):
        lo_closed, low, high, hi_closed = children
        return ast.Interval(low, high, lo_closed, hi_closed, self._meta_span(meta))

    def open(self, meta, children):
        return False

    def closed(self, meta, children):
        return True

    def choices(self, meta, children):
        return ast.Choices(tuple(_string(str(t), self._tok_span(t)) for t in children), self._meta_span(meta))

    def bound(self, meta, children):
        (value,) = children
        return value

    def literal(self, meta, children):
        (value,) = children
        return ast.Num(value, self._meta_span(meta)) if isinstance(value, float) else value

    def signed_number(self, meta, children):
        (tok,) = children
        return _number(str(tok), self._tok_span(tok))

    def negative_number(self, meta, children):
        (tok,) = children
        return -_number(str(tok), self._tok_span(tok))

    def state_decl(self, meta, children):
        name, *rest = children
        alias = rest.pop() if rest and isinstance(rest[-1], _Suffix) else None
        when = rest.pop().value if rest and isinstance(rest[-1], _When) else None
        shape = str(rest[0]) if len(rest) == 2 else "tensor"
        if alias is None:
            return ast.State(str(name), shape, rest[-1], self._meta_span(meta), self._tok_span(name), when)
        return ast.State(str(name), shape, rest[-1], self._meta_span(meta), self._tok_span(name), when,
                         alias.name, alias.optional, alias.span)

    def when(self, meta, children):
        (value,) = children
        return _When(value)

    def on_block(self, meta, children):
        event, *statements = children
        return ast.OnBlock(str(event), tuple(statements), self._meta_span(meta), self._tok_span(event))

    def use_decl(self, meta, children):
        return ast.Use(tuple(str(c) for c in children), self._meta_span(meta))

    def assign(self, meta, children):
        name, value = children
        return ast.Assign(str(name), value, self._meta_span(meta), self._tok_span(name))

    # expressions
    def number(self, meta, children):
        (tok,) = children
        span = self._tok_span(tok)
        return ast.Num(_number(str(tok), span), span)

    def true(self, meta, children):
        return ast.Bool(True, self._meta_span(meta))

    def false(self, meta, children):
        return ast.Bool(False, self._meta_span(meta))

    def inf_literal(self, meta, children):
        return ast.Num(math.inf, self._meta_span(meta))

    def inf_bound(self, meta, children):
        return math.inf

    def neg_inf_bound(self, meta, children):
        return -math.inf

    def string(self, meta, children):
        (tok,) = children
        span = self._tok_span(tok)
        return ast.Str(_string(str(tok), span), span)

    def name(self, meta, children):
        (tok,) = children
        return ast.Name(str(tok), self._tok_span(tok))

    def call(self, meta, children):
        func, *args = children
        return ast.Call(str(func), tuple(args), self._meta_span(meta), self._tok_span(func))

    def neg(self, meta, children):
        (operand,) = children
        return ast.Unary("-", operand, self._meta_span(meta))

    def compare(self, meta, children):
        left, op, right = children
        return ast.Binary(str(op), left, right, self._meta_span(meta))

    def _binary(op):
        def build(self, meta, children):
            left, right = children
            return ast.Binary(op, left, right, self._meta_span(meta))

        return build

    add = _binary("+")
    sub = _binary("-")
    mul = _binary("*")
    div = _binary("/")
    matmul = _binary("@")
    pow = _binary("^")
    del _binary
