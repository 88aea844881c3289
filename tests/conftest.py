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


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def pytest_report_header(config):
    if HAS_CUDA:
        return f"CUDA device: {torch.cuda.get_device_name()}; Triton kernels compiled, tests marked gpu run"
    return "no CUDA device: Triton kernels run under TRITON_INTERPRET=1 on CPU; tests marked gpu are deselected"


def pytest_collection_modifyitems(config, items):
    if HAS_CUDA:
        return
    gpu = [item for item in items if item.get_closest_marker("gpu") is not None]
    if gpu:
        _DESELECTED_GPU.extend(item.nodeid for item in gpu)
        config.hook.pytest_deselected(items=gpu)
        items[:] = [item for item in items if item.get_closest_marker("gpu") is None]


def pytest_terminal_summary(terminalreporter):
    if _DESELECTED_GPU:
        terminalreporter.write_line(f"deselected {len(_DESELECTED_GPU)} GPU tests: no CUDA device (tests/gpu)")
