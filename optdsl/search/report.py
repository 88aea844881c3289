"""Reading a search database: leaderboards, exported specs, plots, benchmark figures."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..compiler import optimize
from ..frontend.printer import print_spec
from ..ir.to_ast import raise_rule
from .dedupe import lower_text
from .space import space_from_json
from .store import Store


@dataclass(frozen=True)
class Row:
    id: int
    source: str
    mutation: str
    parent: int | None
    fitness: float  # fidelity-0 score
    fidelity: int  # the highest fidelity it was scored at
    score: float  # its score there
    heldout: float | None  # held-out score, when it was ranked
    best_lrs: dict[str, float]  # per task, at ``fidelity``


def leaderboard(store: Store, top: int, fidelities: int | None = None) -> list[Row]:
    """The search's own ranking: the highest fidelity reached first, then the score there."""
    rows = store.db.execute(
        "SELECT c.id, c.source, c.mutation, c.parent, c.fitness, e.fidelity, e.score FROM candidates c"
        " JOIN evaluations e ON e.candidate = c.id"
        " WHERE e.phase = 'search' AND e.status = 'ok' AND c.status = 'evaluated'"
    ).fetchall()
    best: dict[int, tuple] = {}
    for row in rows:
        if row[0] not in best or row[5] > best[row[0]][5]:
            best[row[0]] = row
    heldout = _heldout_scores(store)
    ranked = sorted(best.values(), key=lambda r: (-r[5], r[6], r[0]))[:top]
    return [Row(*r[:7], heldout.get(r[0]), _best_lrs(store, r[0], r[5], "search")) for r in ranked]


def final_ranking(store: Store) -> list[Row]:
    """Candidates scored on the held-out tasks, best first (the search never read these scores)."""
    heldout = _heldout_scores(store)
    everyone = {row.id: row for row in leaderboard(store, 10**9)}
    rows = [everyone[cid] for cid in heldout if cid in everyone]
    return sorted(rows, key=lambda r: (r.heldout, r.id))


def _heldout_scores(store: Store) -> dict[int, float]:
    return dict(store.db.execute("SELECT candidate, score FROM evaluations WHERE phase = 'heldout' AND status = 'ok'"))


def _best_lrs(store: Store, cid: int, fidelity: int, phase: str) -> dict[str, float]:
    return dict(store.db.execute(
        "SELECT task, best_lr FROM task_scores WHERE candidate = ? AND fidelity = ? AND phase = ?", (cid, fidelity, phase)
    ))


def summary(store: Store) -> dict:
    """Counts, cache-hit rate, best scores and the time spent."""
    counts = store.status_counts()
    made = sum(counts.values()) - counts.get("pending", 0)
    best = leaderboard(store, 1)
    final = final_ranking(store)
    return {
        "candidates": sum(counts.values()),
        "evaluated": counts.get("evaluated", 0),
        "failed": counts.get("failed", 0),
        "cache_hits": counts.get("duplicate", 0),
        "filtered": counts.get("filtered", 0),
        "rejected_by_checker": store.counter("rejected"),
        "cache_hit_rate": counts.get("duplicate", 0) / made if made else 0.0,
        "best_search_score": best[0].score if best else None,
        "best_search_fidelity": best[0].fidelity if best else None,
        "best_heldout_score": final[0].heldout if final else None,
        "best_heldout_id": final[0].id if final else None,
        "elapsed_s": float(store.get_meta("elapsed_s", "0")),
    }


# --- export ----------------------------------------------------------------------------------


def simplified_spec(source: str, name: str, doc: str, lr: float | None = None) -> str:
    """Candidate text after the compiler passes, raised back to a spec named ``name``."""
    rule = optimize(lower_text(source))
    if lr is not None:
        hypers = tuple(h if h.name != "lr" else _with_default(h, lr) for h in rule.hypers)
        rule = rule.with_(hypers=hypers)
    return print_spec(raise_rule(rule, name=name, doc=doc))


def _with_default(hyper, value: float):
    from dataclasses import replace

    return replace(hyper, default=float(f"{value:.3g}"))


def export(store: Store, folder: str | Path, top: int = 10) -> list[Path]:
    """Write the best rules as simplified ``.opt`` specs (held-out ranking first, then the search's)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = final_ranking(store) or leaderboard(store, top)
    written = []
    for rank, row in enumerate(rows[:top], 1):
        heldout = f", held-out score {row.heldout:.4f}" if row.heldout is not None else ""
        doc = (
            f"Found by optdsl search: candidate {row.id} of {store.path.name}, rank {rank}.\n\n"
            f"  Score {row.score:.4f} at fidelity {row.fidelity}{heldout} (loss ratio to AdamW tuned\n"
            f"  on the same lr grid: 1 = AdamW, lower is better). The lr default is the\n"
            f"  geometric mean of the best lr per task."
        )
        lr = _geometric_mean(list(row.best_lrs.values()))
        path = folder / f"found_{rank:02d}.opt"
        path.write_text(simplified_spec(row.source, f"Found{rank}", doc, lr), encoding="utf-8")
        written.append(path)
    return written


def _geometric_mean(values: list[float]) -> float | None:
    values = [v for v in values if v and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


# --- plots -------------------------------------------------------------------------------------


def plot(store: Store, folder: str | Path, top: int = 3) -> list[Path]:
    """best_score.png (best fitness over evaluations) and loss_curves.png (top rules vs AdamW)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [_plot_best(store, folder / "best_score.png", plt), _plot_curves(store, folder / "loss_curves.png", top, plt)]


def _plot_best(store: Store, path: Path, plt) -> Path:
    history = [f for _, f in store.fitness_history()]
    running = [min(history[: i + 1]) for i in range(len(history))]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(range(1, len(history) + 1), history, s=6, alpha=0.4, label="candidate")
    ax.plot(range(1, len(running) + 1), running, color="C1", label="best so far")
    ax.axhline(1.0, color="gray", linestyle="--", label="tuned AdamW")
    ax.set_yscale("log")
    ax.set_xlabel("candidates trained")
    ax.set_ylabel("score (loss ratio to AdamW, fidelity 0)")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_curves(store: Store, path: Path, top: int, plt) -> Path:
    space = space_from_json(store.get_meta("space"))
    rows = (final_ranking(store) or leaderboard(store, top))[:top]
    panels = [(t, 0, "search") for t in space.scoring.search_tasks]
    if final_ranking(store):
        panels += [(t, space.scoring.heldout_fidelity, "heldout") for t in space.scoring.heldout_tasks]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3), squeeze=False)
    for ax, (task, fidelity, phase) in zip(axes[0], panels):
        baselines = store.db.execute("SELECT result FROM baselines WHERE task = ? AND fidelity = ?", (task, fidelity))
        for (result,) in baselines.fetchall()[:1]:
            _curve(ax, json.loads(result)["curve"], "AdamW", color="gray", linestyle="--")
        for row in rows:
            result = store.task_results(row.id, fidelity, phase).get(task)
            if result:
                _curve(ax, result["curve"], f"#{row.id}")
        ax.set_title(f"{task} ({phase}, f{fidelity})", fontsize=9)
        ax.set_yscale("log")
        ax.set_xlabel("training progress")
    axes[0][0].set_ylabel("loss at the best lr")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _curve(ax, values: list[float], label: str, **style) -> None:
    xs = [i / max(1, len(values) - 1) for i in range(len(values))]
    ax.plot(xs, values, label=label, **style)


# --- benchmark figures ---------------------------------------------------------------------------


def benchmark_figures(store: Store, top: int = 10) -> dict:
    """What bench/search_benchmark.md records: counts, cache hits, held-out scores, sign-momentum rules."""
    from ..passes.sympy_simplify import is_sign_momentum

    def family(rows: list[Row]) -> list[int]:
        return [r.id for r in rows if any(f in r.source for f in ("sign(", "abs(", "sqrt(")) and is_sign_momentum(lower_text(r.source))]

    figures = summary(store)
    board, final = leaderboard(store, top), final_ranking(store)
    everyone = leaderboard(store, 10**9)
    in_family = family(everyone)
    best = next(((rank, r.id, round(r.score, 4)) for rank, r in enumerate(everyone, 1) if r.id in in_family), None)
    warm = set(store.trained_warm_starts())
    figures.update(
        sign_momentum_in_search_top=[i for i in in_family if i in {r.id for r in board}],
        sign_momentum_in_heldout_ranking=family(final),
        sign_momentum_trained=len(in_family),
        sign_momentum_best=best,  # (rank in the search leaderboard, candidate, score)
        warm_start_heldout=[r.heldout for r in final if r.id in warm],
        heldout_ranking=[(r.id, round(r.heldout, 4)) for r in final],
    )
    return figures
