"""Optimizers from ``optdsl.load`` pickle: classes by their spec, instances as any optimizer.

A loaded class lives in a module imported from the cache directory, which no other
process can import by name; it pickles as ``optdsl.runtime.pickling.rebuild_class``
with the spec text and its variants' texts, so the unpickling process needs only
optdsl (not the spec's file, nor a warm cache). Covered: pickle, torch.save /
torch.load, a ``spawn`` worker and a fresh process with an empty cache, for built-in
specs, variants, spec and variant files (deleted before anything is pickled) and
``source=`` text; a module compiled to a file and a subclass in user code still
pickle by reference; and an unpickled optimizer works with deepcopy, LR schedulers
and torch.compile.
"""

from __future__ import annotations

import copy
import importlib
import io
import multiprocessing
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import optdsl
from optdsl.api import compile_to_file
from optdsl.compiler import resolve, resolve_variant

TESTS = Path(__file__).resolve().parent
SHAPES = [(4, 3), (5,)]  # a matrix and a vector: muon orthogonalizes one and takes AdamW on the other

HEAVY_BALL = '''optimizer HeavyBall
  """SGD with heavy-ball momentum, given as text."""

hyper lr = 0.1 in [0, inf)
hyper momentum = 0.9 in [0, 1)

state buf = zeros

buf = momentum * buf + g
p = p - lr * buf
'''


def load_from_files(directory: Path):
    """Lion from a spec file with the cautious variant from a file of another name; both files
    are deleted once loaded, so every later use must do without them."""
    spec, variant = directory / "my_lion.opt", directory / "careful.opt"
    spec.write_text(resolve("lion").text, encoding="utf-8")
    variant.write_text(resolve_variant("cautious").text, encoding="utf-8")
    cls = optdsl.load(spec, variants=[variant])
    spec.unlink()
    variant.unlink()
    return cls


CASES = {
    "adamw": lambda directory: optdsl.load("adamw"),
    "muon": lambda directory: optdsl.load("muon"),
    "lion+cautious": lambda directory: optdsl.load("lion", variants=["cautious"]),
    "files": load_from_files,
    "source": lambda directory: optdsl.load(source=HEAVY_BALL),
}
CLASS_NAMES = {"adamw": "AdamW", "muon": "Muon", "lion+cautious": "CautiousLion", "files": "CautiousLion",
               "source": "HeavyBall"}


@pytest.fixture(scope="module")
def spec_dir(tmp_path_factory) -> Path:
    """Where the "files" case writes its specs: one directory, so its cache key stays the same."""
    return tmp_path_factory.mktemp("spec-files")


@pytest.fixture(params=list(CASES))
def case(request, spec_dir):
    """(case name, loaded class)."""
    return request.param, CASES[request.param](spec_dir)


def make_params(seed: int = 0) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=generator)) for shape in SHAPES]


def grads_for(step: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1000 + step)
    return [torch.randn(shape, generator=generator) for shape in SHAPES]


def train(opt, steps: int, first: int = 0) -> list[torch.Tensor]:
    """Step ``opt`` with the gradients of steps ``first``, ``first + 1``, ...; its parameters after."""
    params = [p for group in opt.param_groups for p in group["params"]]
    for step in range(first, first + steps):
        for param, grad in zip(params, grads_for(step)):
            param.grad = grad.clone()
        opt.step()
    return [p.detach().clone() for p in params]


def assert_same(actual: list[torch.Tensor], expected: list[torch.Tensor]) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert torch.equal(a, e), (a, e)


def trained(cls):
    """An optimizer of ``cls`` two steps in (its states exist), with a non-default hyper."""
    opt = cls(make_params(), lr=0.01)
    train(opt, 2)
    return opt


# --- classes and instances in this process ------------------------------------------------------


def test_class_unpickles_to_the_same_class(case):
    name, cls = case
    assert cls.__name__ == CLASS_NAMES[name]
    for protocol in (2, pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL):
        data = pickle.dumps(cls, protocol=protocol)
        assert b"optdsl.runtime.pickling" in data and cls.__module__.encode() not in data
        assert pickle.loads(data) is cls


def test_instance_round_trips_through_pickle_and_torch_save(case):
    _, cls = case
    opt = trained(cls)
    buffer = io.BytesIO()
    torch.save(opt, buffer)
    buffer.seek(0)
    copies = [pickle.loads(pickle.dumps(opt)), torch.load(buffer, weights_only=False)]
    expected = train(opt, 3, first=2)
    for twin in copies:
        assert type(twin) is cls and twin.param_groups[0]["lr"] == 0.01
        assert_same(train(twin, 3, first=2), expected)


def test_a_fresh_process_with_an_empty_cache_unpickles_them(tmp_path, spec_dir):
    """Every case pickled here, unpickled and stepped by a new interpreter with its own empty cache."""
    loaded = {name: build(spec_dir) for name, build in CASES.items()}
    optimizers = {name: trained(cls) for name, cls in loaded.items()}
    payload = tmp_path / "payload.pkl"
    payload.write_bytes(pickle.dumps((loaded, optimizers)))
    expected = {name: train(opt, 3, first=2) for name, opt in optimizers.items()}

    fresh, out = tmp_path / "fresh-cache", tmp_path / "stepped.pt"
    code = (
        "import pickle, sys, torch\n"
        f"sys.path.insert(0, {str(TESTS)!r})\n"
        "from test_pickle import train\n"
        f"classes, optimizers = pickle.loads(open({str(payload)!r}, 'rb').read())\n"
        "assert all(type(optimizers[name]) is cls for name, cls in classes.items())\n"
        "stepped = {name: train(opt, 3, first=2) for name, opt in optimizers.items()}\n"
        f"torch.save(stepped, {str(out)!r})\n"
        "print(' '.join(cls.__name__ for cls in classes.values()))\n"
    )
    env = {**os.environ, "OPTDSL_CACHE_DIR": str(fresh)}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [CLASS_NAMES[name] for name in CASES]
    assert len(list(fresh.rglob("optdsl_*.py"))) == len(CASES)  # each compiled there, into its own cache
    stepped = torch.load(out)
    for name in CASES:
        assert_same(stepped[name], expected[name])


def step_in_worker(opt, first: int, steps: int):
    """Run in a spawned process: the optimizer arrives pickled, steps, and sends back its parameters."""
    return type(opt).__name__, [p.tolist() for p in train(opt, steps, first)]


@pytest.mark.parametrize("name", ["muon", "files"])
def test_a_spawned_worker_steps_an_optimizer_passed_to_it(name, tmp_path, spec_dir, monkeypatch):
    cls = CASES[name](spec_dir)
    opt = trained(cls)
    twin = copy.deepcopy(opt)
    monkeypatch.setenv("OPTDSL_CACHE_DIR", str(tmp_path / "worker-cache"))  # the worker compiles its own
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        class_name, params = pool.apply(step_in_worker, (opt, 2, 3))
    assert class_name == cls.__name__
    assert list((tmp_path / "worker-cache").rglob("optdsl_*.py")), "the worker compiled the carried spec"
    assert_same([torch.tensor(p) for p in params], train(twin, 3, first=2))


def test_cloudpickle_pickles_by_the_spec_too():
    """cloudpickle (Ray, Dask, joblib) defers to copyreg for a class whose module is in sys.modules."""
    cloudpickle = pytest.importorskip("cloudpickle")
    cls = optdsl.load("lion", variants=["cautious"])
    data = cloudpickle.dumps(trained(cls))
    assert b"rebuild_class" in data and type(pickle.loads(data)) is cls


# --- what pickles by reference --------------------------------------------------------------------


def test_importable_classes_still_pickle_by_reference(tmp_path, monkeypatch):
    """A module written by ``optdsl compile`` and imported, and a subclass of a loaded class in an
    importable module, pickle by reference as any class; the loaded class itself by its spec."""
    compile_to_file("adamw", tmp_path / "compiled_adamw.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    imported = importlib.import_module("compiled_adamw").AdamW
    loaded = optdsl.load("adamw")
    subclass = type("SubAdamW", (loaded,), {"__module__": __name__})
    monkeypatch.setattr(sys.modules[__name__], "SubAdamW", subclass, raising=False)

    for cls, reference in ((imported, b"compiled_adamw"), (subclass, b"SubAdamW")):
        data = pickle.dumps(cls)
        assert reference in data and b"rebuild_class" not in data
        assert pickle.loads(data) is cls
        assert type(pickle.loads(pickle.dumps(trained(cls)))) is cls
    assert imported is not loaded and pickle.loads(pickle.dumps(loaded)) is loaded


# --- an unpickled optimizer is a plain torch optimizer --------------------------------------------


def test_unpickled_optimizer_deepcopies_and_takes_a_scheduler():
    cls = optdsl.load("adamw")
    opt = pickle.loads(pickle.dumps(trained(cls)))
    assert isinstance(opt, torch.optim.Optimizer)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    twin = copy.deepcopy(opt)
    for step in (2, 3):
        train(opt, 1, first=step)
        scheduler.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0025)
    twin.param_groups[0]["lr"] = 0.01
    train(twin, 1, first=2)
    twin.param_groups[0]["lr"] = 0.005
    assert_same(train(twin, 1, first=3), [p.detach() for p in opt.param_groups[0]["params"]])


def test_unpickled_optimizer_step_under_torch_compile_matches_eager():
    cls = optdsl.load("adamw")
    model = torch.nn.Linear(4, 3)
    eager = cls(model.parameters(), lr=0.1)
    twin = copy.deepcopy(model)  # one pickle for both, so that the optimizer keeps holding twin's parameters
    twin, compiled = pickle.loads(pickle.dumps((twin, cls(twin.parameters(), lr=0.1))))
    compiled_step = torch.compile(compiled.step)
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        for net, opt, step in ((model, eager, eager.step), (twin, compiled, compiled_step)):
            opt.zero_grad()
            net(x).square().sum().backward()
            step()
    for ours, theirs in zip(twin.parameters(), model.parameters()):
        torch.testing.assert_close(ours, theirs)  # float32 tolerances: inductor fuses the arithmetic


def test_triton_class_and_instance_pickle_by_the_spec():
    """Without a GPU the kernels run under the Triton interpreter on these CPU tensors (conftest)."""
    pytest.importorskip("triton")
    cls = optdsl.load("adamw", backend="triton")
    data = pickle.dumps(cls)
    assert b"triton" in data and pickle.loads(data) is cls
    opt = trained(cls)
    twin = pickle.loads(pickle.dumps(opt))
    assert type(twin) is cls
    assert_same(train(twin, 1, first=2), train(opt, 1, first=2))
