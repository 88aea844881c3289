"""Proxy tasks and scores: deterministic, clipped, normalised by tuned AdamW."""

from __future__ import annotations

import math
import time

import pytest
import torch

import optdsl
from optdsl.search import scoring
from optdsl.search.evaluate import Job, run_job
from optdsl.search.space import Scoring
from optdsl.search.tasks import TASKS, run_task
from optdsl.search.tasks.charlm import MarkovLanguage
from search_support import HEADER

SGDM = HEADER + "state m = zeros\n\nm = 0.9 * m + g\np = p - lr * m\n"
LRS = [1e-3, 1e-2, 1e-1]


@pytest.fixture(scope="module")
def sgdm():
    return optdsl.load(source=SGDM)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_same_seed_same_result(task, sgdm):
    torch.set_num_threads(1)
    first = run_task(task, 0, 0, sgdm, LRS)
    again = run_task(task, 0, 0, sgdm, LRS)
    other = run_task(task, 0, 1, sgdm, LRS)
    assert first.final == again.final and first.curve == again.curve
    assert first.final != other.final
    assert all(math.isfinite(x) and x <= first.ceiling for x in first.final)
    assert first.best < first.initial  # momentum SGD makes progress at some lr


def test_markov_language_entropy_is_the_floor():
    lang = MarkovLanguage(seed=3)
    rows = lang.transitions.sum(-1)
    assert torch.allclose(rows, torch.ones_like(rows))
    assert torch.allclose(lang.stationary @ lang.transitions, lang.stationary, atol=1e-10)
    assert 0 < lang.entropy_rate < math.log(16)
    # the empirical loss of the true model on samples approaches the entropy rate
    seqs = lang.sample(400, 65, torch.Generator().manual_seed(0))
    logp = lang.transitions[seqs[:, :-1], seqs[:, 1:]].log()
    assert abs(float(-logp.mean()) - lang.entropy_rate) < 0.05


def test_divergence_and_nan_clip_to_the_ceiling():
    exploding = optdsl.load(source=HEADER + "p = p - lr * 1e6 * g\n")
    result = run_task("quadratic", 0, 0, exploding, [1.0])
    assert result.final == [result.ceiling]
    nan = optdsl.load(source=HEADER + "p = p - lr * sqrt(0 - abs(g) - 1)\n")
    assert run_task("logreg", 0, 0, nan, [0.1]).final == [run_task("logreg", 0, 0, nan, [0.1]).ceiling]


def test_scores_are_ratios_to_tuned_adamw():
    adamw = {"best": 0.5, "floor": 0.0, "initial": 2.0, "ceiling": 3.0}
    assert scoring.task_ratio({"best": 0.25}, adamw) == 0.5
    assert scoring.task_ratio(adamw, adamw) == 1.0
    assert scoring.failure_ratio(adamw) == 6.0
    assert scoring.task_ratio({"best": 1e-9}, adamw) == scoring.MIN_RATIO  # at most 10x better per task
    total, ratios = scoring.score({"a": {"best": 0.25}, "b": {"best": 1.0}}, {"a": adamw, "b": adamw})
    assert ratios == {"a": 0.5, "b": 2.0} and total == pytest.approx(1.0)


def test_smallest_fidelity_costs_about_two_seconds_per_candidate():
    """Compile plus every default search task over the whole default lr grid, on one thread."""
    space = Scoring()
    job = Job(1, SGDM.replace("0.9", "0.85"), space.search_tasks, 0, "search", space.lr_grid(), 0)
    run_job(job)  # warm up imports and the compile cache directory
    start = time.perf_counter()
    run_job(Job(1, SGDM.replace("0.9", "0.87"), space.search_tasks, 0, "search", space.lr_grid(), 0))
    seconds = time.perf_counter() - start
    print(f"fidelity 0, {len(space.search_tasks)} tasks x {len(space.lr_grid())} lrs: {seconds:.2f} s")
    assert seconds < 6.0  # ~1 s on an idle core; generous for loaded CI machines
