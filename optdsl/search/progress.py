"""The live progress display of ``optdsl search`` (rich)."""

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
