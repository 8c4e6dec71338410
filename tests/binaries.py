"""Debian packages the tests drive for real (``make install`` installs them): a missing one skips the tests
that need it here, and fails them on CI; the servers they start are stopped the same way."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def require_binary(name: str, package: str) -> str:
    """The path of ``name``; skips (fails on CI) naming the Debian ``package`` that provides it when missing."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name} not installed (make install installs Debian's {package} package)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def stop(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Terminate a server the test started, and kill it if it has not exited within ``timeout_s``."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
