"""Shared test set-up: offline model loading, the shared data folder, and a per-session cache."""

from __future__ import annotations

import atexit
import os
import sys
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


_EXIT_STATUS: list[int] = []  # the status pytest exits with, once the session has finished


@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int):  # type: ignore[no-untyped-def]
    """A test that leaves Ray running in this process fails the run (stop it where it was started); then the
    run's final status is kept for `_exit_without_native_teardown`."""
    result = yield
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
        print("\nA test left Ray running in the test process (shut down now); stop it where it was started.",
              file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    _EXIT_STATUS.append(int(session.exitstatus))
    return result


def _exit_without_native_teardown() -> None:
    """The test process's last exit-time step: leave with pytest's status and skip what would follow (the
    interpreter's module teardown and the C/C++ libraries' static destructors). With torch, ONNX Runtime, vLLM,
    Ray and their thread pools loaded in one process, that teardown has crashed with SIGSEGV after pytest had
    printed its summary, in two CI runs, with no Python frame to show (faulthandler is off by then). Every
    Python atexit handler registered after this one (Ray's shutdown, pytest's lock-file removal) has run by now:
    atexit runs them last-registered first."""
    if _EXIT_STATUS:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS[-1])


def pytest_configure(config: pytest.Config) -> None:
    atexit.register(_exit_without_native_teardown)
