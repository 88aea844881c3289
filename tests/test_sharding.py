"""Generated optimizers on DTensor parameters (FSDP2 shards them with ``Shard(0)``).

A whole-tensor reduction (norm, rms, newton_schulz, row/col/channel reductions, group
norms) on a shard would see that shard alone. The generated code must refuse such a
parameter at its first step with a ValueError naming the optimizer class and the
parameter's shape; a rule that is elementwise for the parameter must step on the
shard and give exactly the corresponding slice of the update of the full tensor;
``Replicate()`` placements hold the whole tensor and are accepted by every rule.

The process group is torch's in-process fake backend (``FakeStore``): nothing is bound
or sent. Its collectives are no-ops, so every DTensor is built with ``from_local`` from
the slice rank 0 holds, and compared through ``to_local()``.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Replicate, Shard
from torch.testing._internal.distributed.fake_pg import FakeStore

import optdsl

BUILTINS = sorted(optdsl.builtin_specs())
STEPS = 3
SHARDED_CASES = [((4, 6), Shard(0)), ((4, 6), Shard(1)), ((8,), Shard(0))]
# specs whose default update reduces a whole 2-D tensor: norm (trust ratios, Muon's
# scale), rms / row / col reductions (Adafactor, SCALE), newton_schulz, channel
# reductions (AdamP, SGDP), a group norm (Adan's, Lamb's clipping), amax (Gravity)
WHOLE_TENSOR_2D = {"adafactor", "adamp", "adamuon", "adan", "auon", "gravity", "lamb", "mars", "muon", "scale", "sgdp"}
ELEMENTWISE = {"adam", "adamw", "adagrad", "amsgrad", "lion", "rmsprop", "sgd", "signum", "schedule_free_adamw"}


@pytest.fixture(scope="module")
def mesh():
    assert not dist.is_initialized()
    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=2)
    try:
        yield DeviceMesh("cpu", [0, 1])
    finally:
        dist.destroy_process_group()


def local_part(full: torch.Tensor, placement) -> torch.Tensor:
    """What rank 0 holds of ``full``."""
    if isinstance(placement, Replicate):
        return full.clone()
    return full.chunk(2, placement.dim)[0].clone()


def distributed(full: torch.Tensor, mesh, placement) -> DTensor:
    return DTensor.from_local(local_part(full, placement), mesh, [placement], run_check=False)


def make_data(shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen), [torch.randn(shape, generator=gen) for _ in range(STEPS)]


def run(cls, start, grads, mesh=None, placement=None, **hypers) -> torch.Tensor:
    """The parameter after STEPS steps: the full tensor, or rank 0's part of the DTensor."""
    torch.manual_seed(1)  # the same draws for specs with randn() states
    wrap = (lambda x: x.clone()) if placement is None else (lambda x: distributed(x, mesh, placement))
    param = torch.nn.Parameter(wrap(start))
    opt = cls([param], **hypers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "DTensor random operators may not have complete support on cpu"
        for grad in grads:
            param.grad = wrap(grad)
            opt.step()
    return param.detach() if placement is None else param.detach().to_local()


def assert_refused(exc: ValueError, cls, shape, placement) -> None:
    message = str(exc)
    assert f"{cls.__name__} reduces over whole tensors" in message, message
    assert f"parameter of shape {tuple(shape)} is a DTensor shard" in message, message
    assert repr(placement) in message, message


def step_sharded(cls, mesh, shape, placement, foreach):
    """(refused error or None, sharded result, expected slice of the full result)."""
    start, grads = make_data(shape)
    expected = local_part(run(cls, start, grads, foreach=foreach), placement)
    try:
        return None, run(cls, start, grads, mesh, placement, foreach=foreach), expected
    except ValueError as exc:
        return exc, None, expected


@pytest.mark.parametrize("foreach", [False, True], ids=["for-loop", "foreach"])
@pytest.mark.parametrize("name", BUILTINS)
def test_a_shard_is_refused_or_updated_like_the_full_tensor(mesh, name, foreach):
    """Never a silent shard-local reduction: each spec either refuses the shard with a clear
    error or gives exactly the slice of the full tensor's update."""
    cls = optdsl.load(name)
    for shape, placement in SHARDED_CASES:
        refused, got, expected = step_sharded(cls, mesh, shape, placement, foreach)
        if refused is not None:
            assert_refused(refused, cls, shape, placement)
            assert name not in ELEMENTWISE, f"{name} refused an elementwise update: {refused}"
            continue
        assert len(shape) == 1 or name not in WHOLE_TENSOR_2D, f"{name} stepped a {shape} shard"
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", sorted(WHOLE_TENSOR_2D))
def test_whole_tensor_reductions_refuse_a_2d_shard_before_touching_it(mesh, name):
    cls = optdsl.load(name)
    start, grads = make_data((4, 6))
    param = torch.nn.Parameter(distributed(start, mesh, Shard(0)))
    param.grad = distributed(grads[0], mesh, Shard(0))
    opt = cls([param])
    with pytest.raises(ValueError) as info:
        opt.step()
    assert_refused(info.value, cls, (4, 6), Shard(0))
    assert torch.equal(param.detach().to_local(), local_part(start, Shard(0)))


def test_lars_refuses_a_shard_only_where_its_trust_ratio_applies(mesh):
    """The check follows the rule's guards: LARS's norms apply with weight decay (or always_adapt)."""
    cls = optdsl.load("lars")
    start, grads = make_data((4, 6))
    plain = run(cls, start, grads, mesh, Shard(0), lr=0.1)
    torch.testing.assert_close(plain, local_part(run(cls, start, grads, lr=0.1), Shard(0)), rtol=1e-6, atol=1e-7)
    for hypers in ({"weight_decay": 0.1}, {"always_adapt": True}):
        with pytest.raises(ValueError) as info:
            run(cls, start, grads, mesh, Shard(0), lr=0.1, **hypers)
        assert_refused(info.value, cls, (4, 6), Shard(0))


@pytest.mark.parametrize("foreach", [False, True], ids=["for-loop", "foreach"])
@pytest.mark.parametrize("name", BUILTINS)
def test_replicated_parameters_are_accepted(mesh, name, foreach):
    """Replicate() holds the whole tensor: every rule applies, reductions included (row/col
    states of a DTensor are DTensors too)."""
    cls = optdsl.load(name)
    start, grads = make_data((4, 6))
    got = run(cls, start, grads, mesh, Replicate(), foreach=foreach)
    torch.testing.assert_close(got, run(cls, start, grads, foreach=foreach), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["adamw", "lion", "radam"])
def test_sharded_and_plain_parameters_in_one_group(mesh, name):
    """foreach ops take DTensors or plain tensors, not both: they are bucketed apart."""
    cls = optdsl.load(name)
    (a, a_grads), (b, b_grads) = make_data((4, 6), 0), make_data((5,), 1)
    sharded = torch.nn.Parameter(distributed(a, mesh, Shard(0)))
    plain = torch.nn.Parameter(b.clone())
    full = [torch.nn.Parameter(a.clone()), torch.nn.Parameter(b.clone())]
    opt, ref = cls([sharded, plain], foreach=True), cls(full, foreach=True)
    for ga, gb in zip(a_grads, b_grads):
        sharded.grad, plain.grad = distributed(ga, mesh, Shard(0)), gb.clone()
        full[0].grad, full[1].grad = ga.clone(), gb.clone()
        opt.step()
        ref.step()
    torch.testing.assert_close(sharded.detach().to_local(), local_part(full[0].detach(), Shard(0)), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(plain.detach(), full[1].detach(), rtol=1e-6, atol=1e-7)
