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
from optdsl.compiler import BACKENDS, SpecNotFound

app = typer.Typer(
    name="optdsl",
    help="Write optimizer update rules as math; compile them to fast PyTorch optimizers.",
    add_completion=False,
    pretty_exceptions_enable=False,
)

SPEC_HELP = "a built-in spec name (see `optdsl list`) or a path to a .opt file"


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
    backend: str = typer.Option("torch", "--backend", help="code generator: torch"),
) -> None:
    """Compile a spec into a self-contained torch.optim.Optimizer module."""
    if backend not in BACKENDS:
        raise typer.BadParameter(f"unknown backend {backend!r} (available: {', '.join(BACKENDS)})", param_hint="'--backend'")
    if all_specs:
        if spec is not None or output is None:
            raise typer.BadParameter("--all takes no SPEC and needs -o FOLDER")
        output.mkdir(parents=True, exist_ok=True)
        for name in api.builtin_specs():
            compiled = api.compile_to_file(name, output / f"{name}.py", backend)
            typer.echo(f"wrote {output / f'{name}.py'} ({compiled.class_name})")
        return
    if spec is None:
        raise typer.BadParameter("give a SPEC (or --all -o FOLDER)")
    to_stdout = output is not None and str(output) == "-"
    target = None if to_stdout else (output or Path(f"{Path(spec).stem.lower()}.py"))
    compiled = api.compile_to_file(spec, target, backend)
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
) -> None:
    """Print the rule after simplification, its states, memory traffic and flops per parameter."""
    from optdsl.compiler import resolve
    from optdsl.explainer import explain_source

    typer.echo(explain_source(resolve(spec), latex=latex))


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
