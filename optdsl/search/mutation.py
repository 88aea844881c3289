"""Mutations of candidate programs: a pluggable table of ``(spec, rng, vocabulary) -> spec``.

Each entry edits a search-form spec (see ``program``) and returns the new one,
or None when it does not apply (no constant to perturb, no room to insert).
``mutate`` applies one or more of them, picked by the space file's weights,
and returns only children the compiler's checker accepts: a child is printed,
parsed and checked before it can cost anything. New entries join with
``@register("name")``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from ..frontend import ast
from ..frontend.errors import SpecError
from ..frontend.parser import parse
from . import program as pg
from .space import BINARY_OPERATORS, Vocabulary, function_arity

Mutation = Callable[[ast.Spec, random.Random, Vocabulary], "ast.Spec | None"]
MUTATIONS: dict[str, Mutation] = {}
MAX_TRIES = 50


def register(name: str):
    """Add a mutation to the table under ``name`` (the key the space file weights)."""

    def add(fn: Mutation) -> Mutation:
        MUTATIONS[name] = fn
        return fn

    return add


@dataclass(frozen=True)
class Child:
    text: str  # canonical spec text, checked
    mutations: tuple[str, ...]  # what was applied, in order
    rejected: int  # children the checker refused on the way


def mutate(parent_text: str, rng: random.Random, vocab: Vocabulary, weights: dict[str, float], max_mutations: int = 1) -> Child | None:
    """A checked child of ``parent_text`` with 1..max_mutations mutations, or None after many tries."""
    parent = parse(parent_text)
    names = [n for n, w in weights.items() if w > 0 and n in MUTATIONS]
    rejected = 0
    for _ in range(MAX_TRIES):
        spec, applied = parent, []
        for _ in range(_count(rng, max_mutations)):
            name = rng.choices(names, weights=[weights[n] for n in names])[0]
            new = MUTATIONS[name](spec, rng, vocab)
            if new is not None:
                spec, applied = pg.tidy(new), applied + [name]
        if not applied or not within_limits(spec, parent, vocab):
            continue
        text = pg.canonical_text(spec)
        if text == parent_text:
            continue
        try:
            pg.checked_spec(text)
        except SpecError:
            rejected += 1
            continue
        return Child(text, tuple(applied), rejected)
    return None


def _count(rng: random.Random, most: int) -> int:
    """1, then each further mutation with probability 1/2, up to ``most``."""
    n = 1
    while n < most and rng.random() < 0.5:
        n += 1
    return n


def within_limits(spec: ast.Spec, parent: ast.Spec, vocab: Vocabulary) -> bool:
    most_states = max(len(vocab.state_slots), len(parent.states))
    return (
        len(spec.statements) <= max(vocab.max_statements, len(parent.statements))
        and len(spec.states) <= most_states
        and all(pg.size(a.value) <= vocab.max_expression_size for a in spec.statements)
    )


# --- building blocks ------------------------------------------------------------------


def readable(spec: ast.Spec, index: int, vocab: Vocabulary) -> list[str]:
    """Names a statement at position ``index`` may read."""
    names = list(dict.fromkeys([*vocab.operands, "p", *(s.name for s in spec.states)]))
    for a in spec.statements[:index]:
        if a.target not in names:
            names.append(a.target)
    return names


def random_leaf(rng: random.Random, names: list[str], vocab: Vocabulary) -> ast.Expr:
    if vocab.constants and rng.random() < 0.25:
        return pg.number(float(rng.choice(vocab.constants)))
    return ast.Name(rng.choice(names))


def random_expr(rng: random.Random, names: list[str], vocab: Vocabulary, depth: int = 1, keep: ast.Expr | None = None) -> ast.Expr:
    """``f(args)`` for a random vocabulary function; ``keep`` becomes one of the arguments."""
    fn, arity = function_arity(rng.choice(vocab.functions))
    args = [
        random_expr(rng, names, vocab, depth - 1) if depth > 0 and rng.random() < 0.2 else random_leaf(rng, names, vocab)
        for _ in range(arity)
    ]
    if keep is not None:
        args[rng.randrange(arity)] = keep
    return apply(fn, args)


def apply(fn: str, args: list[ast.Expr]) -> ast.Expr:
    if fn in BINARY_OPERATORS:
        return ast.Binary(fn, args[0], args[1])
    return ast.Call(fn, tuple(args))


def fresh_local(spec: ast.Spec) -> str:
    taken = {s.name for s in spec.states} | {a.target for a in spec.statements}
    i = 1
    while f"a{i}" in taken:
        i += 1
    return f"a{i}"


def free_slot(spec: ast.Spec, vocab: Vocabulary) -> str | None:
    taken = {s.name for s in spec.states} | {a.target for a in spec.statements}
    free = [s for s in vocab.state_slots if s not in taken]
    return free[0] if free and len(spec.states) < len(vocab.state_slots) else None


# --- the table ---------------------------------------------------------------------------


@register("insert")
def insert_statement(spec: ast.Spec, rng: random.Random, vocab: Vocabulary) -> ast.Spec | None:
    """Insert ``target = f(...)``: a state update, a re-assignment, or a new local spliced into a later use."""
    stmts, states = list(spec.statements), list(spec.states)
    if len(stmts) >= vocab.max_statements:
        return None
    index = rng.randint(0, len(stmts))
    names = readable(spec, index, vocab)
    slot = free_slot(spec, vocab)
    targets = [s.name for s in states] + ([slot] if slot else []) + ["<local>"] * (index < len(stmts))
    target = rng.choice(targets)
    if target == slot:
        states.append(ast.State(slot, "tensor", ast.Name("zeros")))
        names.append(slot)
    keep = ast.Name(target) if target != "<local>" and rng.random() < 0.6 else None
    value = random_expr(rng, names, vocab, keep=keep)
    if target == "<local>":
        target = fresh_local(spec)
        later = rng.randrange(index, len(stmts))
        leaves = [p for p, e in pg.paths(stmts[later].value) if not pg.children(e)]
        stmts[later] = ast.Assign(stmts[later].target, pg.replace_at(stmts[later].value, rng.choice(leaves), ast.Name(target)))
    stmts.insert(index, ast.Assign(target, value))
    return pg.rebuild(spec, stmts, states)


@register("delete")
def delete_statement(spec: ast.Spec, rng: random.Random, vocab: Vocabulary) -> ast.Spec | None:
    """Remove one statement (the checker refuses children that then read an unassigned name)."""
    stmts = list(spec.statements)
    if len(stmts) <= 1:
        return None
    del stmts[rng.randrange(len(stmts))]
    return pg.rebuild(spec, stmts)


@register("change_argument")
def change_argument(spec: ast.Spec, rng: random.Random, vocab: Vocabulary) -> ast.Spec | None:
    """Replace one node of one statement: by a leaf, by a function of itself, or by one of its arguments."""
    stmts = list(spec.statements)
    index = rng.randrange(len(stmts))
    path, old = rng.choice(list(pg.paths(stmts[index].value)))
    names = readable(spec, index, vocab)
    roll, kids = rng.random(), pg.children(old)
    if roll < 0.25 and kids:
        new = rng.choice(kids)
    elif roll < 0.5:
        new = random_expr(rng, names, vocab, depth=0, keep=old)
    else:
        new = random_leaf(rng, names, vocab)
    if new == old:
        return None
    stmts[index] = ast.Assign(stmts[index].target, pg.replace_at(stmts[index].value, path, new))
    return pg.rebuild(spec, stmts)


@register("change_function")
def change_function(spec: ast.Spec, rng: random.Random, vocab: Vocabulary) -> ast.Spec | None:
    """Swap one operator or function for another of the vocabulary with as many arguments."""
    sites = [
        (i, path, e)
        for i, a in enumerate(spec.statements)
        for path, e in pg.paths(a.value)
        if isinstance(e, (ast.Call, ast.Unary)) or (isinstance(e, ast.Binary) and e.op in BINARY_OPERATORS)
    ]
    if not sites:
        return None
    index, path, old = rng.choice(sites)
    kids = list(pg.children(old))
    current = old.op if isinstance(old, (ast.Binary, ast.Unary)) else old.func
    options = [f for f, n in map(function_arity, vocab.functions) if n == len(kids) and f != current]
    if not options:
        return None
    stmts = list(spec.statements)
    stmts[index] = ast.Assign(stmts[index].target, pg.replace_at(stmts[index].value, path, apply(rng.choice(options), kids)))
    return pg.rebuild(spec, stmts)


@register("perturb_constant")
def perturb_constant(spec: ast.Spec, rng: random.Random, vocab: Vocabulary) -> ast.Spec | None:
    """Multiply one constant by 2^N(0, 1) (kept to 4 significant digits)."""
    sites = [
        (i, path, value)
        for i, a in enumerate(spec.statements)
        for path, e in pg.paths(a.value)
        if isinstance(value := pg.constant_value(e), float) and value != 0 and not _inside_negation(a.value, path)
    ]
    if not sites:
        return None
    index, path, value = rng.choice(sites)
    new = float(f"{value * 2.0 ** rng.gauss(0.0, 1.0):.4g}")
    if new == value or new == 0:
        return None
    stmts = list(spec.statements)
    stmts[index] = ast.Assign(stmts[index].target, pg.replace_at(stmts[index].value, path, pg.number(new)))
    return pg.rebuild(spec, stmts)


def _inside_negation(expr: ast.Expr, path: pg.Path) -> bool:
    """A Num under a unary minus: the minus node is the constant's site."""
    if not path:
        return False
    parent = expr
    for i in path[:-1]:
        parent = pg.children(parent)[i]
    return isinstance(parent, ast.Unary) and isinstance(pg.children(parent)[path[-1]], ast.Num)


@register("apply_variant")
def apply_variant(spec: ast.Spec, rng: random.Random, vocab: Vocabulary) -> ast.Spec | None:
    """Inline a built-in variant that fits the program (Cautious, Grams, ...).

    The variant's hypers become constants (search form keeps only ``lr``), and an
    ``on g`` variant's new gradient becomes a local that the program reads from
    then on, so the child is plain spec text like any other candidate.
    """
    from ..compiler import resolve_variant
    from ..frontend.variants import apply_variants

    names = list(vocab.variants)
    rng.shuffle(names)
    for name in names:
        variant = parse(resolve_variant(name).text, f"<variant {name}>")
        try:
            combined = apply_variants(spec, [variant])
        except SpecError:
            continue
        values = {h.name: pg._literal(h.default.value) for h in variant.hypers}
        statements = _rename_gradient(
            [ast.Assign(a.target, pg.fold(pg.inline(a.value, values))) for a in combined.statements], spec
        )
        states = [ast.State(s.name, s.shape, pg.fold(pg.inline(s.init, values))) for s in combined.states]
        return pg.rebuild(spec, statements, states)
    return None


def _rename_gradient(statements: list[ast.Assign], spec: ast.Spec) -> list[ast.Assign]:
    """Assignments to ``g`` (from an ``on g`` variant) become a fresh local read from then on."""
    current = "g"
    out: list[ast.Assign] = []
    everything = pg.rebuild(spec, statements)
    for a in statements:
        value = pg.inline(a.value, {"g": ast.Name(current)}) if current != "g" else a.value
        if a.target == "g":
            current = fresh_local(everything)
            everything = pg.rebuild(everything, list(everything.statements) + [ast.Assign(current, ast.Num(0.0))])
            out.append(ast.Assign(current, value))
        else:
            out.append(ast.Assign(a.target, value))
    return out
