"""Generated optimizers under torch.compile: error against eager, compiles and graph breaks.

For every built-in spec (or those named), and beside torch.optim's counterparts, run
the optimizer eagerly and compiled on twin models (tests/compile_harness.py) in two
modes: ``torch.compile(opt.step)`` and a compiled whole training step (forward,
backward, step). Prints one row per optimizer and mode: the largest relative
difference from eager over the steps, the frames dynamo compiled (all, and after
the first two steps: recompiles), graph breaks and unique graphs.

    python bench/bench_compile.py                 # every spec, 20 steps, both modes
    python bench/bench_compile.py adamw lion --variant cautious --steps 20
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import optdsl  # noqa: E402
from compile_harness import compare  # noqa: E402

TORCH = {
    "torch.optim.AdamW": lambda ps: torch.optim.AdamW(ps),
    "torch.optim.Adam": lambda ps: torch.optim.Adam(ps),
    "torch.optim.SGD": lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9),
    "torch.optim.Adafactor": lambda ps: torch.optim.Adafactor(ps),
}


def rows(specs, variants, steps, modes, with_torch):
    makers = [(f"{name}{''.join('+' + v for v in variants)}", _maker(name, variants)) for name in specs]
    if with_torch:
        makers += list(TORCH.items())
    for label, make in makers:
        for mode in modes:
            start = time.perf_counter()
            try:
                run = compare(make, steps=steps, whole_step=(mode == "train step"))
            except Exception as exc:  # a row says what failed; the table goes on
                yield label, mode, f"FAILED {type(exc).__name__}: {str(exc)[:120]}"
                continue
            yield label, mode, (f"{run.max_rel_error:9.1e} {run.frames:7d} {run.frames_after_warmup:12d} "
                                f"{run.graph_breaks:7d} {run.graphs:7d} {time.perf_counter() - start:8.1f}")


def _maker(name, variants):
    cls = optdsl.load(name, variants=variants)
    return lambda ps: cls(ps)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="*", help="built-in spec names (default: all)")
    parser.add_argument("--variant", action="append", default=[], help="apply a variant (repeatable)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--mode", choices=["step", "train step", "both"], default="both")
    parser.add_argument("--no-torch", action="store_true", help="leave out torch.optim's counterparts")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    specs = args.specs or optdsl.builtin_specs()
    modes = ["step", "train step"] if args.mode == "both" else [args.mode]
    print(f"torch {torch.__version__}, {args.steps} steps, inductor on CPU")
    print(f"{'optimizer':32s} {'mode':10s} {'rel.error':>9s} {'frames':>7s} {'after warmup':>12s} "
          f"{'breaks':>7s} {'graphs':>7s} {'seconds':>8s}")
    for label, mode, text in rows(specs, args.variant, args.steps, modes, not args.no_torch):
        print(f"{label:32s} {mode:10s} {text}", flush=True)


if __name__ == "__main__":
    main()
