"""Shared fixtures: an isolated compile cache, and reference-run helpers."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_CACHE = Path(tempfile.mkdtemp(prefix="optdsl-test-cache-"))
os.environ.setdefault("OPTDSL_CACHE_DIR", str(_CACHE))

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
