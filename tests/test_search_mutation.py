"""Candidate programs: warm starts in search form, the mutation table, checked children."""

from __future__ import annotations

import math
import random
import re

import pytest

from optdsl.frontend import ast
from optdsl.frontend.parser import parse
from optdsl.search import mutation as mu
from optdsl.search.program import checked_spec, warm_start_source
from optdsl.search.space import Space, Vocabulary, WarmStart
from search_support import HEADER

VOCAB = Vocabulary()
PROGRAM = HEADER + "state m = zeros\n\nm = 0.9 * m + g\np = p - lr * m\n"


def test_sgd_momentum_warm_start_inlines_and_folds_hypers():
    text = warm_start_source(WarmStart(spec="sgd", hypers=(("momentum", 0.9),)))
    statements = [line for line in text.splitlines() if "=" in line and not line.startswith(("hyper", "state"))]
    assert statements == ["d = g", "m = where(t == 1, d, 0.9 * m + d)", "u = m", "p = p - lr * u"]
    assert "hyper lr = 0.001 in [0, inf)" in text and "momentum" not in text


def test_choice_and_bool_hypers_fold_away():
    text = warm_start_source(WarmStart(spec="adamw", hypers=(("eps_style", "hf"), ("weight_decay", 0.0))))
    assert "eps_style" not in text and "where" not in text and "eps_hat = 1e-8 / sqrt(bc2)" in text
    checked_spec(text)


def test_warm_start_errors():
    from optdsl.search.program import WarmStartError

    with pytest.raises(WarmStartError, match="no hyper"):
        warm_start_source(WarmStart(spec="sgd", hypers=(("betas", 0.9),)))


@pytest.mark.parametrize("name", ["insert", "delete", "change_argument", "change_function", "perturb_constant"])
def test_each_mutation_changes_the_program(name):
    rng = random.Random(1)
    parent = parse(PROGRAM)
    changed = 0
    for _ in range(30):
        child = mu.MUTATIONS[name](parent, rng, VOCAB)
        if child is not None and child != parent:
            changed += 1
    assert changed >= 10


def test_insert_and_delete_change_the_statement_count():
    rng = random.Random(0)
    parent = parse(PROGRAM)
    assert len(mu.insert_statement(parent, rng, VOCAB).statements) == 3
    assert len(mu.delete_statement(parent, rng, VOCAB).statements) == 1


def test_perturb_constant_multiplies_by_a_power_of_two():
    rng = random.Random(3)
    child = mu.perturb_constant(parse(PROGRAM), rng, VOCAB)
    (value,) = [float(x) for x in re.findall(r"m = ([0-9.e-]+) \* m", mu.pg.canonical_text(child))]
    assert value != 0.9 and abs(math.log2(value / 0.9)) < 6


def test_mutate_returns_only_children_the_checker_accepts():
    rng = random.Random(0)
    weights = dict(Space().evolution.mutation_weights)
    population = [PROGRAM]
    rejected = 0
    for _ in range(150):
        child = mu.mutate(rng.choice(population), rng, VOCAB, weights, max_mutations=3)
        assert child is not None
        checked_spec(child.text)  # raises if the checker refuses it
        spec = parse(child.text)
        assert len(spec.statements) <= VOCAB.max_statements and len(spec.states) <= len(VOCAB.state_slots)
        assert all(mu.pg.size(a.value) <= VOCAB.max_expression_size for a in spec.statements)
        rejected += child.rejected
        population.append(child.text)
    assert rejected > 0  # the checker did refuse some on the way


def test_the_table_is_pluggable():
    """A new entry (an 'apply variant' mutation, later) is picked by its weight like the built-ins."""

    @mu.register("double_lr")
    def double_lr(spec, rng, vocab):
        last = spec.statements[-1]
        return mu.pg.rebuild(spec, [*spec.statements[:-1], ast.Assign(last.target, ast.Binary("*", ast.Num(2.0), last.value))])

    try:
        child = mu.mutate(PROGRAM, random.Random(0), VOCAB, {"double_lr": 1.0})
        assert child.mutations == ("double_lr",) and "p = 2 * (p - lr * m)" in child.text
    finally:
        del mu.MUTATIONS["double_lr"]


@pytest.mark.parametrize("variant", ["cautious", "grams", "orthograd"])
def test_apply_variant_inlines_a_checked_variant_with_constant_hypers(variant):
    import dataclasses

    text = warm_start_source(WarmStart(spec="sgd", hypers=(("momentum", 0.9),)))
    vocab = dataclasses.replace(VOCAB, variants=(variant,))
    child = mu.apply_variant(parse(text), random.Random(0), vocab)
    assert child is not None
    out = mu.pg.canonical_text(child)
    checked_spec(out)
    assert "hyper lr" in out and "cautious_norm" not in out
    if variant == "cautious":
        assert "cautious_mask = u * g > 0" in out and "numel / (sum(cautious_mask) + 1)" in out
    if variant == "grams":
        assert "u = sign(g) * abs(u)" in out
    if variant == "orthograd":  # an `on g` variant: the new gradient is a local the rule reads
        assert re.search(r"^a1 = where\(orthograd_n_perp > ", out, re.M) and "d = a1" in out


def test_apply_variant_skips_variants_that_do_not_fit():
    import dataclasses

    program = HEADER + "p = p - lr * g\n"  # no u and no m: neither fits
    vocab = dataclasses.replace(VOCAB, variants=("cautious", "adaptive_braking"))
    assert mu.apply_variant(parse(program), random.Random(0), vocab) is None
