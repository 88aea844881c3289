"""kill -9 a real `optdsl search` process, then `--resume` it: no finished evaluation is lost."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

from search_support import rows, write_space


def _count(db, sql: str) -> int:
    try:
        return rows(db, sql)[0][0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_resume_after_kill_9(tmp_path, repo):
    space = write_space(tmp_path, evaluations=200, heldout="[]")
    db = tmp_path / "run.db"
    process = subprocess.Popen(
        [sys.executable, "-m", "optdsl", "search", "--space", str(space), "--db", str(db), "--workers", "2"],
        cwd=repo, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while _count(db, "SELECT COUNT(*) FROM evaluations WHERE phase = 'search' AND status = 'ok'") < 5:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "the search made no progress"
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the search and its worker processes, like a crash
        process.wait()
    assert process.returncode == -signal.SIGKILL

    finished = set(rows(db, "SELECT candidate, fidelity, phase, status, score, finished FROM evaluations WHERE status != 'pending'"))
    pending = set(rows(db, "SELECT candidate, fidelity FROM evaluations WHERE status = 'pending'"))
    baselines = set(rows(db, "SELECT * FROM baselines"))
    trained = _count(db, "SELECT COUNT(*) FROM candidates WHERE status IN ('evaluated', 'failed')")

    out = subprocess.run(
        [sys.executable, "-m", "optdsl", "search", "--resume", str(db), "--evals", str(trained + 3)],
        cwd=repo, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "search leaderboard" in out.stdout

    after = set(rows(db, "SELECT candidate, fidelity, phase, status, score, finished FROM evaluations"))
    assert finished <= after  # every finished evaluation survived, unchanged
    assert set(rows(db, "SELECT * FROM baselines")) == baselines  # AdamW was not trained again
    done = set(rows(db, "SELECT candidate, fidelity FROM evaluations WHERE status != 'pending'"))
    assert pending <= done and not rows(db, "SELECT 1 FROM evaluations WHERE status = 'pending'")
    assert _count(db, "SELECT COUNT(*) FROM candidates WHERE status IN ('evaluated', 'failed')") == trained + 3


def test_resume_needs_a_database(tmp_path, repo):
    out = subprocess.run(
        [sys.executable, "-m", "optdsl", "search", "--resume", str(tmp_path / "none.db")],
        cwd=repo, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 2 and "no search database" in out.stderr
