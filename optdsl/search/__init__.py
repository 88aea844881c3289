"""``optdsl search``: Lion-style evolutionary discovery of update rules.

    >>> from optdsl.search import run_search, load_space
    >>> progress = run_search("run.db", load_space(), evaluations=50)

Stages, one module each: ``space`` (the TOML file), ``program`` and
``mutation`` (candidates and their edits), ``dedupe`` and ``probe``
(duplicates and cheap filters), ``tasks`` and ``scoring`` (proxy problems,
scores against tuned AdamW), ``store`` (SQLite), ``executors`` (local pool,
Ray), ``evolution`` (the loop), ``report`` (leaderboard, export, plots).
"""

from __future__ import annotations

from pathlib import Path

from .space import Space, SpaceError, load_space, space_from_json


class SearchError(Exception):
    """A search that cannot start (a usage error: wrong database, bad option)."""


def run_search(
    db: str | Path,
    space: Space | None = None,
    *,
    resume: bool = False,
    workers: int | None = None,
    ray_address: str | None = None,
    evaluations: int | None = None,
    minutes: float | None = None,
    seed: int | None = None,
    on_progress=None,
    executor=None,
):
    """Run (or with ``resume``, continue) the search stored in ``db``; returns its final progress."""
    from .evolution import Search
    from .executors import make_executor
    from .store import Store

    db = Path(db)
    if resume and not db.exists():
        raise SearchError(f"no search database at {db} to resume")
    store = Store(db)
    try:
        space = _effective_space(store, space, resume, evaluations, minutes, seed)
        store.set_meta("space", space.to_json())
        owned = executor is None
        if owned:
            executor = make_executor(workers if workers is not None else space.execution.workers, ray_address)
        store.set_meta("executor", executor.name)
        try:
            return Search(store, space, executor, on_progress).run()
        finally:
            if owned:
                executor.close()
    finally:
        store.close()


def _effective_space(store, space, resume, evaluations, minutes, seed) -> Space:
    stored = store.get_meta("space")
    if resume:
        space = space_from_json(stored)
    elif stored is not None:
        raise SearchError(f"{store.path} already holds a search; continue it with --resume or choose another --db")
    space = space or load_space()
    budget = space.budget
    if evaluations is not None:
        budget = budget.__class__(evaluations, budget.minutes)
    if minutes is not None:
        budget = budget.__class__(budget.evaluations, minutes)
    return space.replace(budget=budget, seed=space.seed if seed is None or resume else seed)


__all__ = ["run_search", "load_space", "Space", "SpaceError", "SearchError"]
