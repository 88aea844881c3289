"""The search database: SQLite in WAL mode, one writer (the search), many readers.

Every candidate the search makes is a row (source, hashes, parent, mutation,
status, fitness, times); every evaluation job is a row, ``pending`` when
submitted and finished in its own transaction, with one ``task_scores`` row
per task. After ``kill -9`` a resumed search finds every finished evaluation
and re-submits the pending ones.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS candidates (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    structural TEXT, symbolic TEXT, numeric TEXT,
    parent INTEGER REFERENCES candidates(id),
    mutation TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    status TEXT NOT NULL,           -- pending | evaluated | failed | duplicate | filtered
    duplicate_of INTEGER REFERENCES candidates(id),
    reason TEXT,                    -- the key a duplicate matched, or why a filter refused it
    fitness REAL,                   -- fidelity-0 score (lower is better; 1.0 = tuned AdamW)
    created REAL NOT NULL,
    finished REAL
);
CREATE TABLE IF NOT EXISTS evaluations (
    candidate INTEGER NOT NULL REFERENCES candidates(id),
    fidelity INTEGER NOT NULL,
    phase TEXT NOT NULL,            -- search | heldout
    status TEXT NOT NULL,           -- pending | ok | failed
    score REAL,
    error TEXT,
    worker TEXT,
    seconds REAL,
    submitted REAL NOT NULL,
    finished REAL,
    PRIMARY KEY (candidate, fidelity, phase)
);
CREATE TABLE IF NOT EXISTS task_scores (
    candidate INTEGER NOT NULL,
    fidelity INTEGER NOT NULL,
    phase TEXT NOT NULL,
    task TEXT NOT NULL,
    ratio REAL NOT NULL,
    loss REAL NOT NULL,
    best_lr REAL,
    result TEXT NOT NULL,           -- the grid result as JSON (losses per lr, curve)
    PRIMARY KEY (candidate, fidelity, phase, task)
);
CREATE TABLE IF NOT EXISTS baselines (
    task TEXT NOT NULL, fidelity INTEGER NOT NULL, key TEXT NOT NULL, result TEXT NOT NULL,
    PRIMARY KEY (task, fidelity, key)
);
CREATE TABLE IF NOT EXISTS population (
    seq INTEGER PRIMARY KEY, candidate INTEGER NOT NULL REFERENCES candidates(id), epoch INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class Candidate:
    id: int
    source: str
    parent: int | None
    mutation: str
    epoch: int
    status: str
    fitness: float | None
    duplicate_of: int | None
    reason: str | None


class Store:
    """One search database file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def _write(self, sql: str, args=()) -> sqlite3.Cursor:
        with self.db:
            return self.db.execute(sql, args)

    # --- meta and counters -----------------------------------------------------------

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self._write("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    def bump(self, name: str, by: int = 1) -> None:
        self._write(
            "INSERT INTO counters VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (name, by)
        )

    def counter(self, name: str) -> int:
        row = self.db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0

    # --- candidates ------------------------------------------------------------------

    def add_candidate(self, source: str, fp, parent: int | None, mutation: str, epoch: int, status: str,
                      duplicate_of: int | None = None, reason: str | None = None, fitness: float | None = None) -> int:
        cur = self._write(
            "INSERT INTO candidates (source, structural, symbolic, numeric, parent, mutation, epoch, status, duplicate_of,"
            " reason, fitness, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (source, fp.structural, fp.symbolic, fp.numeric, parent, mutation, epoch, status, duplicate_of, reason,
             fitness, time.time()),
        )
        return cur.lastrowid

    def candidate(self, cid: int) -> Candidate:
        row = self.db.execute(
            "SELECT id, source, parent, mutation, epoch, status, fitness, duplicate_of, reason FROM candidates WHERE id = ?",
            (cid,),
        ).fetchone()
        return Candidate(*row)

    def fingerprints(self):
        """(id, source, structural, symbolic, numeric) of every candidate, oldest first."""
        return self.db.execute("SELECT id, source, structural, symbolic, numeric FROM candidates ORDER BY id").fetchall()

    def trained_warm_starts(self) -> list[int]:
        rows = self.db.execute("SELECT id FROM candidates WHERE mutation = 'warm_start' AND status = 'evaluated' ORDER BY id")
        return [cid for (cid,) in rows]

    def status_counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, COUNT(*) FROM candidates GROUP BY status").fetchall())

    # --- evaluations -----------------------------------------------------------------

    def add_pending(self, cid: int, fidelity: int, phase: str) -> None:
        self._write(
            "INSERT OR REPLACE INTO evaluations (candidate, fidelity, phase, status, submitted) VALUES (?, ?, ?, 'pending', ?)",
            (cid, fidelity, phase, time.time()),
        )

    def pending(self) -> list[tuple[int, int, str]]:
        return self.db.execute(
            "SELECT candidate, fidelity, phase FROM evaluations WHERE status = 'pending' ORDER BY submitted"
        ).fetchall()

    def finish(self, cid: int, fidelity: int, phase: str, outcome: dict, elapsed_s: float) -> None:
        """Record a finished job (and the candidate's fitness at fidelity 0) in one transaction."""
        now = time.time()
        with self.db:
            self.db.execute(
                "UPDATE evaluations SET status = ?, score = ?, error = ?, worker = ?, seconds = ?, finished = ?"
                " WHERE candidate = ? AND fidelity = ? AND phase = ?",
                (outcome["status"], outcome.get("score"), outcome.get("error"), outcome.get("worker"),
                 outcome.get("seconds"), now, cid, fidelity, phase),
            )
            for task, row in outcome.get("tasks", {}).items():
                self.db.execute(
                    "INSERT OR REPLACE INTO task_scores VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (cid, fidelity, phase, task, row["ratio"], row["best"], row["best_lr"], json.dumps(row)),
                )
            if phase == "search" and fidelity == 0:
                status = "evaluated" if outcome["status"] == "ok" else "failed"
                self.db.execute(
                    "UPDATE candidates SET status = ?, fitness = ?, finished = ? WHERE id = ?",
                    (status, outcome.get("score"), now, cid),
                )
            self.db.execute(
                "INSERT INTO meta VALUES ('elapsed_s', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (repr(elapsed_s),),
            )

    def scores(self, fidelity: int, phase: str = "search") -> list[tuple[int, float]]:
        """(candidate, score) of every successful evaluation at ``fidelity`` in ``phase``."""
        return self.db.execute(
            "SELECT candidate, score FROM evaluations WHERE fidelity = ? AND phase = ? AND status = 'ok'",
            (fidelity, phase),
        ).fetchall()

    def has_evaluation(self, cid: int, fidelity: int, phase: str) -> bool:
        return self.db.execute(
            "SELECT 1 FROM evaluations WHERE candidate = ? AND fidelity = ? AND phase = ?", (cid, fidelity, phase)
        ).fetchone() is not None

    def task_results(self, cid: int, fidelity: int, phase: str) -> dict[str, dict]:
        rows = self.db.execute(
            "SELECT task, result FROM task_scores WHERE candidate = ? AND fidelity = ? AND phase = ?", (cid, fidelity, phase)
        ).fetchall()
        return {task: json.loads(result) for task, result in rows}

    # --- baselines and population --------------------------------------------------------

    def baseline(self, task: str, fidelity: int, key: str) -> dict | None:
        row = self.db.execute(
            "SELECT result FROM baselines WHERE task = ? AND fidelity = ? AND key = ?", (task, fidelity, key)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def set_baseline(self, task: str, fidelity: int, key: str, result: dict) -> None:
        self._write("INSERT OR REPLACE INTO baselines VALUES (?, ?, ?, ?)", (task, fidelity, key, json.dumps(result)))

    def push_population(self, cid: int, epoch: int) -> None:
        self._write("INSERT INTO population (candidate, epoch) VALUES (?, ?)", (cid, epoch))

    def population(self, epoch: int, size: int) -> list[tuple[int, float]]:
        """The newest ``size`` members of ``epoch``'s population, oldest first, with their fitness."""
        rows = self.db.execute(
            "SELECT p.candidate, c.fitness FROM population p JOIN candidates c ON c.id = p.candidate"
            " WHERE p.epoch = ? ORDER BY p.seq DESC LIMIT ?",
            (epoch, size),
        ).fetchall()
        return rows[::-1]

    def fitness_history(self) -> list[tuple[int, float]]:
        """(id, fitness) of every trained candidate in the order they finished."""
        return self.db.execute(
            "SELECT id, fitness FROM candidates WHERE status = 'evaluated' ORDER BY finished"
        ).fetchall()
