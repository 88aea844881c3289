"""Every IR op through the Triton backend, against the IR interpreter (float64).

The specs below use every op of ``optdsl.ir.ops`` between them (a test checks
that); they are compiled both without SymPy (so each op reaches the backend
as written) and with the full pipeline. The reference is
``optdsl.ir.evaluate.evaluate_step``, the semantics every backend must match;
fp32 kernels stay within 1e-5 of it over 5 steps.
"""

from __future__ import annotations

import pytest
import torch

from optdsl.backends.triton_backend import render
from optdsl.compiler import from_text, lower, source_hash
from optdsl.ir.evaluate import evaluate_event
from optdsl.ir.nodes import postorder
from optdsl.ir.ops import OPS
from optdsl.passes import NO_SYMPY, PIPELINE, run_passes
from optdsl.runtime.cache import cache_dir, import_file, write_atomic
from triton_harness import count_launches, make_params

from op_specs import SPECS, param_groups, reference_step


def _rule(source: str, passes):
    return run_passes(lower(from_text(source))[0], passes)


def _optimizer_class(rule, source: str, tag: str):
    """The Triton module of an already optimized rule, written and imported like optdsl.load does."""
    path = cache_dir() / "ops" / f"optdsl_{tag}_{source_hash(source)[:16]}.py"
    write_atomic(path, render(rule, source_hash(source)))
    module = import_file(path)
    return getattr(module, module.__all__[0])


def test_specs_cover_every_op():
    used = set()
    for source, _ in SPECS.values():
        rule = _rule(source, NO_SYMPY)
        used |= {n.op for n in postorder(rule.roots())} | {r.op for r in rule.reductions}
    assert set(OPS) - used == set()


@pytest.mark.parametrize("pipeline", ["no_sympy", "full"])
@pytest.mark.parametrize("name", list(SPECS))
def test_ops_match_ir_interpreter(name, pipeline):
    source, shapes = SPECS[name]
    rule = _rule(source, NO_SYMPY if pipeline == "no_sympy" else PIPELINE)
    cls = _optimizer_class(rule, source, pipeline)
    params = make_params(shapes)
    ref = [p.detach().double().cpu() for p in params]
    ref_states = [{} for _ in params]
    opt = cls(param_groups(params, name), lr=1e-2)
    gen = torch.Generator().manual_seed(3)
    with count_launches(cls) as launches:
        for step in range(1, 6):
            grads = [torch.randn(p.shape, generator=gen) for p in params]
            for p, grad in zip(params, grads):
                p.grad = grad.to(p.device)
            ref, ref_states = reference_step(rule, ref, [g.double() for g in grads], step, ref_states, name)
            opt.step()
    groups = len(param_groups(params, name))
    assert len(launches) == 5 * groups * len(__import__("sys").modules[cls.__module__]._KERNELS)
    _assert_close(opt, params, ref, ref_states)
    for event in ("eval", "train") if rule.events else ():
        getattr(opt, event)()
        hypers = [{"lr": group.get("lr", 1e-2)} for group in param_groups(list(range(len(params))), name)
                  for _ in group["params"]]
        ref = [evaluate_event(rule, event, r, 5, st, h)[0] for r, st, h in zip(ref, ref_states, hypers)]
        _assert_close(opt, params, ref, ref_states)


def _assert_close(opt, params, ref, ref_states) -> None:
    for p, r, st in zip(params, ref, ref_states):
        scale = r.abs().max().clamp_min(1e-12)
        assert ((p.detach().double().cpu() - r).abs().max() / scale).item() <= 1e-5
        assert set(opt.state[p]) - {"step"} == set(st), "the states the parameter has"
        for name, want in st.items():
            ours = torch.as_tensor(opt.state[p][name]).double().cpu()
            want = torch.as_tensor(want).double()
            assert ours.shape == want.shape, name
            assert ((ours - want).abs().max() / want.abs().max().clamp_min(1e-6)).item() <= 1e-5, name
