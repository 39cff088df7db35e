"""Session-wide test isolation: no test reads or writes the user's caches, weights or the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Real media for optional checks; a fresh clone has no ../shared, and every test using it skips then.
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["TALKREEL_CACHE"] = str(tmp_path_factory.mktemp("talkreel-cache"))
    os.environ["TALKREEL_WEIGHTS"] = str(tmp_path_factory.mktemp("talkreel-weights"))
    os.environ["HF_HUB_OFFLINE"] = "1"  # a test that reaches for the hub fails instead of hanging


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is not present (fresh clone)")
    return SHARED


@pytest.fixture
def one_thread():
    """torch on one thread for the test: tiny models spend more time in thread hand-offs than in arithmetic
    (tests.latentsync_helpers.one_torch_thread). A module of tiny-model tests takes it for every test with
    `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    from tests.latentsync_helpers import one_torch_thread

    with one_torch_thread():
        yield
