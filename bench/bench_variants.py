"""CPU benchmark of variants: generated Cautious-AdamW, Cautious-Lion and Grams against eager code.

    python bench/bench_variants.py            # full run (a few minutes on 2 cores)
    python bench/bench_variants.py --quick    # smoke run
    python bench/bench_variants.py --json results.json

The parameter set, gradients and timing method are those of the torch-backend
benchmark (``bench_torch_backend.py``): ~23M fp32 parameters in 75 tensors, the
median step time over interleaved steps. The eager references are the packages
researchers use today, or a hand-written eager transcription where none exists:

- Cautious-AdamW: an eager transcription of the Cautious rule on torch's AdamW
  (``tests/eager_references.py``; C-Optim's own C-AdamW is not on PyPI);
- Cautious-Lion: pytorch-optimizer 4.1.0 ``Lion(cautious=True)``;
- Grams: the official ``grams-pytorch`` 0.0.2 (against ``adamw --variant grams``,
  eps placement "hf").

Each generated optimizer's final parameters are compared with its reference's,
so a fast but wrong optimizer shows up in the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for path in (REPO, REPO / "tests", REPO / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import torch  # noqa: E402

import optdsl  # noqa: E402
from bench_torch_backend import (  # noqa: E402
    Contender,
    machine_info,
    make_grads,
    make_params,
    max_relative_difference,
    ratio_lines,
    speed_ratios,
    step_table,
    time_steps,
    transformer_shapes,
)

CAUTIOUS_ADAMW = {"lr": 1e-3, "weight_decay": 0.01}
CAUTIOUS_LION = {"lr": 1e-4, "weight_decay": 0.1}
GRAMS = {"lr": 1e-3, "eps": 1e-6, "weight_decay": 0.0}


def contenders() -> list[Contender]:
    """Each generated variant (per-tensor path: these rules reduce whole tensors) beside its eager reference."""
    import grams
    import pytorch_optimizer
    from eager_references import EagerCautiousAdamW

    CautiousAdamW = optdsl.load("adamw", variants=["cautious"])
    CautiousLion = optdsl.load("lion", variants=["cautious"])
    GramsAdamW = optdsl.load("adamw", variants=["grams"])
    return [
        Contender("eager Cautious-AdamW", lambda ps: EagerCautiousAdamW(ps, **CAUTIOUS_ADAMW)),
        Contender("optdsl CautiousAdamW", lambda ps: CautiousAdamW(ps, **CAUTIOUS_ADAMW), "eager Cautious-AdamW"),
        Contender("pytorch-optimizer Lion cautious", lambda ps: pytorch_optimizer.Lion(ps, cautious=True, **CAUTIOUS_LION)),
        Contender("optdsl CautiousLion", lambda ps: CautiousLion(ps, **CAUTIOUS_LION), "pytorch-optimizer Lion cautious"),
        Contender("grams-pytorch Grams", lambda ps: grams.Grams(ps, **GRAMS)),
        Contender("optdsl GramsAdamW", lambda ps: GramsAdamW(ps, eps_style="hf", **GRAMS), "grams-pytorch Grams"),
        Contender("torch AdamW foreach", lambda ps: torch.optim.AdamW(ps, lr=1e-3, foreach=True)),
        Contender("torch AdamW fused", lambda ps: torch.optim.AdamW(ps, lr=1e-3, fused=True)),
    ]


RATIOS = [
    ("optdsl CautiousAdamW", "eager Cautious-AdamW"),
    ("optdsl CautiousLion", "pytorch-optimizer Lion cautious"),
    ("optdsl GramsAdamW", "grams-pytorch Grams"),
    ("optdsl CautiousAdamW", "torch AdamW foreach"),
    ("optdsl CautiousAdamW", "torch AdamW fused"),
]


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per optimizer")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a 2-layer model and 3 steps: a smoke run")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    layers, steps = (2, 3) if args.quick else (6, args.steps)
    shapes = [s for _, s in transformer_shapes(layers=layers)]
    info = machine_info()
    print(f"{sum(torch.Size(s).numel() for s in shapes):,} fp32 parameters in {len(shapes)} tensors; "
          f"{info.get('cpu')}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    entries = contenders()
    grads = make_grads(shapes, args.warmup + steps, seed=1)
    timings = time_steps(entries, make_params(shapes, seed=0), grads, args.warmup, clone_grads=True)
    ratios = speed_ratios(timings, RATIOS)
    print(step_table(timings, entries))
    print(ratio_lines(ratios))
    differences = {
        c.name: max_relative_difference(timings[c.name].params, timings[c.reference].params)
        for c in entries
        if c.reference
    }
    for name, diff in differences.items():
        print(f"{name}: max relative difference from its reference {diff:.2g}")
    result = {
        "machine": info,
        "steps": steps,
        "median_ms": {name: t.median_ms for name, t in timings.items()},
        "ratios": [{"contender": r.contender, "baseline": r.baseline, "speed": r.speed} for r in ratios],
        "max_relative_difference": differences,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
