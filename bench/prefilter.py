"""How many routes a cheap first stage settles without MiniLM, and how often it agrees (routeray/routers/prefilter.py).

The default ``mf`` spends most of its CPU on int8 MiniLM (about 7 ms a prompt here). The prefilter distils its
score into a ridge regression on the static embedder and the 13 structure features and sends a prompt to the
router only when that estimate falls within ``band`` residual standard deviations of the threshold (both on the
logit scale).

- Distillation set: every prompt of ``../shared/data``'s training sources plus the unlabeled GSM8K train
  questions after the first ``--per-source``, scored by the real router (no labels are used). The residual
  spread is measured on a fifth of it held out from the ridge fit.
- Test set: ``bench/overhead.py``'s GSM8K (first ``--per-source``), MT-Bench and eval-sample MMLU prompts,
  with any prompt of the distillation set removed from it.
- Thresholds: those sending ``--strong-shares`` of the distillation prompts strong.
- Reported per threshold and band: the share of test prompts that still need MiniLM, the share whose
  decision equals the router's own, and the CPU per prompt of both stages (process time, one process).

    .venv/bin/python bench/prefilter.py --output bench/results/prefilter.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from overhead import source_prompts  # bench/ is on the path when a script runs
from result_file import write_result

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from routeray.data import load_data_dir  # noqa: E402
from routeray.paths import shared_data_dir  # noqa: E402
from routeray.routers.base import logit  # noqa: E402
from routeray.routers.prefilter import Prefilter  # noqa: E402
from routeray.routers.registry import load_router  # noqa: E402


def cpu_ms_per_prompt(fn: Any, prompts: list[str]) -> tuple[Any, float]:
    t = time.process_time()
    out = fn(prompts)
    return out, (time.process_time() - t) / len(prompts) * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--router", default="mf")
    p.add_argument("--artifact", default=None, help="the router's artifact (default: the shipped default)")
    p.add_argument("--data", type=Path, default=None, help="../shared/data by default")
    p.add_argument("--per-source", type=int, default=500)
    p.add_argument("--lam", type=float, default=10.0, help="ridge penalty on standardised features")
    p.add_argument("--bands", type=float, nargs="+", default=[1.5, 2.0, 3.0])
    p.add_argument("--strong-shares", type=float, nargs="+", default=[0.5, 0.3])
    p.add_argument("--output", default="bench/results/prefilter.json")
    args = p.parse_args()
    load_before = os.getloadavg()[0]
    data_dir = args.data or shared_data_dir()

    test = list(dict.fromkeys(source_prompts("gsm8k", data_dir, args.per_source)
                              + source_prompts("mt_bench", data_dir, args.per_source)
                              + source_prompts("mmlu", data_dir, 10_000)))
    unlabeled = source_prompts("gsm8k", data_dir, 100_000)[args.per_source:]
    held = set(test)
    distil = [t for t in dict.fromkeys(load_data_dir(data_dir).prompts + unlabeled) if t not in held]
    router = load_router(args.router, args.artifact) if args.artifact else load_router(args.router)

    print(f"scoring {len(distil)} distillation prompts with {args.router} (minutes) ...", flush=True)
    t0 = time.perf_counter()
    y = router.score(distil)
    distil_s = time.perf_counter() - t0
    pre = Prefilter.fit(y, distil, "bench", lam=args.lam)
    res_sd = pre.residual_sd

    y_test, full_ms = cpu_ms_per_prompt(router.score, test)
    est, cheap_ms = cpu_ms_per_prompt(pre.estimate, test)
    rows = []
    for share in args.strong_shares:
        thr = float(np.quantile(y, 1.0 - share))
        for band in args.bands:
            pre.band = band
            settled = [pre.settle(e, thr) for e in est]
            near = np.asarray([d is None for d in settled])
            decided = np.asarray([y >= thr if d is None else d for d, y in zip(settled, y_test, strict=True)])
            rows.append({"strong_share": share, "threshold": thr, "band_sd": band,
                         "needs_full": float(near.mean()),
                         "agreement": float((decided == (y_test >= thr)).mean()),
                         "test_strong_share": float((y_test >= thr).mean()),
                         "cascade_cpu_ms": cheap_ms + float(near.mean()) * full_ms})
            print(f"share {share:.0%} band {band} sd: full scorer on {near.mean():6.1%} of prompts, "
                  f"same decision on {rows[-1]['agreement']:7.2%}, CPU {rows[-1]['cascade_cpu_ms']:.2f} ms/prompt "
                  f"(full {full_ms:.2f}, cheap stage {cheap_ms:.2f})")
    result = {"router": args.router, "artifact": args.artifact or "default", "n_distil": len(distil),
              "n_test": len(test), "distil_scoring_s": distil_s, "lam": args.lam, "residual_sd": res_sd,
              "score_sd": float(y.std()), "score_logit_sd": float(logit(y).std()),
              "test_correlation": float(np.corrcoef(est, y_test)[0, 1]),
              "test_logit_correlation": float(np.corrcoef(logit(est), logit(y_test))[0, 1]),
              "full_cpu_ms": full_ms, "cheap_cpu_ms": cheap_ms, "rows": rows}
    print(f"correlation on the test prompts {result['test_correlation']:.3f} (logits "
          f"{result['test_logit_correlation']:.3f}); residual sd {res_sd:.4f} against the score logits' sd "
          f"{result['score_logit_sd']:.4f} (logit units)")
    write_result(args.output, result, load_before)


if __name__ == "__main__":
    main()
