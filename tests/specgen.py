"""Cheap generators of `.opt` text and spec ASTs for the fuzz, round-trip and safety tests.

Everything here is driven by a ``random.Random`` (seeded by hypothesis), so the
generators cost microseconds per spec and every run is reproducible.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from optdsl.frontend import ast
from optdsl.frontend.names import FUNCTIONS

REPO = Path(__file__).resolve().parent.parent
BUILTIN_TEXTS: dict[str, str] = {p.stem: p.read_text(encoding="utf-8") for p in sorted((REPO / "specs").glob("*.opt"))}

ELEMENTWISE1 = "abs sign sqrt rsqrt exp log tanh cosh square".split()
REDUCE1 = "sum mean norm rms".split()  # also min(x), max(x)
AXIS1 = "rowsum rowmean rownorm rowrms rowmax colsum colmean colnorm colrms colmax".split()
ARITH = ["+", "-", "*", "/", "^", "@"]
COMPARES = ["<", "<=", ">", ">=", "==", "!="]
SHAPES = ["numel", "rows", "cols", "ndim"]

# --- tokens of spec text ---------------------------------------------------------------

TOKEN_RE = re.compile(
    r'"""(?:.|\n)*?"""|"(?:[^"\\\n]|\\.)*"|[A-Za-z][A-Za-z0-9_]*|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?'
    r"|<=|>=|==|!=|\n|[ \t]+|#[^\n]*|."
)

VOCABULARY = [
    "optimizer", "variant", "on", "hyper", "state", "use", "in", "inf", "true", "false", "scalar", "tensor",
    "p", "g", "t", "m", "v", "lr", "zeros", "ones", "numel", "rows", "cols", "ndim",
    *FUNCTIONS, "foo", "self", "torch", "__import__", "import", "class", "None", "print",
    "(", ")", "[", "]", "{", "}", ",", ":", "=", "+", "-", "*", "/", "^", "@", "<", "<=", ">", ">=", "==", "!=",
    "0", "1", "0.5", "1e-8", "1e999", "-1", ".5", "2.", "1e308", "5e-324", '"a"', '"torch"', '""', '"""doc"""',
    "\n", " ", "#", "\\\n", '"', "\\",
]

CHARACTERS = list("()[]{},:=+-*/^@<>!#\"\\$_.;'`?|&%~0123456789eE \t\n\rabcxyz") + [
    "\x00", "\x0c", "\u00e9", "\u2028", "\ufeff", "\U0001f600",
]


def tokens(text: str) -> list[str]:
    return TOKEN_RE.findall(text)


def mutate(rng: random.Random, text: str, count: int) -> str:
    """``text`` after ``count`` random token- and character-level edits."""
    toks = tokens(text)
    for _ in range(count):
        kind = rng.randrange(9)
        i = rng.randrange(len(toks) + 1)
        if kind == 0 and toks:  # delete a token
            del toks[min(i, len(toks) - 1)]
        elif kind == 1:  # insert a token
            toks.insert(i, rng.choice(VOCABULARY))
        elif kind == 2 and toks:  # replace a token
            toks[min(i, len(toks) - 1)] = rng.choice(VOCABULARY + toks)
        elif kind == 3 and len(toks) > 1:  # swap two tokens
            j = rng.randrange(len(toks))
            i = min(i, len(toks) - 1)
            toks[i], toks[j] = toks[j], toks[i]
        elif kind == 4 and toks:  # duplicate a token
            i = min(i, len(toks) - 1)
            toks.insert(i, toks[i])
        else:  # character edits on the joined text
            s = "".join(toks)
            k = rng.randrange(len(s) + 1)
            if kind == 5:
                s = s[:k] + rng.choice(CHARACTERS) + s[k:]
            elif kind == 6:
                s = s[:k] + s[k + 1 :]
            elif kind == 7 and s:
                j = rng.randrange(len(s))
                s = s[:j] + s[j + 1 : j + 2] + s[j : j + 1] + s[j + 2 :]
            else:
                s = s[:k]  # truncate
            toks = tokens(s)
    return "".join(toks)


# --- random spec text ---------------------------------------------------------------------


def number_text(rng: random.Random) -> str:
    return rng.choice(
        ["0", "1", "2", "0.5", "0.9", "0.999", "1e-8", "3", "10", ".25", "2.", "1e-3", "0.1", "4e-3", "100", "1E2"]
    )


class TextSpec:
    """A random spec as text: hypers, states and assignments over what is in scope.

    ``typed=True`` mostly respects kinds (most such specs compile); ``typed=False``
    mixes anything with anything (most are rejected, with located errors).
    """

    def __init__(self, rng: random.Random, typed: bool = True, max_depth: int = 4, matrix: bool = True):
        self.rng = rng
        self.typed = typed
        self.max_depth = max_depth
        self.matrix = matrix
        self.hypers: list[str] = []
        self.bools: list[str] = []
        self.choices: dict[str, list[str]] = {}
        self.tensors: list[str] = ["p", "g"]
        self.scalars: list[str] = []  # per-tensor scalars
        self.lines: list[str] = []

    def fresh(self, prefix: str) -> str:
        taken = set(self.hypers + self.bools + list(self.choices) + self.tensors + self.scalars)
        i = 0
        while f"{prefix}{i}" in taken:
            i += 1
        return f"{prefix}{i}"

    def group(self, depth: int) -> str:
        r = self.rng
        if depth <= 0 or r.random() < 0.4:
            pool = self.hypers + self.bools + ["t"]
            return r.choice(pool) if pool and r.random() < 0.6 else number_text(r)
        k = r.randrange(6)
        if k == 0:
            return f"{self.group(depth - 1)} {r.choice(['+', '-', '*', '/'])} {self.group(depth - 1)}"
        if k == 1:
            return f"({self.group(depth - 1)})^{self.group(0)}"
        if k == 2:
            return f"{r.choice(ELEMENTWISE1)}({self.group(depth - 1)})"
        if k == 3 and self.choices:
            name = r.choice(list(self.choices))
            return f"where({name} {r.choice(['==', '!='])} \"{r.choice(self.choices[name])}\", {self.group(depth - 1)}, {self.group(depth - 1)})"
        if k == 4:
            return f"-{self.group(depth - 1)}"
        return f"{r.choice(['min', 'max'])}({self.group(depth - 1)}, {self.group(depth - 1)})"

    def tensor(self, depth: int) -> str:
        r = self.rng
        if depth <= 0 or r.random() < 0.25:
            return r.choice(self.tensors)
        k = r.randrange(14 if self.matrix else 12)
        if k <= 2:
            op = r.choice(["+", "-", "*", "/"])
            a, b = self.tensor(depth - 1), self.any(depth - 1)
            return f"{a} {op} {b}" if r.random() < 0.5 else f"{b} {op} ({a})"
        if k == 3:
            return f"{r.choice(ELEMENTWISE1)}({self.tensor(depth - 1)})"
        if k == 4:
            return f"({self.tensor(depth - 1)})^{r.choice(['2', '0.5', '3', self.group(0)])}"
        if k == 5:
            return f"lerp({self.tensor(depth - 1)}, {self.tensor(depth - 1)}, {self.any(depth - 1)})"
        if k == 6:
            return f"where({self.condition(depth - 1)}, {self.any(depth - 1)}, {self.tensor(depth - 1)})"
        if k == 7:
            return f"clamp({self.tensor(depth - 1)}, {self.any(0)}, {self.any(0)})"
        if k == 8:
            return f"{r.choice(['min', 'max'])}({self.tensor(depth - 1)}, {self.any(depth - 1)})"
        if k == 9:
            return f"-{self.tensor(depth - 1)}"
        if k == 10:
            return f"{self.scalar(depth - 1)} * {self.tensor(depth - 1)}"
        if k == 11:
            return f"{r.choice(AXIS1)}({self.tensor(depth - 1)})"
        if k == 12:
            return f"transpose({self.tensor(depth - 1)})"
        return f"({self.tensor(depth - 1)}) @ ({self.tensor(depth - 1)})"

    def scalar(self, depth: int) -> str:
        r = self.rng
        if self.scalars and (depth <= 0 or r.random() < 0.3):
            return r.choice(self.scalars)
        k = r.randrange(5)
        if k == 0 or depth <= 0:
            return f"{r.choice(REDUCE1 + ['min', 'max'])}({self.tensor(max(depth - 1, 0))})"
        if k == 1:
            return f"dot({self.tensor(depth - 1)}, {self.tensor(depth - 1)})"
        if k == 2:
            return f"{self.scalar(depth - 1)} {r.choice(['+', '-', '*', '/'])} {self.group(depth - 1)}"
        if k == 3:
            return f"sqrt({self.scalar(depth - 1)})"
        return f"{r.choice(SHAPES)} * {self.scalar(depth - 1)}"

    def condition(self, depth: int) -> str:
        return f"{self.any(depth)} {self.rng.choice(COMPARES)} {self.any(depth)}"

    def any(self, depth: int) -> str:
        k = self.rng.randrange(5)
        if k < 2:
            return self.group(depth)
        if k < 4:
            return self.tensor(depth)
        return self.scalar(depth)

    def untyped(self, depth: int) -> str:
        r = self.rng
        names = self.hypers + self.bools + list(self.choices) + self.tensors + self.scalars + ["t", "zeros", "nope"]
        if depth <= 0 or r.random() < 0.3:
            k = r.randrange(10)
            if k < 6:
                return r.choice(names + SHAPES)
            if k < 9:
                return number_text(r)
            return r.choice(['"a"', "true", "false", "inf", "1e400"])
        k = r.randrange(5)
        if k == 0:
            return f"{self.untyped(depth - 1)} {r.choice(ARITH)} {self.untyped(depth - 1)}"
        if k == 1:
            return f"({self.untyped(depth - 1)} {r.choice(COMPARES)} {self.untyped(depth - 1)})"
        if k == 2:
            return f"-{self.untyped(depth - 1)}"
        if k == 3:
            func = r.choice(list(FUNCTIONS) + ["foo", "Sqrt"])
            n = r.choice(sorted(FUNCTIONS.get(func, {1: None}))) if r.random() < 0.9 else r.randrange(4)
            return f"{func}({', '.join(self.untyped(depth - 1) for _ in range(n))})"
        return f"({self.untyped(depth - 1)})"

    def expr(self, want: str) -> str:
        depth = self.rng.randrange(1, self.max_depth + 1)
        if not self.typed and self.rng.random() < 0.7:
            return self.untyped(depth)
        return {"tensor": self.tensor, "scalar": self.scalar, "group": self.group}[want](depth)

    def text(self) -> str:
        r = self.rng
        lines = [f"optimizer {r.choice(['Opt', 'Fuzz', 'X', 'MyOpt'])}{r.randrange(100)}"]
        if r.random() < 0.5:
            lines.append('  """A fuzzed optimizer."""')
        for _ in range(r.randrange(5)):
            k = r.randrange(5)
            if k == 0:
                name = self.fresh("b")
                self.bools.append(name)
                lines.append(f"hyper {name} = {r.choice(['true', 'false'])}")
            elif k == 1:
                name = self.fresh("mode")
                opts = r.sample(["a", "b", "fast", "slow", "torch", "hf"], r.randrange(1, 4))
                self.choices[name] = opts
                lines.append(f"hyper {name} = \"{r.choice(opts)}\" in {{{', '.join(f'{chr(34)}{o}{chr(34)}' for o in opts)}}}")
            else:
                name = self.fresh(r.choice(["lr", "beta", "eps", "wd", "h"]))
                self.hypers.append(name)
                default = r.choice(["0", "0.5", "1", "1e-3", "0.9", "2", "-1"])
                rng_text = r.choice(["", " in [0, inf)", " in [0, 1)", " in (0, 1]", " in [-1, 1]", " in (-inf, inf)"])
                if self.typed and rng_text:
                    default = {" in [0, inf)": "0.5", " in [0, 1)": "0.9", " in (0, 1]": "1"}.get(rng_text, "0.5")
                lines.append(f"hyper {name} = {default}{rng_text}")
        states = []
        for _ in range(r.randrange(4)):
            if r.random() < 0.25:
                name = self.fresh("s")
                init = r.choice(["0", "1", "zeros", "ones"] + self.hypers[:1])
                lines.append(f"state {name}: scalar = {init}")
                states.append((name, "scalar"))
            else:
                name = self.fresh("m")
                init = r.choice(["zeros", "ones", "zeros", "p", "g", "0.5"] + self.hypers[:1])
                lines.append(f"state {name} = {init}")
                states.append((name, "tensor"))
        for name, shape in states:
            (self.scalars if shape == "scalar" else self.tensors).append(name)
        for _ in range(r.randrange(4)):
            k = r.random()
            if states and k < 0.4:
                name, shape = r.choice(states)
                lines.append(f"{name} = {self.expr(shape)}")
            elif k < 0.7:
                name = self.fresh("u")
                lines.append(f"{name} = {self.expr('tensor')}")
                self.tensors.append(name)
            elif k < 0.85:
                name = self.fresh("c")
                lines.append(f"{name} = {self.expr('group')}")
                self.hypers.append(name)
            else:
                name = self.fresh("r")
                lines.append(f"{name} = {self.expr('scalar')}")
                self.scalars.append(name)
        lines.append(f"p = p - {self.expr('tensor')}" if r.random() < 0.8 else f"p = {self.expr('tensor')}")
        for name, shape in states:
            if r.random() < 0.3:
                lines.append(f"{name} = {self.expr(shape)}")
        return "\n".join(lines) + "\n"


def random_spec_text(rng: random.Random, typed: bool = True, max_depth: int = 4, matrix: bool = True) -> str:
    return TextSpec(rng, typed, max_depth, matrix).text()


# --- random ASTs (for the printer round trip) -----------------------------------------------

NAME_POOL = ["p", "g", "t", "m", "v", "lr", "beta1", "x_1", "A", "zeros", "numel", "sqrt", "inf_x", "trueish"]
TEXT_POOL = ["", "a", 'say "hi"', "back\\slash", "line\nbreak", "tab\there", "\u00e9t\u00e9", "\u2028", "\U0001f600",
             '"""', 'ends with "', "\\", "\x00", "\r\n", "\\n", "ok\\"]


def random_number(rng: random.Random) -> float:
    k = rng.randrange(6)
    if k == 0:
        return float(rng.randrange(0, 1000))
    if k == 1:
        return rng.choice([0.5, 0.1, 1e-8, 0.999, 1e16, 1e17, 123456789.125, 1e-300, 5e-324, 1.7976931348623157e308])
    if k == 2:
        return rng.random()
    if k == 3:
        return float(rng.randrange(1, 10)) * 10.0 ** rng.randrange(-30, 30)
    if k == 4:
        return rng.uniform(0, 1e6)
    return float("inf")


def random_ast_expr(rng: random.Random, depth: int) -> ast.Expr:
    """Any expression tree the grammar can spell (kinds are not respected)."""
    if depth <= 0 or rng.random() < 0.2:
        k = rng.randrange(8)
        if k < 3:
            return ast.Name(rng.choice(NAME_POOL))
        if k < 6:
            return ast.Num(random_number(rng))
        if k == 6:
            return ast.Bool(rng.random() < 0.5)
        return ast.Str(rng.choice(TEXT_POOL))
    k = rng.randrange(10)
    if k < 5:
        return ast.Binary(rng.choice(ARITH), random_ast_expr(rng, depth - 1), random_ast_expr(rng, depth - 1))
    if k == 5:
        left, right = random_ast_expr(rng, depth - 1), random_ast_expr(rng, depth - 1)
        return ast.Binary(rng.choice(COMPARES), left, right)
    if k == 6:
        # the parser folds "-<number>" into Unary(-, Num) (numbers are unsigned in expressions)
        return ast.Unary("-", random_ast_expr(rng, depth - 1))
    if k == 7:
        return ast.Binary("^", random_ast_expr(rng, depth - 1), ast.Binary("^", random_ast_expr(rng, 0), random_ast_expr(rng, depth - 1)))
    func = rng.choice(list(FUNCTIONS) + ["foo"])
    return ast.Call(func, tuple(random_ast_expr(rng, depth - 1) for _ in range(rng.randrange(4))))


def _literal(rng: random.Random):
    k = rng.randrange(4)
    if k == 0:
        return ast.Bool(rng.random() < 0.5)
    if k == 1:
        return ast.Str(rng.choice(TEXT_POOL))
    value = random_number(rng)
    return ast.Num(-value if rng.random() < 0.3 else value)


def _domain(rng: random.Random):
    k = rng.randrange(3)
    if k == 0:
        return None
    if k == 1:
        lo = rng.choice([0.0, -1.0, -float("inf"), 0.5, -0.0, 1e-8])
        hi = rng.choice([1.0, float("inf"), 2.5, 0.0, 1e308])
        return ast.Interval(lo, hi, rng.random() < 0.5, rng.random() < 0.5)
    return ast.Choices(tuple(rng.choice(TEXT_POOL + ["torch", "hf"]) for _ in range(rng.randrange(1, 4))))


def random_ast_spec(rng: random.Random, depth: int = 4) -> ast.Spec:
    items: list = []
    if rng.random() < 0.6:
        items.append(ast.Doc(rng.choice(TEXT_POOL) + rng.choice(["", "\n  more text", " \"quoted\""])))
    for _ in range(rng.randrange(8)):
        k = rng.randrange(6)
        name = rng.choice(NAME_POOL)
        if k == 0:
            items.append(ast.Hyper(name, _literal(rng), _domain(rng)))
        elif k == 1:
            items.append(ast.State(name, rng.choice(["tensor", "scalar"]), random_ast_expr(rng, depth)))
        elif k == 2:
            items.append(ast.Use(tuple(rng.choice(NAME_POOL) for _ in range(rng.randrange(1, 3)))))
        elif k == 3:
            items.append(ast.Doc(rng.choice(TEXT_POOL)))
        else:
            items.append(ast.Assign(name, random_ast_expr(rng, depth)))
    if rng.random() < 0.8:
        return ast.Spec("optimizer", rng.choice(["X", "AdamW", "opt_1"]), None, tuple(items))
    return ast.Spec("variant", "v1", rng.choice(["u", "g"]), tuple(items))
