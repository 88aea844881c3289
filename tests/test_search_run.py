"""Whole searches on a small space: dedupe, the store, the funnel, held-out isolation, the CLI."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

import optdsl
from optdsl.search import SearchError, run_search
from optdsl.search.executors import LocalExecutor
from search_support import EQUAL_TO_SIGNUM, HEADER, SIGNUM, inline_warm_start, rows, small_space


class RecordingExecutor(LocalExecutor):
    """The real local pool, also noting every job it is given, in order."""

    def __init__(self, workers: int = 2):
        super().__init__(workers)
        self.submitted: list = []

    def submit(self, key, fn, args, timeout_s):
        self.submitted.append(args[0])
        super().submit(key, fn, args, timeout_s)


@pytest.fixture(scope="module")
def finished_search(tmp_path_factory):
    """A finished 8-candidate search (2 search tasks, 1 held-out task) and the jobs it ran."""
    folder = tmp_path_factory.mktemp("search")
    space = small_space(folder, evaluations=8, restart_after=1)
    executor = RecordingExecutor()
    try:
        progress = run_search(folder / "run.db", space, executor=executor)
    finally:
        executor.close()
    return folder / "run.db", executor.submitted, progress, space


def test_algebraically_equal_programs_are_trained_once(tmp_path):
    warm = inline_warm_start(SIGNUM.removeprefix(HEADER))
    warm += "".join(inline_warm_start(text.removeprefix(HEADER)) for text in EQUAL_TO_SIGNUM.values())
    space = small_space(tmp_path, evaluations=1, heldout="[]", warm_starts=warm)
    executor = RecordingExecutor()
    try:
        run_search(tmp_path / "dedupe.db", space, executor=executor)
    finally:
        executor.close()
    trained = [job for job in executor.submitted if job.phase == "search"]
    assert len(trained) == 1
    candidates = rows(tmp_path / "dedupe.db", "SELECT id, status, duplicate_of, reason FROM candidates ORDER BY id")
    assert candidates[0][1] == "evaluated"
    assert [c[1:3] for c in candidates[1:]] == [("duplicate", candidates[0][0])] * len(EQUAL_TO_SIGNUM)
    assert {c[3] for c in candidates[1:]} >= {"symbolic", "structural"}


def test_every_candidate_is_stored_with_its_history(finished_search):
    db, _, progress, space = finished_search
    candidates = rows(db, "SELECT id, source, structural, parent, mutation, status, created FROM candidates")
    assert len(candidates) > 8 and all(c[1].startswith("optimizer Candidate") and c[2] and c[6] for c in candidates)
    assert all(c[3] is not None and c[4] for c in candidates if c[4] != "warm_start")
    trained = rows(db, "SELECT COUNT(*) FROM candidates WHERE status IN ('evaluated', 'failed')")[0][0]
    assert trained == 8 == progress.evaluated + progress.failed
    tasks = rows(db, "SELECT candidate, fidelity, task, ratio, loss, best_lr FROM task_scores WHERE phase = 'search'")
    per_job = {}
    for cid, fidelity, task, *_ in tasks:
        per_job.setdefault((cid, fidelity), set()).add(task)
    assert all(found == set(space.scoring.search_tasks) for found in per_job.values())
    assert any(fidelity == 1 for _, fidelity in per_job)  # the funnel promoted someone


def test_heldout_tasks_are_never_seen_during_the_search(finished_search):
    db, submitted, _, space = finished_search
    heldout = set(space.scoring.heldout_tasks)
    phases = [job.phase for job in submitted]
    first_heldout = phases.index("heldout")
    assert all(not heldout & set(job.tasks) for job in submitted[:first_heldout] if job.phase != "baseline")
    assert all(job.phase in ("heldout", "baseline") for job in submitted[first_heldout:])
    assert all(set(job.tasks) <= heldout for job in submitted[first_heldout:])
    last_search = rows(db, "SELECT MAX(finished) FROM evaluations WHERE phase = 'search'")[0][0]
    first_ranked = rows(db, "SELECT MIN(submitted) FROM evaluations WHERE phase = 'heldout'")[0][0]
    assert first_ranked >= last_search
    # fitness is computed from search tasks only
    for cid, fitness in rows(db, "SELECT id, fitness FROM candidates WHERE status = 'evaluated'"):
        ratios = [r for (r,) in rows(db, "SELECT ratio FROM task_scores WHERE candidate = ? AND fidelity = 0 AND phase = 'search'", (cid,))]
        assert len(ratios) == len(space.scoring.search_tasks)
        assert fitness == pytest.approx(math.exp(sum(map(math.log, ratios)) / len(ratios)))
    assert rows(db, "SELECT COUNT(*) FROM evaluations WHERE phase = 'heldout' AND status = 'ok'")[0][0] >= 2


def test_restarts_begin_from_the_best_rule_and_the_warm_start(finished_search):
    db, _, _, _ = finished_search
    epochs = int(rows(db, "SELECT value FROM meta WHERE key = 'epoch'")[0][0])
    assert epochs >= 1  # restart_after = 1: any candidate that is not a new best starts an epoch
    warm = {cid for (cid,) in rows(db, "SELECT id FROM candidates WHERE mutation = 'warm_start'")}
    for epoch in range(1, epochs + 1):
        first = [cid for (cid,) in rows(db, "SELECT candidate FROM population WHERE epoch = ? ORDER BY seq", (epoch,))]
        best_so_far = rows(
            db, "SELECT id FROM candidates WHERE status = 'evaluated' AND id IN (SELECT candidate FROM population"
            " WHERE epoch < ?) ORDER BY fitness LIMIT 1", (epoch,),
        )[0][0]
        assert first[0] == best_so_far and warm <= set(first[:2]) | {best_so_far}


def test_a_wall_time_budget_ends_the_search(tmp_path):
    space = small_space(tmp_path, evaluations=0, minutes=0.05, heldout="[]")
    executor = RecordingExecutor()
    try:
        progress = run_search(tmp_path / "timed.db", space, executor=executor)
    finally:
        executor.close()
    assert progress.phase == "done" and progress.evaluated >= 1
    search_time = float(rows(tmp_path / "timed.db", "SELECT value FROM meta WHERE key = 'elapsed_s'")[0][0])
    assert search_time < 3 + 60  # the 3 s budget, plus the jobs that were running (each well under a minute)


def test_a_finished_database_is_not_restarted(finished_search, tmp_path):
    db, _, _, space = finished_search
    with pytest.raises(SearchError, match="--resume"):
        run_search(db, space)


def test_show_export_and_plots(finished_search, tmp_path, repo):
    db, _, _, _ = finished_search
    out = subprocess.run(
        [sys.executable, "-m", "optdsl", "search", "show", str(db), "--top", "3", "--sources",
         "--export", str(tmp_path / "found"), "--plots", str(tmp_path / "plots")],
        capture_output=True, text=True, cwd=repo, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "final ranking (held-out tasks)" in out.stdout and "search leaderboard" in out.stdout
    specs = sorted((tmp_path / "found").glob("*.opt"))
    assert 1 <= len(specs) <= 3
    for path in specs:
        cls = optdsl.load(path)  # compiles and loads like a built-in
        assert cls.__name__.startswith("Found")
        check = subprocess.run([sys.executable, "-m", "optdsl", "check", str(path)], capture_output=True, text=True, cwd=repo)
        assert check.returncode == 0, check.stderr
    for name in ("best_score.png", "loss_curves.png"):
        data = (tmp_path / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_exported_rule_computes_what_was_trained(finished_search, tmp_path):
    """The simplified export steps exactly like the candidate it came from."""
    import torch

    from optdsl.search.report import export, final_ranking, leaderboard
    from optdsl.search.store import Store

    db, _, _, _ = finished_search
    store = Store(db)
    try:
        (path,) = export(store, tmp_path, top=1)
        best = (final_ranking(store) or leaderboard(store, 1))[0]
    finally:
        store.close()
    params = {}
    for name, cls in (("trained", optdsl.load(source=best.source)), ("exported", optdsl.load(path))):
        p = torch.nn.Parameter(torch.linspace(-1, 1, 12).reshape(3, 4))
        opt = cls([p], lr=0.01)
        for step in range(5):
            p.grad = torch.sin(p.detach() * (step + 1))
            opt.step()
        params[name] = p.detach()
    assert torch.allclose(params["trained"], params["exported"], rtol=1e-5, atol=1e-6)
