"""Shared pieces of the search tests: a small space (seconds per search), program text."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from optdsl.search.space import load_space

HEADER = "optimizer Candidate\n\nhyper lr = 0.001 in [0, inf)\n\n"

# Two cheap search tasks, one held-out task, a 3-point lr grid, two fidelities.
SMALL_SPACE = """
seed = {seed}

[vocabulary]
operands = ["g", "p"]
functions = ["+", "-", "*", "/", "sign", "sqrt", "abs", "lerp", "max"]
max_statements = 6

{warm_starts}

[evolution]
population = 8
tournament = 3
restart_after = {restart_after}

[tasks]
search = ["quadratic", "logreg"]
heldout = {heldout}

[scoring]
lr_min = 1e-3
lr_max = 1e-1
lr_count = 3
fidelities = 2
promote_fraction = 0.25
heldout_top = 2
heldout_fidelity = 0

[budget]
evaluations = {evaluations}
minutes = {minutes}

[execution]
workers = 2
timeout_s = 60
"""

# Signum, and the same rule written in other ways (the search must train only one of them).
SIGNUM = HEADER + "state m = zeros\n\nm = 0.9 * m + g\np = p - lr * sign(m)\n"
EQUAL_TO_SIGNUM = {
    "sqrt_spelling": HEADER + "state m = zeros\n\nm = g + m * 0.9\np = p - lr * (m / sqrt(m * m))\n",
    "abs_spelling": HEADER + "state m = zeros\n\nm = 0.9 * m + g\np = p - lr * m / abs(m)\n",
    "renamed_state": HEADER + "state k = zeros\n\nk = 0.9 * k + g\nq = sign(k)\np = p - lr * q\n",
    "reordered_sum": HEADER + "state m = zeros\n\nm = g + 0.9 * m\np = p - sign(m) * lr\n",
    "dead_code": HEADER + "state m = zeros\nstate v = zeros\n\nv = v + g\nm = 0.9 * m + g\nx = m * 2\np = p - lr * sign(m)\n",
}


SGD_MOMENTUM = '[[warm_start]]\nspec = "sgd"\nhypers = { momentum = 0.9 }\n'


def write_space(folder: Path, evaluations: int = 6, seed: int = 0, heldout: str = '["rosenbrock"]',
                warm_starts: str = SGD_MOMENTUM, minutes: float = 0, restart_after: int = 0) -> Path:
    path = folder / "space.toml"
    path.write_text(SMALL_SPACE.format(seed=seed, evaluations=evaluations, heldout=heldout, warm_starts=warm_starts,
                                       minutes=minutes, restart_after=restart_after))
    return path


def small_space(folder: Path, **kwargs):
    return load_space(write_space(folder, **kwargs))


def inline_warm_start(body: str) -> str:
    """A [[warm_start]] table holding a whole candidate program."""
    return '[[warm_start]]\nsource = """' + HEADER + body + '"""\n'


def rows(db: Path, sql: str, args=()) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(sql, args).fetchall()
