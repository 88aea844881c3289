"""Measure how closely each built-in spec's default matches its reference: docs/spec_tolerances.json.

    python bench/spec_tolerances.py                 # every built-in spec (a few minutes on 2 cores)
    python bench/spec_tolerances.py --only muon lamb  # re-measure some, keep the other entries
    optdsl table -o docs/specs.md                   # then regenerate the docs page from it

Each spec runs 200 fp32 steps beside its reference on the fixed random problem of
``tests/harness.py`` (five shapes in two param groups, seeded parameters and
gradients), on both code paths (foreach and per-tensor); the JSON records the max
relative error of each and their worst. The spec -> reference mapping is the tests':
the first case of each spec in ``tests/test_spec_library.py`` and
``tests/test_reference_equivalence.py``. Specs those files have no case for take the
minimal mapping in ``EXTRA_CASES`` below (torch.optim, pip packages, the eager
transcriptions of ``tests/matrix_references.py``); a spec with neither, or whose
reference is not installed, is recorded as not measured, with the reason.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import pytest  # noqa: E402  (importorskip in the tests' reference factories)
import torch  # noqa: E402

import matrix_references as mr  # noqa: E402
import optdsl  # noqa: E402
import test_reference_equivalence as equivalence_tests  # noqa: E402
import test_spec_library as library_tests  # noqa: E402
from harness import SHAPES, groups, max_relative_error, run_pair  # noqa: E402

OUT = REPO / "docs" / "spec_tolerances.json"
STEPS = 200
# Matrices and vectors only: the official AdaMuon orthogonalizes a 3-D tensor as a batch of
# matrices and scales a conv weight by its shape, where the spec takes the matrix view.
MATRIX_SHAPES = [(7,), (64, 33), (16, 40), (1,), (129,)]


def schedule_free_train_mode(params, **kw):
    """schedulefree's AdamWScheduleFree, switched to train mode (it requires that before a step)."""
    opt = pytest.importorskip("schedulefree").AdamWScheduleFree(params, **kw)
    opt.train()
    return opt


def adamp_ref(params, **kw):
    return pytest.importorskip("adamp").AdamP(params, **kw)


def sgdp_ref(params, **kw):
    return pytest.importorskip("adamp").SGDP(params, **kw)


def laprop_ref(params, **kw):
    """pytorch-optimizer 4.1.0's LaProp: the original rule at weight_decay = 0 (the default), where the
    spec's decay styles agree; eps sits outside the bias correction there, a 1e-15 difference."""
    return pytest.importorskip("pytorch_optimizer").LaProp(params, **kw)


def muon_pair(params, **kw):
    """torch.optim.Muon on the 2-D tensors beside torch.optim.AdamW on the others."""
    pair = mr.TorchMuonPair(params, **kw)
    pair.reference_label = "torch.optim.Muon + torch.optim.AdamW (tests/matrix_references.py TorchMuonPair)"
    return pair


# Specs the test files have no case for: (spec, ours, reference factory, reference kwargs,
# second group: ours, second group: reference[, shapes]), the tests' format.
EXTRA_CASES = [
    ("adafactor", {}, torch.optim.Adafactor, {}, {}, {}),
    ("adamp", {}, adamp_ref, {}, {}, {}),
    ("sgdp", {}, sgdp_ref, {"lr": 1e-3}, {}, {}),
    ("schedule_free_adamw", {}, schedule_free_train_mode, {}, {}, {}),
    ("muon", {}, muon_pair, {}, {}, {}),
    ("adamuon", {}, mr.AdaMuonRef, {}, {}, {}, MATRIX_SHAPES),
    ("auon", {}, mr.AuONRef, {}, {}, {}),
    ("scale", {}, mr.ScaleRef, {}, {}, {}),
    ("lamb", {}, mr.LambTimmRef, {}, {}, {}),
    ("laprop", {}, laprop_ref, {}, {}, {}),
]


def cases() -> dict[str, tuple[str, tuple]]:
    """spec -> (where the case comes from, case): the first case of each spec in the tests, then EXTRA_CASES."""
    found: dict[str, tuple[str, tuple]] = {}
    for case in library_tests.CASES:
        found.setdefault(case[0], ("tests/test_spec_library.py", case))
    for spec, ours, ref, ref_kw, second in equivalence_tests.CASES:
        found.setdefault(spec, ("tests/test_reference_equivalence.py", (spec, ours, ref, ref_kw, second, second)))
    for case in EXTRA_CASES:
        found.setdefault(case[0], ("bench/spec_tolerances.py", case))
    return found


def reference_label(opt) -> str:
    """What ran as the reference: torch.optim.X, a pip package and version, or a tests/ transcription."""
    if getattr(opt, "reference_label", None):
        return opt.reference_label
    cls = type(opt)
    module = cls.__module__
    if module.startswith("torch.optim"):
        return f"torch.optim.{cls.__name__}"
    if (REPO / "tests" / f"{module}.py").is_file():
        return f"tests/{module}.py {cls.__name__}"
    top = module.split(".")[0]
    dist = importlib.metadata.packages_distributions().get(top, [top])[0]
    return f"{dist} {importlib.metadata.version(dist)} {cls.__name__}"


def _kwargs_text(kw: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in kw.items()) or "defaults"


def _shapes_text(shapes) -> str:
    return ", ".join("x".join(map(str, s)) for s in shapes)


def _seeded(opt):
    """Seed torch's RNG before the first step when the optimizer has hooks (Gravity's random init)."""
    return library_tests.seeded_at_first_step(opt) if hasattr(opt, "register_step_pre_hook") else opt


def run_once(case: tuple, foreach: bool) -> tuple[float, str]:
    spec, ours_kw, ref_factory, ref_kw, second_ours, second_ref, *rest = case
    shapes = rest[0] if rest else SHAPES
    cls = optdsl.load(spec)
    made = {}

    def make_ref(ps):
        made["ref"] = _seeded(ref_factory(groups(ps, second_ref), **ref_kw))
        return made["ref"]

    ours, ref = run_pair(
        lambda ps: _seeded(cls(groups(ps, second_ours), foreach=foreach, **ours_kw)), make_ref,
        steps=STEPS, shapes=shapes,
    )
    return max_relative_error(ours, ref), reference_label(made["ref"])


def measure(spec: str, source: str, case: tuple) -> dict:
    try:
        foreach_err, label = run_once(case, foreach=True)
        loop_err, _ = run_once(case, foreach=False)
    except pytest.skip.Exception as exc:
        return {"max_rel_err": None, "reason": f"reference not installed: {exc.msg}"}
    _, ours_kw, _, ref_kw, second_ours, second_ref, *rest = case
    entry = {
        "max_rel_err": max(foreach_err, loop_err),
        "foreach": foreach_err,
        "for_loop": loop_err,
        "reference": label,
        "case": _kwargs_text(ours_kw),
        "reference_kwargs": _kwargs_text(ref_kw),
        "second_group": _kwargs_text(second_ours),
        "second_group_reference": _kwargs_text(second_ref),
        "from": source,
    }
    if rest:
        entry["shapes"] = _shapes_text(rest[0])
    return entry


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="SPEC", help="measure only these; keep the file's other entries")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    specs = sorted(optdsl.builtin_specs())
    unknown = sorted(set(args.only or ()) - set(specs))
    if unknown:
        parser.error(f"unknown spec(s): {', '.join(unknown)}")
    previous = json.loads(args.out.read_text())["specs"] if args.only and args.out.is_file() else {}
    known = cases()
    results = {name: previous[name] for name in specs if name in previous}
    start = time.perf_counter()
    for name in args.only or specs:
        t0 = time.perf_counter()
        if name in known:
            results[name] = measure(name, *known[name])
        else:
            results[name] = {"max_rel_err": None, "reason": "no reference case in the tests or bench/spec_tolerances.py"}
        err = results[name]["max_rel_err"]
        print(f"{name:<22} {'not measured' if err is None else f'{err:.2e}':>12}  ({time.perf_counter() - t0:.1f} s)")
    data = {
        "generated_by": "python bench/spec_tolerances.py",
        "steps": STEPS,
        "dtype": "float32",
        "shapes": _shapes_text(SHAPES),
        "torch": torch.__version__.split("+")[0],
        "metric": "max over tensors of max|ours - ref| / max|ref| after the last step; worst of foreach and for-loop",
        "specs": dict(sorted(results.items())),
    }
    args.out.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
