"""Model-name parsing: router-<router>-<threshold>, router-<router>-<p>%, tier names; errors are 400s."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routeray.gateway.protocol import APIError
from routeray.gateway.routing import ScoreWindow, Target, decide, parse_model_name

ROUTERS = ["mf", "sw_ranking", "causal_llm", "random"]
TIERS = {"strong": "strong", "weak": "weak", "gpt-4o": "strong", "SmolLM2-135M-Instruct": "weak"}


@pytest.mark.parametrize(("name", "want"), [
    ("router-mf-0.116", Target(router="mf", threshold=0.116)),
    ("router-sw_ranking-0", Target(router="sw_ranking", threshold=0.0)),
    ("router-causal_llm-1", Target(router="causal_llm", threshold=1.0)),
    ("router-mf-1e-3", Target(router="mf", threshold=0.001)),
    ("router-mf-30%", Target(router="mf", strong_percent=30.0)),
    ("router-mf-12.5%", Target(router="mf", strong_percent=12.5)),
    ("strong", Target(tier="strong")),
    ("SmolLM2-135M-Instruct", Target(tier="weak")),
    ("gpt-4o", Target(tier="strong")),
])
def test_valid_names(name: str, want: Target) -> None:
    assert parse_model_name(name, ROUTERS, TIERS) == want  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "code"), [
    ("router-mf-1.01", "invalid_threshold"), ("router-mf--0.1", "invalid_threshold"),
    ("router-mf-nan", "invalid_threshold"), ("router-mf-inf", "invalid_threshold"),
    ("router-mf-abc", "invalid_threshold"), ("router-mf-101%", "invalid_threshold"),
    ("router-bert-0.5", "model_not_found"), ("router-mf", "model_not_found"),
    ("gpt-5", "model_not_found"), ("", "model_not_found"), ("router--0.5", "model_not_found"),
])
def test_invalid_names_are_400s(name: str, code: str) -> None:
    with pytest.raises(APIError) as info:
        parse_model_name(name, ROUTERS, TIERS)  # type: ignore[arg-type]
    assert info.value.status == 400 and info.value.code == code and info.value.param == "model"


@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.text(max_size=40), st.builds(lambda r, t: f"router-{r}-{t}", st.sampled_from(ROUTERS),
                                                   st.text(max_size=12))))
def test_any_string_parses_or_is_a_400(name: str) -> None:
    try:
        t = parse_model_name(name, ROUTERS, TIERS)  # type: ignore[arg-type]
    except APIError as err:
        assert err.status == 400
        return
    if t.threshold is not None:
        assert 0.0 <= t.threshold <= 1.0
    if t.strong_percent is not None:
        assert 0.0 <= t.strong_percent <= 100.0
    assert t.routed or t.tier in ("strong", "weak")


def test_threshold_contract() -> None:
    assert decide(0.5, 0.5) == "strong" and decide(0.49, 0.5) == "weak"
    assert decide(0.0, 0.0) == "strong" and decide(0.999, 1.0) == "weak"


def test_percentage_routing_holds_its_share_under_drift() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    window = ScoreWindow(size=500, min_samples=20)
    shares = []
    for centre in (0.2, 0.5, 0.8):  # the score distribution drifts; a fixed threshold would not follow
        tiers = []
        for s in np.clip(rng.normal(centre, 0.1, 2000), 0, 1):
            tier, _ = window.decide(float(s), 30.0)
            window.add(float(s))
            tiers.append(tier)
        shares.append(tiers[500:].count("strong") / len(tiers[500:]))  # after the window caught up
    assert all(abs(s - 0.30) < 0.04 for s in shares), shares


def test_percentage_extremes_and_cold_start() -> None:
    window = ScoreWindow(size=100, min_samples=50)
    assert window.decide(0.0, 100.0)[0] == "strong"
    assert window.decide(1.0, 0.0)[0] == "weak"
    tier, threshold = window.decide(0.5, 50.0)
    assert threshold is None and tier in ("strong", "weak")  # cold start: a draw at p
    for v in range(100):
        window.add(v / 100)
    tier, threshold = window.decide(0.95, 10.0)
    assert tier == "strong" and threshold is not None and math.isclose(threshold, 0.9, abs_tol=0.02)
