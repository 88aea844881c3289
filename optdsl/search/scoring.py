"""Scores: a candidate's loss on each task relative to AdamW tuned on the same lr grid.

For one task: ``ratio = (best candidate loss - floor) / (best AdamW loss - floor)``,
both over the same grid, both clipped to the task's ceiling (divergence and
NaN count as the ceiling). ``floor`` is the best possible loss when the task
knows it (the Markov language's entropy), else 0. A ratio below ``MIN_RATIO``
counts as ``MIN_RATIO``. A candidate's score is the geometric mean of its
ratios over tasks: 1.0 is tuned AdamW, lower is better.
"""

from __future__ import annotations

import math

RELATIVE_EPSILON = 1e-6  # excess losses below this fraction of the initial one count as equal
MIN_RATIO = 0.1  # one task counts at most 10x better than AdamW: no specialist wins on one task alone


def task_ratio(candidate: dict, baseline: dict) -> float:
    """Excess loss over the floor, candidate / AdamW (both grid results as dicts), at least MIN_RATIO."""
    floor = baseline["floor"]
    epsilon = RELATIVE_EPSILON * max(baseline["initial"] - floor, 1e-12)
    return max(MIN_RATIO, max(candidate["best"] - floor, epsilon) / max(baseline["best"] - floor, epsilon))


def failure_ratio(baseline: dict) -> float:
    """The ratio of a run that diverged on every lr (loss at the ceiling)."""
    return task_ratio({"best": baseline["ceiling"]}, baseline)


def aggregate(ratios: list[float]) -> float:
    """Geometric mean."""
    return math.exp(sum(math.log(r) for r in ratios) / len(ratios))


def score(results: dict[str, dict], baselines: dict[str, dict]) -> tuple[float, dict[str, float]]:
    """(the candidate's score, its ratio per task)."""
    ratios = {task: task_ratio(results[task], baselines[task]) for task in results}
    return aggregate(list(ratios.values())), ratios


def failure_score(baselines: dict[str, dict]) -> float:
    return aggregate([failure_ratio(b) for b in baselines.values()])
