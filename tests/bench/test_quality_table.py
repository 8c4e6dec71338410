"""bench/quality.py's summary lines: random's interval for a mean over held-out sets."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import quality  # noqa: E402

from routeray.evaluate.metrics import apgr  # noqa: E402


def test_random_interval_of_a_mean_matches_simulated_random_routers() -> None:
    """The interval read off each set's own random interval agrees with the mean of independently seeded
    random routers over the same sets, and is narrower than any one set's."""
    rng = np.random.default_rng(7)
    sets = []
    for n in (120, 250, 400, 600):
        strong = (rng.random(n) < 0.8).astype(float)
        weak = (rng.random(n) < 0.6).astype(float)
        sets.append((strong, weak))
    seeds = 400
    per_set = np.array([[apgr(np.random.default_rng(1000 * i + s).random(len(sq)), sq, wq) for s in range(seeds)]
                        for i, (sq, wq) in enumerate(sets)])
    rows = [{"random_apgr": float(a.mean()), "random_apgr_ci": [float(np.percentile(a, 2.5)),
                                                                 float(np.percentile(a, 97.5))]} for a in per_set]
    lo, hi = quality.random_mean_interval(rows)
    sim_lo, sim_hi = np.percentile(per_set.mean(axis=0), [2.5, 97.5])
    half = (sim_hi - sim_lo) / 2
    assert abs(lo - sim_lo) < 0.2 * half and abs(hi - sim_hi) < 0.2 * half
    assert hi - lo < min(r["random_apgr_ci"][1] - r["random_apgr_ci"][0] for r in rows)
