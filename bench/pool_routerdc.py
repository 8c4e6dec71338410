"""N-way routing among RouterDC's 7 open models, on its held-out test files.

mf is trained (the project's trainer, default hyper-parameters, no selection folds) on a training view plus
RouterDC's ``*_train.json`` / ``*-train.json`` files, never the test files; it then routes the questions of
``arc_easy_test.json`` and ``arc_challenge_test.json`` among the 7 models with ``routeray eval``'s pool
evaluation (prices: ``bench/prices/routerdc.yaml``, an assumption stated there):

    bench/make_heldout_view.sh /tmp/heldout_data
    .venv/bin/python bench/pool_routerdc.py --data /tmp/heldout_data --work /tmp/routerdc \
        --output bench/results/pool

Prints the pool summary and writes ``<output>/routerdc-test.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from routeray.data import load_data_dir  # noqa: E402
from routeray.data.routerdc import read_routerdc  # noqa: E402
from routeray.data.schema import PreferenceData  # noqa: E402
from routeray.evaluate.cache import ScoreCache  # noqa: E402
from routeray.evaluate.pool import evaluate_pool, pool_summary  # noqa: E402
from routeray.evaluate.pool_data import load_pool  # noqa: E402
from routeray.routers.pool import read_prices  # noqa: E402
from routeray.routers.registry import load_router  # noqa: E402

log = logging.getLogger("bench.pool_routerdc")
FIXED = {"grid": {}, "selection_holdouts": []}
ROUTERDC = REPO.parent / "shared" / "data" / "golden" / "routerdc"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="training view (bench/make_heldout_view.sh)")
    ap.add_argument("--routerdc", default=str(ROUTERDC), help="RouterDC's folder of JSON files")
    ap.add_argument("--work", required=True, help="folder for the mf artifact (reused when there)")
    ap.add_argument("--output", required=True)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    folder = Path(args.routerdc)
    train_files = sorted(p for p in folder.glob("*.json") if "train" in p.stem)
    test_files = sorted(p for p in folder.glob("*.json") if "test" in p.stem)
    artifact = Path(args.work) / "mf"
    if not (artifact / "config.json").is_file():
        from routeray.train.mf import train as train_mf

        data = load_data_dir(args.data)
        if not any(g.source.startswith("routerdc") for g in data.golden):  # the loader may read them already
            data.extend(PreferenceData(golden=[g for f in train_files for g in read_routerdc(f).golden]))
        log.info("training mf on %d prompts (RouterDC train files: %s)", len(data.prompts),
                 ", ".join(p.name for p in train_files))
        train_mf(data, artifact, config=FIXED)
    bench = load_pool(test_files, prices=read_prices(REPO / "bench" / "prices" / "routerdc.yaml"),
                      name="routerdc-test")
    res = evaluate_pool(bench, {"mf": load_router("mf", artifact)}, output=args.output, cache=ScoreCache())
    sys.stdout.write(pool_summary(res) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
