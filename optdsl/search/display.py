"""What ``optdsl search`` prints: the live progress panel and the leaderboards (rich)."""

from __future__ import annotations

from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .evolution import Progress


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def render(p: Progress) -> Group:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    budget = f" / {p.budget_evaluations}" if p.budget_evaluations > 0 else ""
    table.add_row("phase", p.phase + (f" (epoch {p.epoch})" if p.epoch else ""))
    table.add_row("trained", f"{p.evaluated}{budget}  (failed {p.failed}, running {p.in_flight})")
    table.add_row("cache hits", f"{p.cache_hits}  ({100 * p.cache_hit_rate:.1f}% of children)")
    table.add_row("filtered", f"{p.filtered}  (checker rejected {p.rejected})")
    best = f"{p.best_score:.4f}  (candidate {p.best_id})" if p.best_score is not None else "-"
    table.add_row("best score", best + "  [1.0 = tuned AdamW, lower is better]")
    table.add_row("time", f"{_minutes(p.elapsed_s)} elapsed, {_minutes(p.time_left_s)} left")
    if p.heldout_total:
        table.add_row("held-out", f"{p.heldout_done} / {p.heldout_total} ranked")
    log = Text("\n".join(p.log[-4:]), style="dim")
    return Group(table, log)


class LiveProgress:
    """A context manager whose ``update(progress)`` redraws the panel (at most 4 times a second)."""

    def __init__(self, console=None):
        self.live = Live(Text("starting..."), console=console, refresh_per_second=4, transient=False)

    def __enter__(self) -> LiveProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.live.__exit__(*exc)

    def update(self, progress: Progress) -> None:
        self.live.update(render(progress))


# --- leaderboards (``optdsl search show``) -------------------------------------------------


def _score(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def leaderboard_table(rows, title: str, sources: bool = False) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("#", "id", "fidelity", "score", "fitness (f0)", "held-out", "from"):
        table.add_column(column, justify="right" if column not in ("from",) else "left")
    if sources:
        table.add_column("rule", justify="left")
    for rank, row in enumerate(rows, 1):
        cells = [str(rank), str(row.id), str(row.fidelity), _score(row.score), _score(row.fitness), _score(row.heldout),
                 f"{row.mutation}" + (f" of {row.parent}" if row.parent else "")]
        if sources:
            cells.append(_rule_text(row.source))
        table.add_row(*cells)
    return table


def _rule_text(source: str) -> str:
    """The statements of a candidate, one per line (declarations left out)."""
    lines = [line for line in source.splitlines() if line and not line.startswith(("optimizer", "hyper", "state"))]
    return "\n".join(lines)


def summary_text(s: dict) -> str:
    lines = [
        f"candidates: {s['candidates']} made, {s['evaluated']} trained, {s['failed']} failed, "
        f"{s['cache_hits']} cache hits ({100 * s['cache_hit_rate']:.1f}%), {s['filtered']} filtered, "
        f"{s['rejected_by_checker']} rejected by the checker",
        f"best search score: {_score(s['best_search_score'])} (fidelity {s['best_search_fidelity']}); "
        f"best held-out score: {_score(s['best_heldout_score'])}"
        + (f" (candidate {s['best_heldout_id']})" if s["best_heldout_id"] else ""),
        f"time: {_minutes(s['elapsed_s'])}  (scores: loss ratio to AdamW tuned on the same lr grid; 1 = AdamW, lower is better)",
    ]
    return "\n".join(lines)


def show(store, top: int = 10, sources: bool = False) -> Group:
    """Summary, the held-out ranking (if any) and the search's leaderboard."""
    from .report import final_ranking, leaderboard, summary

    parts = [Text(summary_text(summary(store)))]
    final = final_ranking(store)
    if final:
        parts.append(leaderboard_table(final[:top], "final ranking (held-out tasks)", sources))
    parts.append(leaderboard_table(leaderboard(store, top), "search leaderboard (highest fidelity first)", sources))
    return Group(*parts)
