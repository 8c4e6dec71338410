"""Router scores on a benchmark, cached per (router fingerprint, benchmark, prompts) so re-running an
evaluation or re-plotting costs nothing. Plain ``.npy`` files (no pickle) under
``routeray.paths.cache_dir() / "eval_scores"``."""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from routeray.errors import RouterayError
from routeray.paths import cache_dir
from routeray.routers.base import Router

log = logging.getLogger(__name__)

DEFAULT_BATCH = 256


def prompts_digest(prompts: Sequence[str]) -> str:
    """A short hash of the prompts, in order."""
    h = hashlib.sha256()
    for p in prompts:
        h.update(p.encode("utf-8", "replace"))
        h.update(b"\x00")
    return h.hexdigest()[:16]


class ScoreCache:
    """One file per (router fingerprint, benchmark, prompt list)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else cache_dir() / "eval_scores"

    def path(self, fingerprint: str, benchmark: str, prompts: Sequence[str]) -> Path:
        # a readable prefix, and a hash of the whole fingerprint so that long ones never collide
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", fingerprint)[:60]
        fp_hash = hashlib.sha256(fingerprint.encode()).hexdigest()[:12]
        bench = re.sub(r"[^A-Za-z0-9_.-]+", "_", benchmark)
        return self.root / bench / f"{safe}-{fp_hash}-{prompts_digest(prompts)}.npy"

    def get(self, fingerprint: str, benchmark: str, prompts: Sequence[str]) -> np.ndarray | None:
        path = self.path(fingerprint, benchmark, prompts)
        if not path.is_file():
            return None
        try:
            scores = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable score cache %s: %s", path, exc)
            return None
        return scores if scores.shape == (len(prompts),) else None

    def put(self, fingerprint: str, benchmark: str, prompts: Sequence[str], scores: np.ndarray) -> Path:
        path = self.path(fingerprint, benchmark, prompts)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, np.asarray(scores, dtype=np.float64), allow_pickle=False)
        tmp.replace(path)  # atomic: a concurrent reader sees the old file or the new, never half of one
        return path


def score_prompts(router: Router, prompts: Sequence[str], label: str = "", batch_size: int = DEFAULT_BATCH,
                  progress: bool = True, embeddings: np.ndarray | None = None) -> np.ndarray:
    """Score ``prompts`` in batches with a progress bar, checking the Router contract on the way. With the
    prompts' ``embeddings`` (in the router's own embedder's space), a router that scores embeddings
    (``score_embeddings``: mf, sw_ranking) scores those instead of embedding the prompts again."""
    name = label or getattr(router, "name", type(router).__name__)
    from_embeddings = getattr(router, "score_embeddings", None) if embeddings is not None else None

    def score(start: int, chunk: list[str]) -> np.ndarray:
        if from_embeddings is not None:
            return np.asarray(from_embeddings(embeddings[start:start + len(chunk)], chunk)).reshape(-1)  # type: ignore[index]
        return np.asarray(router.score(chunk)).reshape(-1)

    return in_batches(score, prompts, name, batch_size=batch_size, progress=progress)


def in_batches(fn: Callable[[int, list[str]], np.ndarray], prompts: Sequence[str], name: str,
               width: int | None = None, batch_size: int = DEFAULT_BATCH, progress: bool = True) -> np.ndarray:
    """``fn(start, chunk)`` over ``prompts`` in batches with a progress bar: ``(n,)`` scores, or ``(n, width)``
    when given, every value checked to be in [0, 1]."""
    from tqdm.auto import tqdm

    shape: tuple[int, ...] = (len(prompts),) if width is None else (len(prompts), width)
    out = np.empty(shape, dtype=np.float64)
    with tqdm(total=len(prompts), desc=f"scoring {name}", unit="prompt", disable=not progress) as bar:
        for start in range(0, len(prompts), batch_size):
            chunk = list(prompts[start:start + batch_size])
            got = np.asarray(fn(start, chunk), dtype=np.float64)
            if got.shape != (len(chunk), *shape[1:]):
                raise RouterayError(f"router {name!r} returned shape {got.shape} for {len(chunk)} prompts")
            out[start:start + len(chunk)] = got
            bar.update(len(chunk))
    bad = ~np.isfinite(out) | (out < 0) | (out > 1)
    if bad.any():
        i = tuple(int(v) for v in np.argwhere(bad)[0])
        raise RouterayError(f"router {name!r} returned {out[i]!r} for prompt {i[0]}; scores must be in [0, 1]")
    return out


def cached_scores(router: Router, benchmark: str, prompts: Sequence[str], cache: ScoreCache | None,
                  label: str = "", progress: bool = True, pair: tuple[str, str] | None = None,
                  embeddings: Callable[[], np.ndarray] | None = None) -> np.ndarray:
    """The router's scores on ``prompts``, from ``cache`` when there (``cache=None``: always recompute).

    ``pair`` (strong, weak) joins the key: a router loaded for another pair may score differently even when
    its fingerprint does not say so. ``embeddings`` gives the prompts' embeddings in the router's space,
    asked for only when the scores must be computed (see :func:`score_prompts`)."""
    fp = router.fingerprint if pair is None else f"{router.fingerprint}|{pair[0]}|{pair[1]}"
    if cache is not None:
        hit = cache.get(fp, benchmark, prompts)
        if hit is not None:
            log.info("%s on %s: scores from cache %s", label or fp, benchmark, cache.path(fp, benchmark, prompts))
            return hit
    emb = embeddings() if embeddings is not None and hasattr(router, "score_embeddings") else None
    scores = score_prompts(router, prompts, label=label, progress=progress, embeddings=emb)
    if cache is not None:
        cache.put(fp, benchmark, prompts, scores)
    return scores
