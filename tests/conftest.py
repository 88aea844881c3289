"""Shared fixtures: an isolated compile cache, reference-run helpers, and the GPU split.

Without a CUDA device the Triton kernels run on CPU tensors under the Triton
interpreter (``TRITON_INTERPRET=1``, set here before anything imports triton),
and the tests marked ``gpu`` are deselected with a line in the summary saying
so. With a device, the same Triton tests run compiled kernels on CUDA tensors.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest
import torch

_CACHE = Path(tempfile.mkdtemp(prefix="optdsl-test-cache-"))
os.environ.setdefault("OPTDSL_CACHE_DIR", str(_CACHE))

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":  # pragma: no cover
        raise RuntimeError("triton was imported before conftest could set TRITON_INTERPRET=1")
    os.environ.setdefault("TRITON_INTERPRET", "1")

REPO = Path(__file__).resolve().parent.parent
_DESELECTED_GPU: list[str] = []
_DESELECTED_EXHAUSTIVE: list[str] = []


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def pytest_report_header(config):
    if HAS_CUDA:
        return f"CUDA device: {torch.cuda.get_device_name()}; Triton kernels compiled, tests marked gpu run"
    return "no CUDA device: Triton kernels run under TRITON_INTERPRET=1 on CPU; tests marked gpu are deselected"


def pytest_collection_modifyitems(config, items):
    # ``exhaustive`` tests (whole cross products, minutes each) run only when asked for with
    # ``-m exhaustive``; CI runs a covering subset of each product
    if "exhaustive" not in (config.getoption("markexpr") or ""):
        _deselect(config, items, "exhaustive", _DESELECTED_EXHAUSTIVE)
    if not HAS_CUDA:
        _deselect(config, items, "gpu", _DESELECTED_GPU)


def _deselect(config, items, marker: str, record: list[str]) -> None:
    """Deselect the items marked ``marker``, noting their ids in ``record`` for the summary."""
    chosen = [item for item in items if item.get_closest_marker(marker) is not None]
    if chosen:
        record.extend(item.nodeid for item in chosen)
        config.hook.pytest_deselected(items=chosen)
        items[:] = [item for item in items if item.get_closest_marker(marker) is None]


def pytest_terminal_summary(terminalreporter):
    if _DESELECTED_EXHAUSTIVE:
        terminalreporter.write_line(
            f"deselected {len(_DESELECTED_EXHAUSTIVE)} exhaustive tests (run them with -m exhaustive)")
    if _DESELECTED_GPU:
        terminalreporter.write_line(f"deselected {len(_DESELECTED_GPU)} GPU tests: no CUDA device (tests/gpu)")
