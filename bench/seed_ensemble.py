"""Does averaging `mf` over training seeds route better on held-out sources?

`mf`'s per-model correctness logits are linear in the prompt's input row, so the mean of K seeds' logits is
itself one `mf` artifact (the K projections side by side, dim K x d): an ensemble would cost nothing at serving
time. For each of the 12 source folds and the 4 family folds, the default recipe (shipped boost, no selection
grid) is trained with seeds 0..K-1 on the rest; the held-out golden sets (near-copies within cosine 0.95
dropped) are scored by each seed alone and by the mean logits of the first 2..K seeds.

    .venv/bin/python bench/seed_ensemble.py --seeds 5 --output bench/results/seed_ensemble.json
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from quality import heldout_folds, shipped_mf_recipe  # bench/ is on the path when a script runs
from result_file import write_result

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from routeray.artifacts import load_artifact  # noqa: E402
from routeray.data import load_data_dir  # noqa: E402
from routeray.evaluate.metrics import apgr  # noqa: E402
from routeray.routers.base import sigmoid  # noqa: E402
from routeray.routers.registry import load_router  # noqa: E402
from routeray.train.cli import get_trainer  # noqa: E402
from routeray.train.common import cached_embedder  # noqa: E402


def pair_logits(router: Any, prompts: list[str]) -> np.ndarray:
    """The (strong, weak) correctness logits the router routes on, ``(n, 2)``."""
    structure = router._structure(prompts)
    rows = router.inputs(router.embedder.embed(prompts), prompts, structure)
    u, c, rule = router._scorer
    if rule != "correctness":
        raise SystemExit(f"this probe averages correctness logits; the artifact routes on {rule!r}")
    return np.asarray(rows, dtype=np.float64) @ u + c


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--output", default="bench/results/seed_ensemble.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load_before = os.getloadavg()[0]
    data = load_data_dir(args.data_dir)
    config = shipped_mf_recipe()
    rows: list[dict[str, Any]] = []
    for label, train, sets, _ in heldout_folds(data, ["auto", "family:all"]):
        t0 = time.time()
        fold = [{"holdout": label, "group": es.group, "sq": es.strong_q, "wq": es.weak_q, "prompts": list(es.prompts),
                 "z": []} for es in sets]
        for seed in range(args.seeds):
            with tempfile.TemporaryDirectory() as tmp:
                get_trainer("mf")(train, Path(tmp), seed=seed, config=config, progress=False)
                spec = load_artifact(tmp).embedder
                for es, row in zip(sets, fold, strict=True):
                    r = load_router("mf", tmp, strong_model=es.strong, weak_model=es.weak,
                                    embedder=cached_embedder(spec))
                    row["z"].append(pair_logits(r, row["prompts"]))
                    row["boost"] = r.boost
        rows += fold
        print(f"{label}: {time.time() - t0:.0f} s", flush=True)

    def apgr_of(row: dict[str, Any], seeds: list[int]) -> float:
        p = sigmoid(np.mean([row["z"][s] for s in seeds], axis=0))
        scores = (1.0 + p[:, 0] - p[:, 1]) / 2.0
        if row["boost"] is not None:
            scores = row["boost"].apply(scores, row["prompts"])
        return float(apgr(scores, row["sq"], row["wq"]))

    variants = []
    for seeds in [[s] for s in range(args.seeds)] + [list(range(k)) for k in range(2, args.seeds + 1)]:
        src = [apgr_of(r, seeds) for r in rows if not r["holdout"].startswith("family:")]
        fam = [apgr_of(r, seeds) for r in rows if r["holdout"].startswith("family:")]
        v = {"seeds": seeds, "source_mean": round(float(np.mean(src)), 4), "family_mean": round(float(np.mean(fam)), 4),
             "all_mean": round(float(np.mean(src + fam)), 4)}
        variants.append(v)
        print(f"seeds {seeds}: 12 sources {v['source_mean']:.4f}  7 family sets {v['family_mean']:.4f}  "
              f"all 19 {v['all_mean']:.4f}", flush=True)
    write_result(args.output, {"variants": variants, "command": " ".join(sys.argv)}, load_before=load_before)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
