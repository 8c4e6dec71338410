"""Shared test set-up: offline model loading, the shared data folder, and a per-session cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"../shared/data not found at {SHARED_DATA}")
    return SHARED_DATA


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A test that leaves Ray running in this process fails the run: Ray's exit-time shutdown, with torch,
    ONNX Runtime and vLLM loaded, has crashed the interpreter after every test had passed. Shut it down here
    and say so."""
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
        print("\nA test left Ray running in the test process (shut down now); stop it where it was started.",
              file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
