"""Where things are by default. Functions, not constants: read the environment when called."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    """``$ROUTERAY_DATA_DIR`` or ``../shared/data`` beside the repository."""
    env = os.environ.get("ROUTERAY_DATA_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def cache_dir() -> Path:
    env = os.environ.get("ROUTERAY_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "routeray"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in blocks (model weights are hundreds of MB)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()
