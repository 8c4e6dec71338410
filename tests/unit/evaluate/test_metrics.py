"""The paper's metrics on examples small enough to check by hand, and the honesty properties."""

from __future__ import annotations

import math

import numpy as np
import pytest

from routeray.evaluate.metrics import (
    apgr,
    call_performance_curve,
    cpt,
    curve_breakpoints,
    evaluate_scores,
    oracle_curve,
    oracle_scores,
    pgr,
    random_baseline,
)

# Four prompts. The weak model gets only prompt 1 right (quality 0.25); the strong model gets 0, 1, 3
# right (0.75). The router ranks prompt 0 first, ties prompts 1 and 2, ranks prompt 3 last.
STRONG = [1, 1, 0, 1]
WEAK = [0, 1, 0, 0]
SCORES = [0.9, 0.5, 0.5, 0.1]


def test_hand_computed_curve():
    pct, quality = curve_breakpoints(SCORES, STRONG, WEAK)
    # 0 strong calls: 1/4 right. Prompt 0 to strong: +1 -> 2/4. The tie (1, 2) gains nothing: 2/4 at
    # 3 calls. Prompt 3 to strong: +1 -> 3/4.
    assert pct.tolist() == [0, 25, 75, 100]
    assert quality.tolist() == [0.25, 0.5, 0.5, 0.75]
    # On a grid, the tie is the straight line between its two ends.
    assert call_performance_curve(SCORES, STRONG, WEAK, n_points=5) == [
        (0.0, 0.25), (25.0, 0.5), (50.0, 0.5), (75.0, 0.5), (100.0, 0.75)]


def test_hand_computed_pgr_apgr_cpt():
    assert pgr(0.5, strong_score=0.75, weak_score=0.25) == 0.5
    # PGR at the breakpoints: 0, .5, .5, 1 at 0, 25, 75, 100 %. Area = .25*.25 + .5*.5 + .25*.75 = .5
    assert apgr(SCORES, STRONG, WEAK) == pytest.approx(0.5)
    assert cpt(SCORES, STRONG, WEAK, 0.5) == pytest.approx(25.0)
    # PGR .8 is reached between 75 % (.5) and 100 % (1): 75 + (.3/.5)*25 = 90
    assert cpt(SCORES, STRONG, WEAK, 0.8) == pytest.approx(90.0)
    # The fixed-grid trapezoid rule (RouteLLM's way) agrees on this curve, whose kinks lie on the grid.
    assert apgr(SCORES, STRONG, WEAK, n_points=5) == pytest.approx(0.5)


def test_ties_do_not_depend_on_prompt_order():
    perm = [3, 2, 0, 1]
    a = call_performance_curve(SCORES, STRONG, WEAK)
    b = call_performance_curve(np.take(SCORES, perm), np.take(STRONG, perm), np.take(WEAK, perm))
    assert a == b
    # All scores equal: one tie group, so the curve is the straight random line, APGR exactly 0.5.
    assert apgr([0.3] * 4, STRONG, WEAK) == pytest.approx(0.5)


def test_curve_ends_at_the_two_models():
    rng = np.random.default_rng(1)
    sq, wq, s = rng.integers(0, 2, 50), rng.integers(0, 2, 50), rng.random(50)
    curve = call_performance_curve(s, sq, wq)
    assert curve[0] == (0.0, pytest.approx(wq.mean()))
    assert curve[-1] == (100.0, pytest.approx(sq.mean()))
    assert len(curve) == 101


def test_pgr_undefined_when_models_tie():
    assert math.isnan(pgr(0.5, 0.5, 0.5))
    assert math.isnan(apgr([0.1, 0.9], [1, 0], [0, 1]))
    assert evaluate_scores([0.1, 0.9], [1, 0], [0, 1]).to_json()["apgr"] is None


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="3 scores for 4 prompts"):
        apgr([0.1, 0.2, 0.3], STRONG, WEAK)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_oracle_bounds_every_router_and_the_gap_router_reproduces_it(seed):
    rng = np.random.default_rng(seed)
    n = 200
    sq = rng.integers(0, 2, n).astype(float)
    wq = (rng.random(n) < 0.4).astype(float)
    oracle = np.array([y for _, y in oracle_curve(sq, wq)])
    for _ in range(20):
        s = rng.random(n) + 0.5 * (sq - wq) * rng.random()  # some informed, some not
        router = np.array([y for _, y in call_performance_curve(s, sq, wq)])
        assert (router <= oracle + 1e-12).all()
        assert apgr(s, sq, wq) <= apgr(oracle_scores(sq, wq), sq, wq) + 1e-12
    # A router scoring the true gap, squashed into [0, 1], traces the oracle exactly.
    gap_router = 1 / (1 + np.exp(-(sq - wq)))
    assert np.allclose([y for _, y in call_performance_curve(gap_router, sq, wq)], oracle)


def test_oracle_grades_not_just_binary():
    # MT-Bench-like grades: gains of 3, -1, 0, 2. Oracle: +3 first, then +2, then 0, then -1.
    sq, wq = [8, 5, 7, 9], [5, 6, 7, 7]
    pct, q = curve_breakpoints(oracle_scores(sq, wq), sq, wq)
    assert q.tolist() == pytest.approx([25 / 4, 28 / 4, 30 / 4, 30 / 4, 29 / 4])
    assert pct.tolist() == [0, 25, 50, 75, 100]


def test_random_baseline_is_the_diagonal_within_its_interval():
    rng = np.random.default_rng(7)
    n = 400
    sq = (rng.random(n) < 0.8).astype(float)
    wq = (rng.random(n) < 0.6).astype(float)
    rb = random_baseline(sq, wq, n_seeds=200)
    assert rb.apgr == pytest.approx(0.5, abs=0.02)
    assert rb.apgr_ci[0] < 0.5 < rb.apgr_ci[1]
    assert rb.cpt50 == pytest.approx(50, abs=5) and rb.cpt50_ci[0] < 50 < rb.cpt50_ci[1]
    assert rb.cpt80 == pytest.approx(80, abs=5) and rb.cpt80_ci[0] < 80 < rb.cpt80_ci[1]
    assert rb.curve_lo[50] <= rb.curve[50][1] <= rb.curve_hi[50]
    # An informed router lands above the random interval.
    informed = (sq - wq) + rng.random(n)
    assert apgr(informed, sq, wq) > rb.apgr_ci[1]
