"""CPU benchmark of optdsl's torch backend: step time of generated optimizers and compile time.

    python bench/bench_torch_backend.py            # full run (about two minutes on 2 cores)
    python bench/bench_torch_backend.py --quick    # smoke run: few steps, one compile repeat
    python bench/bench_torch_backend.py --json results.json

Step time: a small transformer's parameter set (fp32, CPU, fixed seed), fresh random
gradients for every step (generated before timing starts), the median over the timed
steps of ``time.perf_counter()`` around ``optimizer.step()``. All optimizers run
interleaved, one step each in rotating order, so a change in machine load hits them
alike. Every optimizer starts from the same parameters and sees the same gradients,
so the final parameters of a generated optimizer are compared with its reference.
Minor page faults per step are counted too: on CPU, a step that allocates large
temporaries (the foreach paths) can spend much of its time faulting in fresh pages.

Compile time: ``optdsl.compiler.compile_source`` per built-in spec, in this process
after a warm-up compile (imports excluded; SymPy's cache cleared before each run),
and cold in a fresh subprocess (imports included, timed inside it), with the
subprocess's total wall time beside it. Compiles are timed first, before the
steps have filled this process with tensors.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # this checkout's optdsl, also when run as a plain script

import torch  # noqa: E402

import optdsl  # noqa: E402

Shape = tuple[int, ...]
ADAMW_HYPERS = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)
LION_HYPERS = dict(lr=1e-4, betas=(0.9, 0.99), weight_decay=1e-2)
SPEED_TARGET = 0.9  # generated foreach AdamW vs torch foreach AdamW
COMPILE_TARGET_S = 1.0


# --- the parameter set --------------------------------------------------------------------


def transformer_shapes(layers: int = 6, d: int = 512, vocab: int = 8192, mlp: int = 4) -> list[tuple[str, Shape]]:
    """GPT-2-style parameter shapes: fused qkv, pre-LayerNorm blocks, tied embedding/head.

    Each block has 12 tensors (qkv and output projections, two MLP matrices, their
    biases, two LayerNorms); with the embedding and the final LayerNorm, 6 blocks of
    d=512 are 75 tensors and 23.1M parameters.
    """
    shapes: list[tuple[str, Shape]] = [("embed.weight", (vocab, d))]
    for i in range(layers):
        block = f"block{i}"
        shapes += [
            (f"{block}.ln1.weight", (d,)),
            (f"{block}.ln1.bias", (d,)),
            (f"{block}.attn.qkv.weight", (3 * d, d)),
            (f"{block}.attn.qkv.bias", (3 * d,)),
            (f"{block}.attn.out.weight", (d, d)),
            (f"{block}.attn.out.bias", (d,)),
            (f"{block}.ln2.weight", (d,)),
            (f"{block}.ln2.bias", (d,)),
            (f"{block}.mlp.up.weight", (mlp * d, d)),
            (f"{block}.mlp.up.bias", (mlp * d,)),
            (f"{block}.mlp.down.weight", (d, mlp * d)),
            (f"{block}.mlp.down.bias", (d,)),
        ]
    shapes += [("ln_f.weight", (d,)), ("ln_f.bias", (d,))]
    return shapes


def numel(shape: Shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def make_params(shapes: Sequence[Shape], seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen) * 0.02 for s in shapes]


def make_grads(shapes: Sequence[Shape], steps: int, seed: int) -> list[list[torch.Tensor]]:
    """One fresh set of gradients per step, all generated up front."""
    gen = torch.Generator().manual_seed(seed + 1)
    return [[torch.randn(s, generator=gen) * 1e-3 for s in shapes] for _ in range(steps)]


# --- the optimizers -----------------------------------------------------------------------


@dataclass(frozen=True)
class Contender:
    name: str
    make: Callable[[list[torch.Tensor]], torch.optim.Optimizer]
    reference: str | None = None  # the contender whose final parameters this one should match


def contenders() -> list[Contender]:
    """Generated AdamW and Lion (foreach and for-loop) beside the implementations they match."""
    import lion_pytorch

    AdamW = optdsl.load("adamw")
    Lion = optdsl.load("lion")
    torch_adamw = "torch AdamW foreach"
    lion_ref = "lion_pytorch Lion"
    return [
        Contender("torch AdamW for-loop", lambda ps: torch.optim.AdamW(ps, **ADAMW_HYPERS, foreach=False), torch_adamw),
        Contender(torch_adamw, lambda ps: torch.optim.AdamW(ps, **ADAMW_HYPERS, foreach=True)),
        Contender("torch AdamW fused", lambda ps: torch.optim.AdamW(ps, **ADAMW_HYPERS, fused=True), torch_adamw),
        Contender("optdsl AdamW foreach", lambda ps: AdamW(ps, **ADAMW_HYPERS, foreach=True), torch_adamw),
        Contender("optdsl AdamW for-loop", lambda ps: AdamW(ps, **ADAMW_HYPERS, foreach=False), torch_adamw),
        Contender(lion_ref, lambda ps: lion_pytorch.Lion(ps, **LION_HYPERS)),
        Contender("optdsl Lion foreach", lambda ps: Lion(ps, **LION_HYPERS, foreach=True), lion_ref),
        Contender("optdsl Lion for-loop", lambda ps: Lion(ps, **LION_HYPERS, foreach=False), lion_ref),
    ]


# (contender, baseline): "contender / baseline = Nx speed" means baseline time / contender time
RATIOS: list[tuple[str, str]] = [
    ("optdsl AdamW foreach", "torch AdamW foreach"),
    ("optdsl AdamW for-loop", "torch AdamW for-loop"),
    ("optdsl AdamW foreach", "torch AdamW fused"),
    ("optdsl Lion foreach", "lion_pytorch Lion"),
    ("optdsl Lion for-loop", "lion_pytorch Lion"),
    ("optdsl Lion foreach", "torch AdamW foreach"),
]


# --- step timing ----------------------------------------------------------------------------


def minor_page_faults() -> int | None:
    """Minor page faults of this process so far (None where the OS does not say)."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


@dataclass
class StepTiming:
    name: str
    times_s: list[float]
    params: list[torch.Tensor] = field(repr=False)
    page_faults: list[int] | None = None  # minor page faults during each timed step

    @property
    def median_page_faults(self) -> float | None:
        return statistics.median(self.page_faults) if self.page_faults else None

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_s) * 1e3

    @property
    def min_ms(self) -> float:
        return min(self.times_s) * 1e3


def time_steps(
    entries: Sequence[Contender],
    params0: Sequence[torch.Tensor],
    grads: Sequence[Sequence[torch.Tensor]],
    warmup: int,
    clone_grads: bool = False,
) -> dict[str, StepTiming]:
    """Step every contender once per gradient set, in rotating order; time the steps after ``warmup``.

    ``clone_grads`` gives each contender its own copy of the gradients (made before the
    timer starts), for references that overwrite ``p.grad`` (official Grams does)."""
    params = {c.name: [p.clone().requires_grad_(True) for p in params0] for c in entries}
    opts = {c.name: c.make(params[c.name]) for c in entries}
    times: dict[str, list[float]] = {c.name: [] for c in entries}
    faults: dict[str, list[int]] = {c.name: [] for c in entries}
    for step, step_grads in enumerate(grads):
        shift = step % len(entries)
        for c in [*entries[shift:], *entries[:shift]]:
            for p, g in zip(params[c.name], step_grads):
                p.grad = g.clone() if clone_grads else g
            faults_before = minor_page_faults()
            start = time.perf_counter()
            opts[c.name].step()
            elapsed = time.perf_counter() - start
            faults_after = minor_page_faults()
            if step >= warmup:
                times[c.name].append(elapsed)
                if faults_before is not None:
                    faults[c.name].append(faults_after - faults_before)
    return {
        c.name: StepTiming(c.name, times[c.name], [p.detach() for p in params[c.name]], faults[c.name] or None)
        for c in entries
    }


def max_relative_difference(ours: Sequence[torch.Tensor], ref: Sequence[torch.Tensor]) -> float:
    """max |ours - ref| / max |ref|, the worst over tensors."""
    worst = 0.0
    for a, b in zip(ours, ref):
        scale = max(b.double().abs().max().item(), 1e-12)
        worst = max(worst, (a.double() - b.double()).abs().max().item() / scale)
    return worst


def count_differing(ours: Sequence[torch.Tensor], ref: Sequence[torch.Tensor], rtol: float = 1e-6) -> int:
    """Elements where |ours - ref| exceeds ``rtol`` times their tensor's max |ref|."""
    count = 0
    for a, b in zip(ours, ref):
        scale = max(b.double().abs().max().item(), 1e-12)
        count += int(((a.double() - b.double()).abs() > rtol * scale).sum().item())
    return count


@dataclass(frozen=True)
class Ratio:
    contender: str
    baseline: str
    speed: float  # baseline median / contender median: above 1, the contender is faster


def speed_ratios(timings: dict[str, StepTiming], pairs: Sequence[tuple[str, str]] = RATIOS) -> list[Ratio]:
    return [Ratio(a, b, timings[b].median_ms / timings[a].median_ms) for a, b in pairs if a in timings and b in timings]


# --- compile timing -------------------------------------------------------------------------


@dataclass
class CompileTiming:
    spec: str
    warm_s: float | None  # median in-process compile, imports excluded
    cold_s: float | None  # fresh process, imports + compile, timed inside it
    process_s: float | None  # the fresh process's total wall time, interpreter start included
    error: str | None = None


_WARMUP_SOURCE = 'optimizer Warmup\nhyper lr = 0.1\nstate m = zeros\nm = 0.9 * m + g\np = p - lr * sqrt(m^2)\n'

_COLD_SCRIPT = """
import json, sys, time
sys.path.insert(0, {repo!r})
start = time.perf_counter()
from optdsl.compiler import compile_source, resolve
compile_source(resolve({spec!r}))
print(json.dumps({{"seconds": time.perf_counter() - start}}))
"""


def warm_up_compiler() -> None:
    """Import the compiler and its dependencies by compiling a spec that is not benchmarked."""
    from optdsl.compiler import compile_source, from_text

    compile_source(from_text(_WARMUP_SOURCE))


def time_compile_warm(spec: str, repeats: int) -> float:
    """Median seconds of ``compile_source`` for ``spec`` in this (warmed-up) process."""
    import sympy

    from optdsl.compiler import compile_source, resolve

    src = resolve(spec)
    samples = []
    for _ in range(repeats):
        sympy.core.cache.clear_cache()
        start = time.perf_counter()
        compile_source(src)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def time_compile_cold(spec: str) -> tuple[float, float]:
    """(seconds inside a fresh process for imports + compile, the process's total wall seconds)."""
    code = _COLD_SCRIPT.format(repo=str(REPO), spec=spec)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    total = time.perf_counter() - start
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"subprocess failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"], total


def time_compile_cold_median(spec: str, repeats: int) -> tuple[float, float]:
    """Medians of ``repeats`` fresh-process runs of :func:`time_compile_cold`."""
    runs = [time_compile_cold(spec) for _ in range(repeats)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def time_compiles(specs: Sequence[str], repeats: int, cold: bool = True) -> list[CompileTiming]:
    """Compile timings per spec; a failing compile is recorded with its error, not raised."""
    warm_up_compiler()
    rows = []
    for spec in specs:
        row = CompileTiming(spec, None, None, None)
        try:
            row.warm_s = time_compile_warm(spec, repeats)
            if cold:
                row.cold_s, row.process_s = time_compile_cold_median(spec, repeats)
        except Exception as exc:  # noqa: BLE001 - reported in the table
            row.error = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
        rows.append(row)
    return rows


# --- the report -----------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass(frozen=True)
class CpuSnapshot:
    """Busy CPU time of the whole machine and of this process (with its children), in seconds."""

    wall_s: float
    machine_busy_s: float
    own_s: float


def cpu_snapshot() -> CpuSnapshot | None:
    """None where /proc is not available (not Linux)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    hz = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    busy = user + nice + system + irq + softirq + steal
    own_ticks = sum(int(x) for x in own[11:15])  # utime, stime, cutime, cstime
    return CpuSnapshot(time.perf_counter(), busy / hz, own_ticks / hz)


def other_processes_cores(start: CpuSnapshot | None, end: CpuSnapshot | None) -> float | None:
    """Average number of cores that other processes kept busy between two snapshots."""
    if start is None or end is None or end.wall_s <= start.wall_s:
        return None
    others = (end.machine_busy_s - start.machine_busy_s) - (end.own_s - start.own_s)
    return max(others, 0.0) / (end.wall_s - start.wall_s)


def machine_info() -> dict:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def step_table(timings: dict[str, StepTiming], entries: Sequence[Contender]) -> str:
    lines = [
        f"{'optimizer':<24} {'median ms':>10} {'min ms':>9} {'page faults':>12}  max rel. diff vs reference",
        "-" * 100,
    ]
    for c in entries:
        t = timings[c.name]
        check = ""
        if c.reference is not None:
            ref = timings[c.reference].params
            diff = max_relative_difference(t.params, ref)
            check = f"{diff:.1e} vs {c.reference}"
            if diff > 1e-6:
                check += f" ({count_differing(t.params, ref)} elements > 1e-6)"
        faults = "-" if t.median_page_faults is None else f"{t.median_page_faults:.0f}"
        lines.append(f"{c.name:<24} {t.median_ms:>10.2f} {t.min_ms:>9.2f} {faults:>12}  {check}")
    return "\n".join(lines)


def ratio_lines(ratios: Sequence[Ratio]) -> str:
    lines = []
    for r in ratios:
        line = f"{r.contender} / {r.baseline} = {r.speed:.2f}x speed"
        if (r.contender, r.baseline) == RATIOS[0]:
            verdict = "meets" if r.speed >= SPEED_TARGET else "BELOW"
            line += f"  ({verdict} the {SPEED_TARGET}x target)"
        lines.append(line)
    return "\n".join(lines)


def compile_table(rows: Sequence[CompileTiming]) -> str:
    def ms(x: float | None) -> str:
        return "-" if x is None else f"{x * 1e3:.0f}"

    lines = [
        f"{'spec':<10} {'in-process ms':>14} {'cold ms':>9} {'process ms':>11}  note",
        "-" * 70,
    ]
    for r in rows:
        note = r.error or ""
        slowest = max((x for x in (r.warm_s, r.cold_s) if x is not None), default=None)
        if not note and slowest is not None and slowest >= COMPILE_TARGET_S:
            note = f"over the {COMPILE_TARGET_S:.0f} s target"
        lines.append(f"{r.spec:<10} {ms(r.warm_s):>14} {ms(r.cold_s):>9} {ms(r.process_s):>11}  {note}")
    return "\n".join(lines)


def _cores(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def results_json(info: dict, config: dict, entries, timings, ratios, compiles) -> dict:
    steps = {}
    for c in entries:
        t = timings[c.name]
        ref = timings[c.reference].params if c.reference else None
        diff = max_relative_difference(t.params, ref) if ref is not None else None
        steps[c.name] = {
            "median_ms": t.median_ms,
            "min_ms": t.min_ms,
            "times_ms": [x * 1e3 for x in t.times_s],
            "page_faults": t.page_faults,
            "reference": c.reference,
            "max_rel_diff_vs_reference": diff,
            "elements_differing_over_1e-6": count_differing(t.params, ref) if ref is not None else None,
        }
    return {
        "machine": info,
        "config": config,
        "steps": steps,
        "ratios": [asdict(r) for r in ratios],
        "compile": [asdict(r) for r in compiles],
    }


# --- the command ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=None, help="timed steps per optimizer (default 30; 5 with --quick)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; 1 with --quick)")
    ap.add_argument("--compile-repeats", type=int, default=None, help="in-process compiles per spec (default 3; 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="few steps and one compile repeat: a smoke run")
    ap.add_argument("--no-compile", action="store_true", help="skip the compile timings")
    ap.add_argument("--layers", type=int, default=6, help="transformer blocks of the parameter set (default 6)")
    ap.add_argument("--width", type=int, default=512, help="model width d (default 512)")
    ap.add_argument("--vocab", type=int, default=8192, help="embedding rows (default 8192)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args(argv)
    quick = args.quick
    args.steps = args.steps if args.steps is not None else (5 if quick else 30)
    args.warmup = args.warmup if args.warmup is not None else (1 if quick else 3)
    args.compile_repeats = args.compile_repeats if args.compile_repeats is not None else (1 if quick else 3)
    if min(args.steps, args.compile_repeats, args.layers, args.width, args.vocab) < 1 or args.warmup < 0:
        ap.error("--steps, --compile-repeats, --layers, --width and --vocab must be >= 1, --warmup >= 0")
    return args


def run_config(args: argparse.Namespace, shapes: Sequence[Shape], argv: Sequence[str] | None) -> dict:
    return {
        "layers": args.layers,
        "width": args.width,
        "vocab": args.vocab,
        "tensors": len(shapes),
        "params": sum(numel(s) for s in shapes),
        "dtype": "float32",
        "steps": args.steps,
        "warmup": args.warmup,
        "seed": args.seed,
        "compile_repeats": args.compile_repeats,
        "command": " ".join(["python bench/bench_torch_backend.py", *(sys.argv[1:] if argv is None else argv)]),
    }


def print_header(info: dict, config: dict) -> None:
    print(f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, "
          f"torch threads {info['torch_threads']}, load average {info['load_average']}")
    print(f"parameters: {config['params']:,} in {config['tensors']} tensors ({config['layers']}-layer "
          f"d={config['width']} transformer, vocab {config['vocab']}), fp32, CPU")
    print(f"steps: {config['warmup']} warm-up + {config['steps']} timed, interleaved; fresh gradients each step\n")


def measure_compiles(repeats: int, info: dict) -> list[CompileTiming]:
    before = cpu_snapshot()
    compiles = time_compiles(optdsl.builtin_specs(), repeats)
    info["other_processes_cores_during_compiles"] = other_processes_cores(before, cpu_snapshot())
    return compiles


def measure_steps(entries: Sequence[Contender], shapes: Sequence[Shape], config: dict, info: dict) -> dict[str, StepTiming]:
    params0 = make_params(shapes, config["seed"])
    grads = make_grads(shapes, config["warmup"] + config["steps"], config["seed"])
    before = cpu_snapshot()
    timings = time_steps(entries, params0, grads, config["warmup"])
    info["other_processes_cores_during_steps"] = other_processes_cores(before, cpu_snapshot())
    return timings


def print_report(entries, timings, ratios, compiles, repeats: int, info: dict) -> None:
    print(step_table(timings, entries))
    print()
    print(ratio_lines(ratios))
    if compiles:
        print(f"\ncompile time per built-in spec (medians of {repeats}; in-process: imports excluded; "
              "cold: a fresh process, imports included; process: its total wall time)")
        print(compile_table(compiles))
    print(f"\nload average after: {info['load_average_after']}; other processes kept busy on average "
          f"{_cores(info.get('other_processes_cores_during_steps'))} cores during the steps, "
          f"{_cores(info.get('other_processes_cores_during_compiles'))} during the compiles")


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark, print the tables, and return (and with --json write) the results."""
    args = parse_args(argv)
    info = machine_info()
    shapes = [s for _, s in transformer_shapes(args.layers, args.width, args.vocab)]
    config = run_config(args, shapes, argv)
    print_header(info, config)
    # compiles first, before the steps have filled this process with tensors
    compiles = [] if args.no_compile else measure_compiles(args.compile_repeats, info)
    entries = contenders()
    timings = measure_steps(entries, shapes, config, info)
    ratios = speed_ratios(timings)
    info["load_average_after"] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    print_report(entries, timings, ratios, compiles, args.compile_repeats, info)
    results = results_json(info, config, entries, timings, ratios, compiles)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
