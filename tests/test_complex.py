"""Complex parameters, as torch's optimizers take them (issue 15 item 4).

torch's optimizers step a complex parameter as its real view (``torch.view_as_real``):
the real and imaginary parts are separate numbers. A generated optimizer whose rule
means the same on that view (elementwise rules, whole-tensor reductions) does the
same; one whose rule uses shapes, axis reductions or matrix operations refuses with
an error naming them. Before, every complex parameter raised "needs floating-point
parameters".
"""

from __future__ import annotations

import pytest
import torch

import optdsl

# (spec, torch counterpart, keyword arguments both take)
COUNTERPARTS = [
    ("adamw", torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.1)),
    ("adam", torch.optim.Adam, dict(lr=1e-2)),
    ("sgd", torch.optim.SGD, dict(lr=1e-2, momentum=0.9)),
    ("rmsprop", torch.optim.RMSprop, dict(lr=1e-2)),
    ("adagrad", torch.optim.Adagrad, dict(lr=1e-1)),
    ("nadam", torch.optim.NAdam, dict(lr=1e-2)),
]


def _run(opt, params, grads):
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        opt.step()


def _problem(seed=0, steps=15):
    gen = torch.Generator().manual_seed(seed)
    shapes = [(5, 3), (7,), ()]
    start = [torch.randn(s, dtype=torch.complex64, generator=gen) for s in shapes]
    grads = [[torch.randn(s, dtype=torch.complex64, generator=gen) for s in shapes] for _ in range(steps)]
    return start, grads


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("spec,reference,kwargs", COUNTERPARTS, ids=[c[0] for c in COUNTERPARTS])
def test_complex_params_follow_torch(spec, reference, kwargs, foreach):
    start, grads = _problem()
    ours = [torch.nn.Parameter(x.clone()) for x in start]
    theirs = [torch.nn.Parameter(x.clone()) for x in start]
    _run(optdsl.load(spec)(ours, foreach=foreach, **kwargs), ours, grads)
    _run(reference(theirs, foreach=foreach, **kwargs), theirs, grads)
    for a, b in zip(ours, theirs):
        assert a.dtype == torch.complex64
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert not torch.equal(a, torch.zeros_like(a))


def test_complex_and_real_params_in_one_group():
    start, grads = _problem()
    real = torch.nn.Parameter(torch.randn(4))
    ours = [torch.nn.Parameter(x.clone()) for x in start] + [torch.nn.Parameter(real.detach().clone())]
    theirs = [torch.nn.Parameter(x.clone()) for x in start] + [torch.nn.Parameter(real.detach().clone())]
    grads = [g + [torch.ones(4)] for g in grads]
    _run(optdsl.load("adamw")(ours, lr=1e-2), ours, grads)
    _run(torch.optim.AdamW(theirs, lr=1e-2), theirs, grads)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_complex_state_dict_round_trip():
    start, grads = _problem()
    params = [torch.nn.Parameter(x.clone()) for x in start]
    opt = optdsl.load("adamw")(params, lr=1e-2)
    _run(opt, params, grads[:5])
    twin = [torch.nn.Parameter(p.detach().clone()) for p in params]
    opt2 = optdsl.load("adamw")(twin, lr=1e-2)
    opt2.load_state_dict(opt.state_dict())
    _run(opt, params, grads[5:])
    _run(opt2, twin, grads[5:])
    for a, b in zip(params, twin):
        assert torch.equal(a, b)


@pytest.mark.parametrize("spec,named", [("muon", "newton_schulz()"), ("adafactor", "rowmean()")])
def test_shape_dependent_rule_refuses_complex(spec, named):
    p = torch.nn.Parameter(torch.randn(4, 3, dtype=torch.complex64))
    p.grad = torch.randn(4, 3, dtype=torch.complex64)
    before = p.detach().clone()
    opt = optdsl.load(spec)([p])
    with pytest.raises(RuntimeError, match="complex") as info:
        opt.step()
    assert named in str(info.value)
    assert torch.equal(p.detach(), before)


def test_loaded_state_does_not_share_the_step_counter():
    """load_state_dict kept the saved step tensor itself: both optimizers then counted on it."""
    p = torch.nn.Parameter(torch.randn(3))
    p.grad = torch.randn(3)
    opt = optdsl.load("adamw")([p])
    opt.step()
    twin = torch.nn.Parameter(p.detach().clone())
    twin.grad = p.grad.clone()
    opt2 = optdsl.load("adamw")([twin])
    opt2.load_state_dict(opt.state_dict())
    opt.step()
    assert opt2.state[twin]["step"].item() == 1.0
