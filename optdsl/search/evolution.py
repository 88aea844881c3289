"""Regularized evolution over update rules, with restarts, a fidelity funnel and held-out ranking.

The loop (asynchronous, like Lion's and AutoML-Zero's): keep every executor
slot busy; for a slot, pick a parent by tournament from the population, mutate
it until the checker accepts a child, and skip the child if any duplicate key
matches an earlier candidate (a cache hit: the child joins the population with
the original's fitness) or a cheap filter refuses it. Otherwise train it at
fidelity 0; its score is its fitness; it joins the population and the oldest
member dies. Candidates in the best ``promote_fraction`` of a fidelity are
trained again at the next one (the funnel). After the budget, the top rules
and the warm starts are scored on the held-out tasks, which the search never
saw. Every step is in the store, so a killed search resumes where it stopped.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field

from ..compiler import resolve
from . import scoring
from .dedupe import Deduper, Fingerprint, fingerprint, lower_text
from .evaluate import Job, run_job
from .mutation import mutate
from .probe import screen
from .program import warm_start_source
from .space import Space
from .store import Store

BASELINE_SPEC = "adamw"
MAX_CHILD_TRIES = 200
POLL_S = 0.25


@dataclass
class Progress:
    """What the progress display shows."""

    phase: str = "baselines"
    evaluated: int = 0
    failed: int = 0
    cache_hits: int = 0
    filtered: int = 0
    rejected: int = 0
    in_flight: int = 0
    best_score: float | None = None
    best_id: int | None = None
    epoch: int = 0
    elapsed_s: float = 0.0
    budget_evaluations: int = 0
    budget_s: float = 0.0
    heldout_done: int = 0
    heldout_total: int = 0
    log: list[str] = field(default_factory=list)

    @property
    def time_left_s(self) -> float | None:
        return max(0.0, self.budget_s - self.elapsed_s) if self.budget_s > 0 else None

    @property
    def cache_hit_rate(self) -> float:
        made = self.evaluated + self.failed + self.cache_hits + self.filtered
        return self.cache_hits / made if made else 0.0


class Search:
    """One search, stored in ``store``, run on ``executor``."""

    def __init__(self, store: Store, space: Space, executor, on_progress=None):
        self.store, self.space, self.executor = store, space, executor
        self.on_progress = on_progress or (lambda progress: None)
        self.rng = random.Random(f"{space.seed}:{len(store.fingerprints())}")
        self.deduper = Deduper()
        self.baselines: dict[tuple[str, int], dict] = {}
        self.jobs: dict[tuple[int, int, str], Job] = {}
        self.promotions: list[tuple[int, int]] = []
        self.progress = Progress(budget_evaluations=space.budget.evaluations, budget_s=space.budget.minutes * 60)
        self._clock_start = time.monotonic() - float(store.get_meta("elapsed_s", "0"))
        self.epoch = int(store.get_meta("epoch", "0"))
        self._since_improvement = int(store.get_meta("since_improvement", "0"))

    # --- the phases ---------------------------------------------------------------------

    def run(self) -> Progress:
        """Search until the budget is spent, then rank the best on the held-out tasks."""
        self._restore()
        self._ensure_baselines(self.space.scoring.search_tasks, range(self.space.scoring.fidelities))
        self._resubmit_pending("search")
        if not self.store.fingerprints():
            self._add_warm_starts()
        self.progress.phase = "search"
        while not self._budget_spent():
            self._fill_slots()
            if not self.executor.in_flight():
                self.progress.log.append("stopped early: no parent gives a new candidate")
                break
            self._collect()
        self.progress.phase = "draining"
        while self._in_flight("search"):
            self._collect()
        self._rank_heldout()
        self.progress.phase = "done"
        self._report()
        return self.progress

    def _restore(self) -> None:
        """Rebuild the in-memory state (dedupe keys, counters, best) from the store."""
        for cid, source, structural, symbolic, numeric in self.store.fingerprints():
            self.deduper.add(Fingerprint(source, structural, symbolic, numeric), cid)
        counts = self.store.status_counts()
        p = self.progress
        p.evaluated, p.failed = counts.get("evaluated", 0), counts.get("failed", 0)
        p.cache_hits, p.filtered = counts.get("duplicate", 0), counts.get("filtered", 0)
        p.rejected, p.epoch = self.store.counter("rejected"), self.epoch
        history = self.store.fitness_history()
        if history:
            p.best_id, p.best_score = min(history, key=lambda row: row[1])
        for fidelity in range(self.space.scoring.fidelities - 1):
            for cid in self._promoted(fidelity):
                if not self.store.has_evaluation(cid, fidelity + 1, "search"):
                    self.promotions.append((cid, fidelity + 1))

    # --- baselines ----------------------------------------------------------------------

    def _baseline_key(self) -> str:
        s = self.space.scoring
        return f"{BASELINE_SPEC}:{s.task_seed}:{','.join(map(str, s.lr_grid()))}"

    def _ensure_baselines(self, tasks, fidelities) -> None:
        """AdamW tuned on the lr grid, once per task and fidelity (stored, so computed once ever)."""
        key = self._baseline_key()
        source = resolve(BASELINE_SPEC).text
        for fidelity in fidelities:
            missing = []
            for task in tasks:
                stored = self.store.baseline(task, fidelity, key)
                if stored is None:
                    missing.append(task)
                else:
                    self.baselines[(task, fidelity)] = stored
            for task in missing:
                job = self._job(-1, source, (task,), fidelity, "baseline")
                self.executor.submit(("baseline", task, fidelity), run_job, (job,), self._timeout(fidelity) * 2)
        while any((t, f) not in self.baselines for t in tasks for f in fidelities):
            self._collect()

    def _baseline_done(self, task: str, fidelity: int, outcome) -> None:
        if not outcome.ok:
            raise RuntimeError(f"the AdamW baseline failed on {task} (fidelity {fidelity}): {outcome.error}")
        result = outcome.value["results"][task]
        self.store.set_baseline(task, fidelity, self._baseline_key(), result)
        self.baselines[(task, fidelity)] = result

    # --- making candidates --------------------------------------------------------------

    def _add_warm_starts(self) -> None:
        """Record the warm starts; train each one that is not a duplicate of an earlier one."""
        for entry in self.space.warm_starts:
            text = warm_start_source(entry)
            fp = fingerprint(text)
            found = self.deduper.find(fp)
            if found is not None:
                self.store.add_candidate(text, fp, None, "warm_start", self.epoch, "duplicate", found[1], found[0])
                self.progress.cache_hits += 1
                continue
            cid = self.store.add_candidate(text, fp, None, "warm_start", self.epoch, "pending")
            self.deduper.add(fp, cid)
            self._submit(cid, text, 0, "search")

    def _fill_slots(self) -> None:
        while self.executor.free_slots() > 0 and not self._budget_spent():
            if self.promotions:
                cid, fidelity = self.promotions.pop(0)
                self._submit(cid, self.store.candidate(cid).source, fidelity, "search")
                continue
            if self._budget_spent(count_pending=True):
                return
            if self._next_child() is None:
                return

    def _next_child(self) -> int | None:
        """Submit one new candidate for training; None when no parent can give one now."""
        population = self.store.population(self.epoch, self.space.evolution.population)
        if not population:
            return None
        for _ in range(MAX_CHILD_TRIES):
            parent = self._tournament(population)
            child = mutate(
                self.store.candidate(parent).source, self.rng, self.space.vocabulary,
                dict(self.space.evolution.mutation_weights), self.space.evolution.max_mutations,
            )
            if child is None:
                continue
            if child.rejected:
                self.store.bump("rejected", child.rejected)
                self.progress.rejected += child.rejected
            cid = self._consider(child.text, parent, "+".join(child.mutations))
            if cid is not None:
                return cid
            population = self.store.population(self.epoch, self.space.evolution.population)
        return None

    def _tournament(self, population: list[tuple[int, float]]) -> int:
        picks = [self.rng.choice(population) for _ in range(self.space.evolution.tournament)]
        return min(picks, key=lambda row: row[1])[0]

    def _consider(self, text: str, parent: int, mutation: str) -> int | None:
        """Dedupe and screen a checked child; submit it and return its id if it is worth training."""
        try:
            rule = lower_text(text)
            fp = fingerprint(text, rule)
        except Exception:  # noqa: BLE001 - one odd program (SymPy, the probe) must not stop the search
            self.store.bump("rejected")
            self.progress.rejected += 1
            return None
        found = self.deduper.find(fp)
        if found is not None:
            key, original = found
            known = self.store.candidate(original)
            fitness = known.fitness if known.status == "evaluated" else None
            cid = self.store.add_candidate(text, fp, parent, mutation, self.epoch, "duplicate", original, key, fitness)
            self.progress.cache_hits += 1
            if fitness is not None:
                self._join_population(cid)  # a cache hit: the original's fitness, no training
            return None
        try:
            reason = screen(rule)
        except Exception as exc:  # noqa: BLE001 - a rule the interpreter cannot run is not trained
            reason = f"probe_error: {type(exc).__name__}"
        if reason is not None:
            cid = self.store.add_candidate(text, fp, parent, mutation, self.epoch, "filtered", reason=reason)
            self.deduper.add(fp, cid)
            self.progress.filtered += 1
            return None
        cid = self.store.add_candidate(text, fp, parent, mutation, self.epoch, "pending")
        self.deduper.add(fp, cid)
        self._submit(cid, text, 0, "search")
        return cid

    # --- jobs ---------------------------------------------------------------------------

    def _job(self, cid: int, source: str, tasks, fidelity: int, phase: str) -> Job:
        s = self.space.scoring
        return Job(cid, source, tuple(tasks), fidelity, phase, s.lr_grid(), s.task_seed)

    def _timeout(self, fidelity: int) -> float:
        return self.space.execution.timeout_s * 3**fidelity

    def _submit(self, cid: int, source: str, fidelity: int, phase: str) -> None:
        tasks = self.space.scoring.search_tasks if phase == "search" else self.space.scoring.heldout_tasks
        job = self._job(cid, source, tasks, fidelity, phase)
        self.store.add_pending(cid, fidelity, phase)
        self.jobs[(cid, fidelity, phase)] = job
        self.executor.submit((cid, fidelity, phase), run_job, (job,), self._timeout(fidelity))

    def _resubmit_pending(self, phase: str) -> None:
        for cid, fidelity, job_phase in self.store.pending():
            if job_phase == phase:
                self._submit(cid, self.store.candidate(cid).source, fidelity, phase)

    def _in_flight(self, phase: str) -> bool:
        return any(key[2] == phase for key in self.jobs)

    def _collect(self) -> None:
        """Record every job that finished (waiting briefly for one), then report progress."""
        for key, outcome in self.executor.poll(POLL_S):
            if key[0] == "baseline":
                self._baseline_done(key[1], key[2], outcome)
                continue
            cid, fidelity, phase = key
            job = self.jobs.pop(key)
            baselines = {t: self.baselines[(t, fidelity)] for t in job.tasks}
            self.store.finish(cid, fidelity, phase, _outcome_row(outcome, baselines), self._elapsed())
            if phase == "search":
                self._after_search_result(cid, fidelity)
            else:
                self.progress.heldout_done += 1
        self._report()

    # --- results --------------------------------------------------------------------------

    def _after_search_result(self, cid: int, fidelity: int) -> None:
        candidate = self.store.candidate(cid)
        if fidelity == 0:
            if candidate.status != "evaluated":
                self.progress.failed += 1
                return
            self.progress.evaluated += 1
            self._join_population(cid)
            self._track_best(cid, candidate.fitness)
        if fidelity + 1 < self.space.scoring.fidelities and self._promotes(cid, fidelity):
            self.promotions.append((cid, fidelity + 1))

    def _promoted(self, fidelity: int) -> set[int]:
        """The best ``promote_fraction`` of everything scored at ``fidelity`` (at least one)."""
        scores = sorted(self.store.scores(fidelity), key=lambda row: row[1])
        cut = max(1, math.ceil(self.space.scoring.promote_fraction * len(scores)))
        return {c for c, _ in scores[:cut]}

    def _promotes(self, cid: int, fidelity: int) -> bool:
        return cid in self._promoted(fidelity)

    def _join_population(self, cid: int) -> None:
        self.store.push_population(cid, self.epoch)

    def _track_best(self, cid: int, fitness: float) -> None:
        p = self.progress
        if p.best_score is None or fitness < p.best_score:
            p.best_score, p.best_id = fitness, cid
            self._since_improvement = 0
            p.log.append(f"new best {fitness:.4f} (candidate {cid})")
        else:
            self._since_improvement += 1
        self.store.set_meta("since_improvement", str(self._since_improvement))
        limit = self.space.evolution.restart_after
        if limit and self._since_improvement >= limit:
            self._restart()

    def _restart(self) -> None:
        """A new epoch: the population starts again from the best rule and the warm starts."""
        self.epoch += 1
        self._since_improvement = 0
        self.store.set_meta("epoch", str(self.epoch))
        self.progress.epoch = self.epoch
        self.progress.log.append(f"restart: epoch {self.epoch}")
        seeds = [self.progress.best_id] + self.store.trained_warm_starts()
        for cid in dict.fromkeys(c for c in seeds if c is not None):
            self._join_population(cid)

    # --- held-out ranking ---------------------------------------------------------------------

    def _rank_heldout(self) -> None:
        """Score the best candidates and the warm starts on the held-out tasks (never seen before)."""
        s = self.space.scoring
        if not s.heldout_tasks or s.heldout_top <= 0:
            return
        self.progress.phase = "held-out"
        self._ensure_baselines(s.heldout_tasks, [s.heldout_fidelity])
        from .report import leaderboard

        chosen = [row.id for row in leaderboard(self.store, s.heldout_top, s.fidelities)]
        chosen += self.store.trained_warm_starts()
        todo = [c for c in dict.fromkeys(chosen) if not self.store.has_evaluation(c, s.heldout_fidelity, "heldout")]
        self._resubmit_pending("heldout")
        self.progress.heldout_total = len(todo) + self.progress.heldout_done
        for cid in todo:
            self._submit(cid, self.store.candidate(cid).source, s.heldout_fidelity, "heldout")
        while self.jobs:
            self._collect()

    # --- budget and progress --------------------------------------------------------------------

    def _elapsed(self) -> float:
        return time.monotonic() - self._clock_start

    def _budget_spent(self, count_pending: bool = False) -> bool:
        b = self.space.budget
        if b.minutes > 0 and self._elapsed() >= b.minutes * 60:
            return True
        if b.evaluations > 0:
            done = self.progress.evaluated + self.progress.failed
            pending = sum(1 for key in self.jobs if key[1] == 0 and key[2] == "search") if count_pending else 0
            return done + pending >= b.evaluations
        return False

    def _report(self) -> None:
        self.progress.elapsed_s = self._elapsed()
        self.progress.in_flight = self.executor.in_flight()
        self.on_progress(self.progress)


def _outcome_row(outcome, baselines: dict[str, dict]) -> dict:
    """What the store keeps of one finished job."""
    if not outcome.ok:
        return {"status": "failed", "error": outcome.error, "score": scoring.failure_score(baselines),
                "seconds": outcome.seconds}
    value = outcome.value
    total, ratios = scoring.score(value["results"], baselines)
    tasks = {task: {**result, "ratio": ratios[task]} for task, result in value["results"].items()}
    return {"status": "ok", "score": total, "tasks": tasks, "worker": value["worker"], "seconds": value["seconds"]}
