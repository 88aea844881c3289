"""The CPU benchmark (bench/bench_torch_backend.py) on a tiny parameter set, so it cannot rot.

Checks what the benchmark computes (every optimizer stepped and timed, the generated
ones ending where their references end, every row and ratio reported), never speed.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
import torch

pytest.importorskip("lion_pytorch")


@pytest.fixture(scope="module")
def bench(repo):
    path = repo / "bench" / "bench_torch_backend.py"
    spec = importlib.util.spec_from_file_location("bench_torch_backend", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


TINY = [(16, 8), (8,), (3, 4, 5), (1,)]


def test_full_parameter_set_is_a_small_transformer(bench):
    shapes = [s for _, s in bench.transformer_shapes()]
    assert len(shapes) == 75
    assert sum(bench.numel(s) for s in shapes) == 23_109_632


def test_timed_steps_match_the_references(bench):
    entries = bench.contenders()
    params0 = bench.make_params(TINY, seed=0)
    grads = bench.make_grads(TINY, steps=4, seed=0)
    grads_before = [[g.clone() for g in step] for step in grads]
    timings = bench.time_steps(entries, params0, grads, warmup=1)

    assert set(timings) == {c.name for c in entries}
    for c in entries:
        t = timings[c.name]
        assert len(t.times_s) == 3 and all(x > 0 for x in t.times_s), c.name
        if sys.platform.startswith("linux"):
            assert len(t.page_faults) == 3 and all(n >= 0 for n in t.page_faults), c.name
        assert not any(torch.equal(a, b) for a, b in zip(t.params, params0)), f"{c.name} did not step"
        if c.reference is not None:
            diff = bench.max_relative_difference(t.params, timings[c.reference].params)
            assert diff <= 1e-6, f"{c.name} vs {c.reference}: {diff}"
    for before, after in zip(grads_before, grads):
        assert all(torch.equal(a, b) for a, b in zip(before, after)), "an optimizer changed the shared gradients"

    table = bench.step_table(timings, entries)
    assert all(c.name in table for c in entries)
    ratios = bench.speed_ratios(timings)
    assert [(r.contender, r.baseline) for r in ratios] == bench.RATIOS
    text = bench.ratio_lines(ratios)
    for r in ratios:
        assert r.speed > 0
        assert f"{r.contender} / {r.baseline} = {r.speed:.2f}x speed" in text


def test_differences_are_measured(bench):
    a = [torch.ones(3), torch.full((2,), 2.0)]
    b = [torch.ones(3), torch.tensor([2.0, 2.5])]
    assert bench.max_relative_difference(a, a) == 0.0
    assert bench.max_relative_difference(a, b) == pytest.approx(0.5 / 2.5)
    assert bench.count_differing(a, a) == 0
    assert bench.count_differing(a, b) == 1


def test_other_processes_cpu_use(bench):
    start, end = bench.CpuSnapshot(0.0, 10.0, 2.0), bench.CpuSnapshot(2.0, 14.0, 3.0)
    assert bench.other_processes_cores(start, end) == pytest.approx((4.0 - 1.0) / 2.0)
    assert bench.other_processes_cores(None, end) is None
    if sys.platform.startswith("linux"):
        first = bench.cpu_snapshot()
        sum(i * i for i in range(200_000))
        second = bench.cpu_snapshot()
        assert second.own_s >= first.own_s and second.machine_busy_s >= first.machine_busy_s


def test_compile_timings(bench):
    (row,) = bench.time_compiles(["sgd"], repeats=1, cold=True)
    assert row.error is None
    assert row.warm_s > 0 and row.cold_s > 0
    assert row.process_s >= row.cold_s
    assert "sgd" in bench.compile_table([row])


def test_compile_failure_is_reported_not_raised(bench):
    (row,) = bench.time_compiles(["no_such_spec"], repeats=1, cold=False)
    assert row.warm_s is None and row.error is not None and "no_such_spec" in row.error


def test_main_writes_every_row_to_json(bench, tmp_path, capsys):
    out = tmp_path / "results.json"
    argv = ["--quick", "--layers", "1", "--width", "8", "--vocab", "16", "--no-compile", "--json", str(out)]
    results = bench.main(argv)
    printed = capsys.readouterr().out
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    assert results["config"]["tensors"] == 15 and results["config"]["steps"] == 5
    assert set(results["steps"]) == {c.name for c in bench.contenders()}
    for name, row in results["steps"].items():
        assert len(row["times_ms"]) == 5 and row["median_ms"] > 0, name
        assert name in printed
    assert len(results["ratios"]) == len(bench.RATIOS)
    assert "other_processes_cores_during_steps" in results["machine"]
