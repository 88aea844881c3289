"""The Triton backend against the torch backend, on every built-in spec.

Each test steps one optimizer over all of SHAPES ((1,) to (4097,), a matrix, a
3-d tensor) in two param groups with different hypers, 20 steps, on identical
gradients. Kernels run under the Triton interpreter without CUDA, compiled
with it. Tolerances:

* fp32: every element within 1e-6 of its tensor's scale. Rules that take a
  sign (Lion) may flip where the argument is within rounding of zero: such
  elements are counted and at most 0.2% of them (and 3 in all) may differ; the
  same for rules that compare tensors (Cautious' mask, OrthoGrad's threshold).
* bf16 parameters with fp32 states: both backends compute in fp32 and round
  to nearest-even, so they agree within one bf16 ulp (2^-8 relative) per step
  of disagreement; we allow 4 ulps of the scale, as the torch-vs-reference tests do.
* Newton-Schulz in bf16 (Muon and friends): a bf16 ulp of the orthogonalized
  update per step (NS_BF16_TOL), as an fp32 difference in its input may round
  to the neighbouring bf16 value.

New specs are picked up from ``optdsl.builtin_specs()``; variants (built on
another branch) are added by extending ``EXTRA_CASES``.
"""

from __future__ import annotations

import pytest
import torch

import optdsl
from optdsl.compiler import lower, resolve
from triton_harness import Case, has_jumps, load_pair, relative_errors, rounds_to_bf16, run_both, two_groups

STEPS = 20
FP32_TOL = 1e-6
# Newton-Schulz in bf16: where an fp32 rounding difference moves its input across a bf16 rounding
# boundary, the update differs by a bf16 ulp (2^-8) of lr * |update| ~ 1e-3 of p's scale per step
NS_BF16_TOL = 2**-8 * 1e-3 * STEPS
BF16_TOL = 4 * 2**-8
# hypers that switch a rule to another branch: set in the second group wherever a spec has them
BRANCH_HYPERS = {"eps_style": "hf", "nesterov": True, "centered": True, "decoupled_weight_decay": True,
                 "momentum": 0.9}


def builtin_case(name: str) -> Case:
    torch_cls = optdsl.load(name)
    defaults = torch_cls([torch.zeros(1, requires_grad=True)]).defaults
    first = {"weight_decay": 0.01} if defaults.get("weight_decay") == 0 else {}
    second = {"lr": 3 * defaults["lr"]} if "lr" in defaults else {}
    hypers = {h.name for h in lower(resolve(name))[0].hypers}  # not the keywords fixed at one value
    second.update({k: v for k, v in BRANCH_HYPERS.items() if k in hypers})
    if "betas" in defaults:
        second["betas"] = tuple(0.5 + b / 2 for b in defaults["betas"])
    return Case(name, first, second)


def variant_case(spec: str, *variants: str, **second) -> Case:
    base = builtin_case(spec)
    return Case(spec, base.first, {**base.second, **second}, {"variants": variants})


# More cases: a spec name or path, hypers, extra optdsl.load keywords (variants).
EXTRA_CASES: list[Case] = [variant_case("adamw", v) for v in optdsl.builtin_variants()] + [
    variant_case("adamw", "cautious", cautious_norm="timm"),
    variant_case("lion", "orthograd", "cautious"),
    variant_case("sgd", "adaptive_braking"),
]
CASES = [builtin_case(name) for name in optdsl.builtin_specs()] + EXTRA_CASES


def _run(case: Case, dtype: torch.dtype, **options):
    triton_cls, torch_cls = load_pair(case)
    return run_both(
        lambda ps: triton_cls(two_groups(ps, case), **options),
        lambda ps: torch_cls(two_groups(ps, case), **{k: v for k, v in options.items() if k == "maximize"}),
        steps=STEPS,
        dtype=dtype,
    )


def assert_fp32_close(case: Case, ours, ref) -> None:
    errors = relative_errors(ours, ref)
    off = int((errors > (NS_BF16_TOL if rounds_to_bf16(case) else FP32_TOL)).sum())
    if has_jumps(case):
        allowed = max(3, int(0.002 * errors.numel()))
        assert off <= allowed, f"{case.id}: {off} of {errors.numel()} elements off (sign flips allowed: {allowed})"
    else:
        assert off == 0, f"{case.id}: {off} elements off, worst {errors.max().item():.3g} relative"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fp32_matches_torch_backend(case):
    ours, ref = _run(case, torch.float32)
    assert_fp32_close(case, ours, ref)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bf16_params_match_torch_backend(case):
    ours, ref = _run(case, torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in ours)
    errors = relative_errors(ours, ref)
    if has_jumps(case):  # a sign taken within rounding of zero may flip: count and bound those elements
        off = int((errors > BF16_TOL).sum())
        assert off <= max(3, int(0.002 * errors.numel())), f"{case.id}: {off} of {errors.numel()} elements off"
    else:
        assert errors.max().item() <= BF16_TOL, f"{case.id}: {errors.max().item():.3g} relative"


@pytest.mark.parametrize("spec", ["adamw", "nadam", "sgd"])
def test_maximize(spec):
    case = builtin_case(spec)
    ours, ref = _run(case, torch.float32, maximize=True)
    assert_fp32_close(case, ours, ref)


@pytest.mark.parametrize("spec", ["adamw", "nadam", "radam", "rmsprop"])
def test_capturable_matches_torch_backend(spec):
    """Host math in the kernels (fp32, step read from the device): still within 1e-6 over 20 steps."""
    case = builtin_case(spec)
    ours, ref = _run(case, torch.float32, capturable=True)
    assert_fp32_close(case, ours, ref)


def test_parameters_really_move():
    """Guards the comparison: kernels that wrote nothing would match a torch run with lr=0."""
    case = Case("adamw")
    ours, _ = _run(case, torch.float32)
    start, _ = _run(Case("adamw", {"lr": 0.0}), torch.float32)
    assert relative_errors(ours, start).max().item() > 1e-3
