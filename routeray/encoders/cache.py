"""Embeddings on disk (SQLite, one row per text), so a dataset is embedded once per embedder."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from routeray.encoders.base import Embedder
from routeray.paths import cache_dir as default_cache_dir


class EmbeddingCache:
    """Embeddings on disk (SQLite, one row per text) so datasets are embedded once per embedder."""

    def __init__(self, embedder: Embedder, cache_dir: str | Path | None = None):
        self.embedder = embedder
        root = Path(cache_dir) if cache_dir else default_cache_dir() / "embeddings"
        root.mkdir(parents=True, exist_ok=True)
        tag = hashlib.sha256(json.dumps(embedder.spec, sort_keys=True).encode()).hexdigest()[:12]
        self.path = root / f"{tag}.sqlite"
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def embed(self, texts: Sequence[str], progress: bool = False, desc: str = "embedding") -> np.ndarray:
        keys = [hashlib.sha1(t.encode("utf-8", "replace")).hexdigest() for t in texts]
        found: dict[str, np.ndarray] = {}
        with self._connect() as db:
            unique = list(dict.fromkeys(keys))
            for start in range(0, len(unique), 900):
                chunk = unique[start:start + 900]
                q = f"SELECT key, vec FROM emb WHERE key IN ({','.join('?' * len(chunk))})"
                for k, blob in db.execute(q, chunk):
                    found[k] = np.frombuffer(blob, dtype=np.float32)
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys, strict=True) if k not in found))
        if missing:
            from tqdm.auto import tqdm

            step = 512
            with tqdm(total=len(missing), desc=desc, unit="prompt", disable=not progress) as bar:
                for start in range(0, len(missing), step):
                    chunk = missing[start:start + step]
                    vecs = self.embedder.embed(chunk)
                    rows = []
                    for text, vec in zip(chunk, vecs, strict=True):
                        k = hashlib.sha1(text.encode("utf-8", "replace")).hexdigest()
                        found[k] = vec
                        rows.append((k, vec.astype(np.float32).tobytes()))
                    with self._connect() as db:
                        db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?)", rows)
                    bar.update(len(chunk))
        dim = self.embedder.dim
        if not texts:
            return np.zeros((0, dim), dtype=np.float32)
        return np.stack([found[k] for k in keys]).astype(np.float32)
