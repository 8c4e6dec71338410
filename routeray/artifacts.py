"""Router artifacts: ``tensors.safetensors`` + ``config.json`` in one directory (no pickle, ever).

``config.json`` holds::

    {"format_version": 1, "router": "mf", "routeray_version": "0.1.0",
     "embedder": {...embedder spec...} | null, "data_fingerprint": "sha256…",
     "config": {...router hyper-parameters...}, "report": {...training report...}}

Neural routers (bert, causal_llm) also keep a Hugging Face model folder under ``model/``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from routeray._version import __version__
from routeray.errors import ArtifactError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
TENSORS_FILE = "tensors.safetensors"
PACKAGED_DIR = Path(__file__).parent / "default_artifacts"
STALE_ON_SAVE = "prefilter.npz"  # routeray.routers.prefilter.FILE: tied to the artifact it was fitted for


@dataclass
class Artifact:
    """What a trained router is made of, in memory."""

    router: str
    config: dict[str, Any]
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    embedder: dict[str, Any] | None = None
    data_fingerprint: str = ""
    report: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def fingerprint(self) -> str:
        """Changes whenever the learned state does: keys score caches."""
        h = hashlib.sha256()
        h.update(json.dumps([self.router, self.config, self.embedder, self.data_fingerprint],
                            sort_keys=True, default=str).encode())
        for key in sorted(self.tensors):
            h.update(key.encode())
            h.update(np.ascontiguousarray(self.tensors[key]).tobytes())
        return h.hexdigest()[:16]


def save_artifact(artifact: Artifact, out_dir: str | Path) -> Path:
    from safetensors.numpy import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: np.ascontiguousarray(v) for k, v in artifact.tensors.items()}
    save_file(tensors, str(out / TENSORS_FILE))
    meta = {
        "format_version": FORMAT_VERSION,
        "router": artifact.router,
        "routeray_version": __version__,
        "embedder": artifact.embedder,
        "data_fingerprint": artifact.data_fingerprint,
        "config": artifact.config,
        "report": artifact.report,
    }
    (out / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=_json_default) + "\n")
    stale = out / STALE_ON_SAVE
    if stale.is_file():  # fitted for the artifact this one replaces: it would refuse to load from now on
        stale.unlink()
        log.warning("removed %s, fitted for the previous artifact in %s; refit it with "
                    "`python -m routeray.routers.prefilter --artifact %s`", stale.name, out, out)
    artifact.path = out
    return out


def load_artifact(path: str | Path, expect_router: str | None = None) -> Artifact:
    """Read an artifact, failing loudly if it is missing, of another format version or another router."""
    from safetensors.numpy import load_file

    path = Path(path)
    cfg_path = path / CONFIG_FILE
    if not cfg_path.is_file():
        raise ArtifactError(f"no router artifact at {path} (missing {CONFIG_FILE})")
    try:
        meta = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{cfg_path} is not valid JSON: {exc}") from exc
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: artifact format version {version!r}, this routeray reads version {FORMAT_VERSION}; "
            "retrain it with `routeray train`"
        )
    router = meta.get("router")
    if expect_router is not None and router != expect_router:
        raise ArtifactError(f"{path} holds a {router!r} router, not {expect_router!r}")
    tensors_path = path / TENSORS_FILE
    tensors = load_file(str(tensors_path)) if tensors_path.is_file() else {}
    return Artifact(
        router=router,
        config=meta.get("config", {}),
        tensors=tensors,
        embedder=meta.get("embedder"),
        data_fingerprint=meta.get("data_fingerprint", ""),
        report=meta.get("report", {}),
        path=path,
    )


def user_artifacts_dir() -> Path:
    """Where rebuilt artifacts live: ``$ROUTERAY_ARTIFACTS_DIR`` or ``~/.cache/routeray/artifacts``."""
    env = os.environ.get("ROUTERAY_ARTIFACTS_DIR")
    return Path(env) if env else Path.home() / ".cache" / "routeray" / "artifacts"


def resolve_artifact_dir(name: str, artifact: str | Path | None = None) -> Path:
    """The artifact directory for router ``name``: the one given, else the user's, else the packaged one."""
    if artifact is not None:
        return Path(artifact)
    for candidate in (user_artifacts_dir() / name, PACKAGED_DIR / name):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    raise ArtifactError(
        f"no trained artifact for router {name!r} (looked in {user_artifacts_dir() / name} and "
        f"{PACKAGED_DIR / name}); build it with `routeray train {name} --data ../shared/data "
        f"--out {user_artifacts_dir() / name}` (or `make artifacts`)"
    )


def fingerprint_texts(texts: Iterable[str], extra: Mapping[str, Any] | None = None) -> str:
    """A stable fingerprint of training data (its prompts and labels, in order)."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8", "replace"))
        h.update(b"\x00")
    if extra:
        h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
