"""GPU benchmark of the Triton backend (needs a CUDA device; nothing here runs on CPU).

Measures, in one run on one device:

1. AdamW on one 256M-parameter fp32 tensor: ms per step and GB/s at the minimum
   traffic of 28 B/param, beside a device-to-device copy of the same tensor
   (bytes read + written) measured in the same run: the practical ceiling.
2. A GPT-2-small parameter set (124M params in 148 tensors), fp32: ms per step
   for optdsl (triton, torch backend) and torch.optim.AdamW (foreach, fused,
   torch.compile(step) with its compile time).
3. The same set with bf16 params and fp32 states (22 B/param): optdsl triton,
   beside torch's fused AdamW on bf16 params (bf16 states, 14 B/param), the
   nearest thing torch offers.
4. First-step overhead per built-in spec (kernel compile with a cold Triton
   cache, then the steady step time).

Per-step times are host wall-clock per step over a synchronized loop (they
include each optimizer's Python overhead), median of several repeats.

    python bench/bench_triton.py [--quick] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch

GPT2_SMALL = [(50257, 768), (1024, 768)] + [
    (768,), (768,), (768, 2304), (2304,), (768, 768), (768,), (768,), (768,), (768, 3072), (3072,), (3072, 768), (768,)
] * 12 + [(768,), (768,)]


def _params(shapes, dtype=torch.float32, seed=0):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    params = [torch.randn(s, device="cuda", generator=gen).to(dtype).requires_grad_(True) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, device="cuda", generator=gen).to(dtype)
    return params


def per_step_ms(step, warmup: int, iters: int, repeats: int = 5) -> float:
    """Median over ``repeats`` of the wall-clock ms per step of ``iters`` synchronized steps."""
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iters):
            step()
        torch.cuda.synchronize()
        samples.append((time.perf_counter() - start) * 1e3 / iters)
    return statistics.median(samples)


def copy_gbps(numel: int, iters: int) -> float:
    src = torch.empty(numel, device="cuda")
    dst = torch.empty_like(src)
    ms = per_step_ms(lambda: dst.copy_(src), 3, iters)
    return 2 * 4 * numel / (ms * 1e-3) / 1e9


def big_tensor(args, load) -> dict:
    numel = 256 * 2**20
    adamw = load("adamw")
    params = _params([(numel,)])
    opt = adamw(params, lr=1e-4)
    ms = per_step_ms(opt.step, 3, args.iters)
    out = {"numel": numel, "optdsl_triton_ms": ms, "optdsl_triton_GBps": 28 * numel / (ms * 1e-3) / 1e9,
           "copy_GBps": copy_gbps(numel, args.iters)}
    del params, opt
    torch.cuda.empty_cache()
    return out


def gpt2_fp32(args, load) -> dict:
    out = {"tensors": len(GPT2_SMALL), "params": sum(torch.Size(s).numel() for s in GPT2_SMALL)}
    candidates = {
        "optdsl_triton": lambda ps: load("adamw")(ps, lr=1e-4),
        "optdsl_torch_foreach": lambda ps: load("adamw", "torch")(ps, lr=1e-4),
        "torch_foreach": lambda ps: torch.optim.AdamW(ps, lr=1e-4, foreach=True),
        "torch_fused": lambda ps: torch.optim.AdamW(ps, lr=1e-4, fused=True),
    }
    for name, make in candidates.items():
        params = _params(GPT2_SMALL)
        opt = make(params)
        out[f"{name}_ms"] = per_step_ms(opt.step, 3, args.iters)
        del params, opt
    params = _params(GPT2_SMALL)
    opt = torch.optim.AdamW(params, lr=torch.tensor(1e-4, device="cuda"), foreach=True)

    @torch.compile(fullgraph=False)
    def compiled_step(step=opt.step):
        step()

    start = time.perf_counter()
    compiled_step()
    torch.cuda.synchronize()
    out["torch_compile_first_call_s"] = time.perf_counter() - start
    out["torch_compile_ms"] = per_step_ms(compiled_step, 2, args.iters)
    out["GBps_at_28B"] = {k[:-3]: 28 * out["params"] / (v * 1e-3) / 1e9 for k, v in out.items() if k.endswith("_ms")}
    del params, opt
    torch.cuda.empty_cache()
    return out


def gpt2_bf16(args, load) -> dict:
    n = sum(torch.Size(s).numel() for s in GPT2_SMALL)
    params = _params(GPT2_SMALL, torch.bfloat16)
    opt = load("adamw")(params, lr=1e-4)
    ms = per_step_ms(opt.step, 3, args.iters)
    out = {"optdsl_triton_ms": ms, "optdsl_triton_GBps_at_22B": 22 * n / (ms * 1e-3) / 1e9}
    sr = load("adamw")(params, lr=1e-4, stochastic_rounding=True)
    out["optdsl_triton_stochastic_rounding_ms"] = per_step_ms(sr.step, 3, args.iters)
    del opt, sr
    fused = torch.optim.AdamW(params, lr=1e-4, fused=True)
    ms = per_step_ms(fused.step, 3, args.iters)
    out.update(torch_fused_bf16_states_ms=ms, torch_fused_GBps_at_14B=14 * n / (ms * 1e-3) / 1e9)
    del params, fused
    torch.cuda.empty_cache()
    return out


def first_step(args, load) -> dict:
    import optdsl

    out = {}
    shapes = [(4096, 1024), (1024,), (1 << 20,)]
    for spec in optdsl.builtin_specs():
        cls = load(spec)
        params = _params(shapes)
        opt = cls(params)
        torch.cuda.synchronize()
        start = time.perf_counter()
        opt.step()
        torch.cuda.synchronize()
        first = time.perf_counter() - start
        out[spec] = {"first_step_s": first, "steady_ms": per_step_ms(opt.step, 2, max(5, args.iters // 4), 3)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (for the scripted GPU check)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    args.iters = 10 if args.quick else 50
    if not torch.cuda.is_available():
        sys.exit("bench_triton.py needs a CUDA device")
    # a cold Triton cache, so the first-step figures include compiling the kernels
    os.environ.setdefault("TRITON_CACHE_DIR", tempfile.mkdtemp(prefix="triton-cache-"))
    import optdsl
    import triton

    def load(spec, backend="triton"):
        return optdsl.load(spec, backend=backend)

    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__}
    sections = (("first_step", first_step), ("adamw_256M_fp32", big_tensor), ("gpt2_small_bf16", gpt2_bf16),
                ("gpt2_small_fp32", gpt2_fp32))  # torch.compile's long first call comes last
    for name, fn in sections:
        results[name] = fn(args, load)
        print(name, json.dumps(results[name], indent=1), flush=True)
        if args.out:  # after every section: a run cut short keeps what it measured
            with open(args.out, "w") as f:
                json.dump(results, f, indent=1)

if __name__ == "__main__":
    main()
