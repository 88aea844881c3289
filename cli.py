"""The ``optdsl`` command line: arguments, help, printing and exit codes only.

Exit codes: 0 success, 1 a spec has errors, 2 bad usage (unknown spec, missing
file, bad option), 3 an internal error (set OPTDSL_DEBUG=1 for the traceback).
Every command calls the Python API in ``optdsl``; none holds logic of its own.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

import optdsl
from optdsl import api
from optdsl.compiler import SpecNotFound, resolve_backend

app = typer.Typer(
    name="optdsl",
    help="Write optimizer update rules as math; compile them to fast PyTorch optimizers.",
    add_completion=False,
    pretty_exceptions_enable=False,
)

SPEC_HELP = "a built-in spec name (see `optdsl list`) or a path to a .opt file"
VARIANT_HELP = "apply a variant (see `optdsl variants`, or a path); repeat to compose, applied in order"


def _err(text: str) -> None:
    typer.echo(text, err=True)


def _print_warnings(warnings, source: str | None) -> None:
    for w in warnings:
        _err(w.format(source))


@app.command("compile")
def compile_command(
    spec: Optional[str] = typer.Argument(None, help=SPEC_HELP, show_default=False),
    output: Optional[Path] = typer.Option(
        None, "-o", "--output", help="file to write (default: ./<spec>.py; '-' for stdout); a folder with --all"
    ),
    all_specs: bool = typer.Option(False, "--all", help="compile every built-in spec into the folder given by -o"),
    backend: str = typer.Option(
        "torch", "--backend", help="code generator: torch, triton (fused kernels) or auto (triton where installed)"
    ),
    variant: list[str] = typer.Option([], "--variant", "-V", help=VARIANT_HELP),
) -> None:
    """Compile a spec into a self-contained torch.optim.Optimizer module."""
    try:
        backend = resolve_backend(backend)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--backend") from None
    if all_specs:
        if spec is not None or output is None:
            raise typer.BadParameter("--all takes no SPEC and needs -o FOLDER")
        output.mkdir(parents=True, exist_ok=True)
        for name in api.builtin_specs():
            compiled = api.compile_to_file(name, output / f"{name}.py", backend, variant)
            typer.echo(f"wrote {output / f'{name}.py'} ({compiled.class_name})")
        return
    if spec is None:
        raise typer.BadParameter("give a SPEC (or --all -o FOLDER)")
    to_stdout = output is not None and str(output) == "-"
    target = None if to_stdout else (output or Path(f"{Path(spec).stem.lower()}.py"))
    compiled = api.compile_to_file(spec, target, backend, variant)
    _print_warnings(compiled.warnings, None)
    if to_stdout:
        sys.stdout.write(compiled.code)
    else:
        typer.echo(f"wrote {target} ({compiled.class_name}, {backend} backend)")


@app.command("check")
def check_command(specs: list[str] = typer.Argument(..., help=SPEC_HELP)) -> None:
    """Check specs for errors (all of each file's errors, located); exit 1 if any."""
    failed = False
    for name, cls, warnings, error in api.check_specs(specs):
        if error is not None:
            failed = True
            _err(error.format())
        else:
            typer.echo(f"ok: {name} ({cls})")
        for w in warnings:
            _err(w.format(error.source if error else None))
    if failed:
        raise typer.Exit(1)


@app.command("explain")
def explain_command(
    spec: str = typer.Argument(..., help=SPEC_HELP),
    latex: bool = typer.Option(True, "--latex/--no-latex", help="also print the rule as LaTeX"),
    variant: list[str] = typer.Option([], "--variant", "-V", help=VARIANT_HELP),
) -> None:
    """Print the rule after simplification, its states, memory traffic and flops per parameter."""
    from optdsl.compiler import resolve
    from optdsl.explainer import explain_source

    typer.echo(explain_source(resolve(spec), latex=latex, variants=tuple(variant)))


@app.command("fmt")
def fmt_command(
    spec: str = typer.Argument(..., help=SPEC_HELP),
    write: bool = typer.Option(False, "--write", "-w", help="rewrite the file in place"),
    check: bool = typer.Option(False, "--check", help="exit 1 if the file is not in canonical form"),
) -> None:
    """Print a spec in canonical form."""
    from optdsl.compiler import resolve

    src = resolve(spec)
    text = api.format_spec(spec)
    if check:
        if text != src.text:
            _err(f"{src.file}: not in canonical form (run `optdsl fmt --write`)")
            raise typer.Exit(1)
        typer.echo(f"ok: {src.file}")
    elif write:
        Path(src.origin).write_text(text, encoding="utf-8")
        typer.echo(f"formatted {src.origin}")
    else:
        sys.stdout.write(text)


@app.command("list")
def list_command() -> None:
    """List the built-in specs, one line each."""
    rows = api.describe_builtins()
    width = max((len(r[0]) for r in rows), default=0)
    cls_width = max((len(r[1]) for r in rows), default=0)
    for name, cls, doc in rows:
        typer.echo(f"{name:<{width}}  {cls:<{cls_width}}  {doc}")


@app.command("table")
def table_command(
    specs: Optional[list[str]] = typer.Argument(None, help="built-in spec names (default: all)", show_default=False),
    output: Optional[Path] = typer.Option(
        None, "-o", "--output", help="write the docs page (header and table of every spec) to this file"
    ),
    tolerances: Optional[Path] = typer.Option(
        None, "--tolerances", help="measured tolerances (default: docs/spec_tolerances.json of the checkout)"
    ),
) -> None:
    """Print the table of built-in specs: paper, reference, measured error, states, bytes per step."""
    from optdsl import library

    if output is not None:
        if specs:
            raise typer.BadParameter("-o writes the page of every spec: give no SPECS")
        typer.echo(f"wrote {library.write_specs_document(output, tolerances)}")
        return
    rows = library.spec_table(specs or None, library.load_tolerances(tolerances))
    typer.echo(library.markdown_table(rows), nl=False)


@app.command("variants")
def variants_command() -> None:
    """List the built-in variants (modifiers applicable to any rule), one line each."""
    rows = api.describe_variants()
    width = max((len(r[0]) for r in rows), default=0)
    for name, hook, doc in rows:
        typer.echo(f"{name:<{width}}  {hook:<4}  {doc}")


@app.command("passes")
def passes_command() -> None:
    """Print the optimization pipeline, one pass a line."""
    from optdsl.passes import describe

    typer.echo(describe())


@app.command("demo")
def demo_command(
    spec: str = typer.Argument("adamw", help=SPEC_HELP),
    steps: int = typer.Option(200, min=1, help="training steps"),
    lr: float = typer.Option(1e-3, help="learning rate for both optimizers"),
    seed: int = typer.Option(0, help="seed for the data, the model and the batches"),
) -> None:
    """Train a small built-in problem with a compiled spec beside torch.optim.AdamW."""
    from optdsl.demo import run_demo

    run_demo(spec, steps=steps, lr=lr, seed=seed, log=typer.echo)


# --- optdsl search (issue 6) -----------------------------------------------------------------
# Evolutionary discovery of update rules. Everything happens in ``optdsl.search``;
# these commands only read options, open the display and print.

search_app = typer.Typer(
    help="Discover update rules by evolutionary search (regularized evolution, Lion-style).",
    pretty_exceptions_enable=False,
)
app.add_typer(search_app, name="search")


@search_app.callback(invoke_without_command=True)
def search_command(
    ctx: typer.Context,
    space: Optional[Path] = typer.Option(None, "--space", help="search space TOML (default: the shipped default.toml)"),
    db: Optional[Path] = typer.Option(None, "--db", help="database to create (default: ./search.db)"),
    resume: Optional[Path] = typer.Option(None, "--resume", help="continue the search stored in this database"),
    evaluations: Optional[int] = typer.Option(None, "--evals", help="budget: candidates trained at fidelity 0"),
    minutes: Optional[float] = typer.Option(None, "--minutes", help="budget: wall time of the search phase"),
    seed: Optional[int] = typer.Option(None, "--seed", help="evolution seed (default: the space file's)"),
    workers: Optional[int] = typer.Option(None, "--workers", help="worker processes or Ray slots (default: every core)"),
    ray: Optional[str] = typer.Option(None, "--ray", help="run on the Ray cluster at ADDRESS ('local': start one on 127.0.0.1)"),
    export: Optional[Path] = typer.Option(None, "--export", help="write the best rules as .opt specs into this folder"),
    plots: Optional[Path] = typer.Option(None, "--plots", help="write best_score.png and loss_curves.png into this folder"),
    top: int = typer.Option(10, "--top", help="rows to print and rules to export"),
) -> None:
    """Run a search (or continue one with --resume); `optdsl search show DB` reads one."""
    if ctx.invoked_subcommand is not None:
        return
    from optdsl.search import SearchError, SpaceError, load_space, run_search
    from optdsl.search.display import LiveProgress
    from optdsl.search.program import WarmStartError

    if resume is not None and (db is not None or space is not None):
        raise typer.BadParameter("--resume continues a stored search: give no --db or --space")
    path = resume or db or Path("search.db")
    try:
        with LiveProgress() as display:
            run_search(
                path, None if resume else load_space(space), resume=resume is not None, workers=workers,
                ray_address=ray, evaluations=evaluations, minutes=minutes, seed=seed, on_progress=display.update,
            )
    except (SearchError, SpaceError, WarmStartError) as exc:
        _err(f"optdsl search: {exc}")
        raise typer.Exit(2)
    except KeyboardInterrupt:
        _err(f"optdsl search: interrupted; everything finished is in {path}: continue with --resume {path}")
        raise typer.Exit(130)
    _search_report(path, top, export, plots)


@search_app.command("show")
def search_show_command(
    db: Path = typer.Argument(..., help="a search database"),
    top: int = typer.Option(10, "--top", help="rows to print and rules to export"),
    sources: bool = typer.Option(False, "--sources", help="print each rule's statements"),
    export: Optional[Path] = typer.Option(None, "--export", help="write the best rules as .opt specs into this folder"),
    plots: Optional[Path] = typer.Option(None, "--plots", help="write best_score.png and loss_curves.png into this folder"),
) -> None:
    """Print a search's summary and leaderboard (works while it runs)."""
    if not db.is_file():
        raise typer.BadParameter(f"no search database at {db}")
    _search_report(db, top, export, plots, sources)


def _search_report(db: Path, top: int, export: Optional[Path], plots: Optional[Path], sources: bool = False) -> None:
    from rich.console import Console

    from optdsl.search import report
    from optdsl.search.display import show
    from optdsl.search.store import Store

    store = Store(db)
    try:
        Console().print(show(store, top, sources))
        if export is not None:
            for path in report.export(store, export, top):
                typer.echo(f"wrote {path}")
        if plots is not None:
            for path in report.plot(store, plots):
                typer.echo(f"wrote {path}")
    finally:
        store.close()

# --- end of optdsl search ----------------------------------------------------------------------


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context, version: bool = typer.Option(False, "--version", help="print the version and exit", is_eager=True)) -> None:
    if version:
        typer.echo(f"optdsl {optdsl.__version__}")
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(2)


def main() -> None:
    """Run the app, mapping errors to messages and exit codes (never a traceback)."""
    try:
        app()  # standalone: usage errors print their message and exit 2
    except optdsl.SpecError as exc:
        _err(exc.format())
        sys.exit(1)
    except SpecNotFound as exc:
        _err(f"optdsl: {exc.args[0]}")
        sys.exit(2)
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        if os.environ.get("OPTDSL_DEBUG"):
            raise
        _err(f"optdsl: internal error: {type(exc).__name__}: {exc} (set OPTDSL_DEBUG=1 for the traceback)")
        sys.exit(3)


if __name__ == "__main__":
    main()
