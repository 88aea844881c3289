"""Every IR op through the torch backend, against the IR interpreter (float64).

The same specs as the Triton backend's op test (``op_specs``), compiled without
SymPy and with the full pipeline, in both the foreach and the per-tensor path;
fp32 within 1e-5 of the interpreter over 5 steps, and for rules with ``on``
blocks, after ``eval()`` and ``train()`` too.
"""

from __future__ import annotations

import pytest
import torch

from op_specs import SPECS, param_groups, reference_step
from optdsl.backends.torch_backend import render
from optdsl.compiler import from_text, lower, source_hash
from optdsl.ir.evaluate import evaluate_event
from optdsl.passes import NO_SYMPY, PIPELINE, run_passes
from optdsl.runtime.cache import cache_dir, import_file, write_atomic


def _optimizer_class(source: str, pipeline: str):
    rule = run_passes(lower(from_text(source))[0], NO_SYMPY if pipeline == "no_sympy" else PIPELINE)
    path = cache_dir() / "torch-ops" / f"optdsl_{pipeline}_{source_hash(source)[:16]}.py"
    write_atomic(path, render(rule, source_hash(source)))
    module = import_file(path)
    return rule, getattr(module, module.__all__[0])


def assert_close(opt, params, ref, ref_states, rule) -> None:
    for p, r, st in zip(params, ref, ref_states):
        scale = r.abs().max().clamp_min(1e-12)
        assert ((p.detach().double() - r).abs().max() / scale).item() <= 1e-5
        assert set(opt.state[p]) - {"step"} == set(st), "the states the parameter has"
        for name, want in st.items():
            ours = torch.as_tensor(opt.state[p][name]).double()
            want = torch.as_tensor(want).double()
            assert ours.shape == want.shape, name
            assert ((ours - want).abs().max() / want.abs().max().clamp_min(1e-6)).item() <= 1e-5, name


@pytest.mark.parametrize("foreach", [True, False], ids=["foreach", "for-loop"])
@pytest.mark.parametrize("pipeline", ["no_sympy", "full"])
@pytest.mark.parametrize("name", list(SPECS))
def test_ops_match_ir_interpreter(name, pipeline, foreach):
    source, shapes = SPECS[name]
    rule, cls = _optimizer_class(source, pipeline)
    gen = torch.Generator().manual_seed(3)
    params = [torch.randn(s, generator=gen).requires_grad_(True) for s in shapes]
    ref = [p.detach().double() for p in params]
    ref_states = [{} for _ in params]
    opt = cls(param_groups(params, name), lr=1e-2, foreach=foreach)
    for step in range(1, 6):
        grads = [torch.randn(p.shape, generator=gen) for p in params]
        for p, grad in zip(params, grads):
            p.grad = grad
        ref, ref_states = reference_step(rule, ref, [g.double() for g in grads], step, ref_states, name)
        opt.step()
    assert_close(opt, params, ref, ref_states, rule)
    for event in ("eval", "train") if rule.events else ():
        getattr(opt, event)()
        hypers = [{"lr": group.get("lr", 1e-2)} for group in param_groups(list(range(len(params))), name) for _ in group["params"]]
        ref = [evaluate_event(rule, event, r, 5, st, h)[0] for r, st, h in zip(ref, ref_states, hypers)]
        assert_close(opt, params, ref, ref_states, rule)
