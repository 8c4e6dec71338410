"""`routeray eval` end to end on ../shared/data/eval_sample: the output contract, the honesty checks
(random within its interval, the oracle on top, a gap-knowing router reproducing it), caching."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from routeray.cli import main
from routeray.evaluate.benchmarks import load_benchmark
from routeray.routers.base import Router
from routeray.routers.registry import register_router

BENCHMARKS = ["mmlu", "gsm8k", "mt-bench"]
CONTRACT_KEYS = {"benchmark", "strong_model", "weak_model", "strong_score", "weak_score", "n_prompts",
                 "n_contaminated", "routers"}


def _gaps(shared: Path) -> dict[str, float]:
    """The true per-prompt gain of the strong model over the weak one on every sample benchmark."""
    out: dict[str, float] = {}
    for name in BENCHMARKS:
        b = load_benchmark(name, shared / "eval_sample")
        out.update(zip(b.prompts, (b.strong_quality - b.weak_quality).tolist(), strict=True))
    return out


@register_router
class GapOracleRouter(Router):
    """Knows the answer key: scores each prompt by the true quality gap (squashed into [0, 1])."""

    name: ClassVar[str] = "test_gap_oracle"
    needs_artifact: ClassVar[bool] = False
    guard: ClassVar[str] = "off"  # looks prompts up in the answer key: the guard's views are not in it
    gaps: ClassVar[dict[str, float]] = {}
    calls: ClassVar[int] = 0
    sign: ClassVar[float] = 1.0

    @classmethod
    def load(cls, artifact_dir: Path | None = None, **overrides: Any) -> Router:
        return cls()

    def score(self, prompts):
        type(self).calls += 1
        g = np.array([self.gaps[p] for p in prompts])
        return 1 / (1 + np.exp(-self.sign * g))

    @property
    def fingerprint(self) -> str:
        return f"{self.name}-{self.sign}"


@register_router
class ContrarianRouter(GapOracleRouter):
    """Sends exactly the wrong prompts to the strong model: must land below random."""

    name: ClassVar[str] = "test_contrarian"
    sign: ClassVar[float] = -1.0


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ROUTERAY_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def gaps(shared_data):
    GapOracleRouter.gaps = _gaps(shared_data)
    return GapOracleRouter.gaps


def _run(shared_data: Path, out: Path, benchmark: str, *routers: str, extra: tuple[str, ...] = ()) -> dict:
    rc = main(["eval", "--benchmark", benchmark, "--data-dir", str(shared_data / "eval_sample"),
               "--routers", *routers, "--output", str(out), "--num-random-seeds", "200", *extra])
    assert rc == 0
    return json.loads((out / f"{benchmark}.json").read_text())


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_random_router_contract_and_honesty(shared_data, tmp_path, benchmark):
    res = _run(shared_data, tmp_path, benchmark, "random")
    assert CONTRACT_KEYS <= set(res)
    assert res["benchmark"] == benchmark
    assert res["strong_model"] == "gpt-4-1106-preview"
    assert res["weak_model"] == "mistralai/Mixtral-8x7B-Instruct-v0.1"
    assert res["n_prompts"] == len(load_benchmark(benchmark, shared_data / "eval_sample"))
    assert res["strong_score"] > res["weak_score"]
    rnd = res["routers"]["random"]
    assert {"apgr", "cpt50", "cpt80", "curve"} <= set(rnd)
    curve = rnd["curve"]
    assert curve[0]["strong_pct"] == 0 and curve[-1]["strong_pct"] == 100
    assert curve[0]["score"] == pytest.approx(res["weak_score"])
    assert curve[-1]["score"] == pytest.approx(res["strong_score"])
    # Random: APGR ~ 0.5 and CPT(x%) ~ x%, inside the interval of its own seeds.
    lo, hi = rnd["apgr_ci"]
    assert lo < 0.5 < hi and abs(rnd["apgr"] - 0.5) < (hi - lo) / 4
    assert rnd["cpt50_ci"][0] <= 50 <= rnd["cpt50_ci"][1]
    assert rnd["cpt80_ci"][0] <= 80 <= rnd["cpt80_ci"][1]
    assert 0 <= rnd["cpt50"] <= rnd["cpt80"] <= 100
    # The oracle bounds the random curve from above.
    assert all(o["score"] >= r["score"] - 1e-12 for o, r in zip(res["oracle"]["curve"], curve, strict=True))
    png = tmp_path / f"{benchmark}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_gap_router_reproduces_oracle_and_contrarian_is_below_random(shared_data, tmp_path, gaps, benchmark):
    res = _run(shared_data, tmp_path, benchmark, "test_gap_oracle", "test_contrarian")
    oracle, good, bad = res["oracle"], res["routers"]["test_gap_oracle"], res["routers"]["test_contrarian"]
    assert good["apgr"] == pytest.approx(oracle["apgr"])
    assert [p["score"] for p in good["curve"]] == pytest.approx([p["score"] for p in oracle["curve"]])
    for name in ("test_contrarian", "random"):
        r = res["routers"][name]
        assert all(o["score"] >= p["score"] - 1e-12
                   for o, p in zip(oracle["curve"], r["curve"], strict=True))
    assert good["vs_random"] == "above" and bad["vs_random"] == "below"
    assert good["cpt50"] < res["routers"]["random"]["cpt50"] < bad["cpt50"]
    assert res["cost"]["routers"]["test_gap_oracle"]["cpt50"]["saving_ratio"] > 1


def test_scores_are_cached_per_router_and_benchmark(shared_data, tmp_path, gaps):
    GapOracleRouter.calls = 0
    first = _run(shared_data, tmp_path / "a", "gsm8k", "test_gap_oracle")
    n = GapOracleRouter.calls
    assert n >= 1
    second = _run(shared_data, tmp_path / "b", "gsm8k", "test_gap_oracle")
    assert GapOracleRouter.calls == n  # served from the cache
    assert second["routers"]["test_gap_oracle"] == first["routers"]["test_gap_oracle"]
    _run(shared_data, tmp_path / "c", "gsm8k", "test_gap_oracle", extra=("--no-cache",))
    assert GapOracleRouter.calls > n


def test_cost_in_money(shared_data, tmp_path, gaps):
    res = _run(shared_data, tmp_path, "gsm8k", "test_gap_oracle",
               extra=("--strong-price", "10", "30", "--weak-price", "0.6", "0.6"))
    cost = res["cost"]
    assert cost["tokens"]["source"].startswith("responses")
    per_1k = cost["usd_per_1k_prompts"]
    assert per_1k["all_strong"] > per_1k["all_weak"] > 0
    row = cost["routers"]["test_gap_oracle"]["cpt80"]
    # Linear in the strong share: the router's bill sits between all-weak and all-strong at its CPT.
    expected = per_1k["all_weak"] + row["cpt"] / 100 * (per_1k["all_strong"] - per_1k["all_weak"])
    assert row["usd_per_1k_prompts"] == pytest.approx(expected)
    assert row["usd_saved_per_1k_prompts"] > 0


def test_other_model_pair_and_unknown_model(shared_data, tmp_path, capsys):
    # Swapping the roles is a valid pair: the "strong" model is now the weaker one.
    res = _run(shared_data, tmp_path, "mmlu", "random",
               extra=("--strong-model", "mistralai/Mixtral-8x7B-Instruct-v0.1",
                      "--weak-model", "gpt-4-1106-preview"))
    assert res["strong_score"] < res["weak_score"]
    rc = main(["eval", "--benchmark", "mmlu", "--data-dir", str(shared_data / "eval_sample"),
               "--routers", "random", "--output", str(tmp_path), "--strong-model", "gpt-5"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "mmlu_" in err and "gpt-5" in err and "gpt-4-1106-preview" in err  # names the file and the choices


def test_golden_label_benchmark(shared_data, tmp_path):
    rc = main(["eval", "--benchmark", "golden", "--routers", "random", "--output", str(tmp_path),
               "--data-dir", str(shared_data / "golden" / "routerbench" / "mbpp_test.csv")])
    assert rc == 0
    res = json.loads((tmp_path / "golden.json").read_text())
    # RouterBench spells Mixtral "mistralai/mixtral-8x7b-chat"; the importers map it to the default pair.
    assert res["n_prompts"] > 50
    assert res["routers"]["random"]["apgr_ci"][0] < 0.5 < res["routers"]["random"]["apgr_ci"][1]


def test_artifacts_folder_must_hold_the_router(shared_data, tmp_path, capsys):
    rc = main(["eval", "--benchmark", "gsm8k", "--data-dir", str(shared_data / "eval_sample"),
               "--routers", "mf", "--output", str(tmp_path / "out"), "--artifacts", str(tmp_path)])
    assert rc == 2
    assert "no folder 'mf'" in capsys.readouterr().err
    rc = main(["eval", "--benchmark", "gsm8k", "--data-dir", str(tmp_path / "missing"),
               "--routers", "random", "--output", str(tmp_path / "out")])
    assert rc == 2
    assert "missing: evaluation data folder not found" in capsys.readouterr().err


def test_cache_keys_never_collide_on_long_fingerprints(tmp_path):
    from routeray.evaluate.cache import ScoreCache

    cache = ScoreCache(tmp_path)
    prefix = "sw_ranking-" + "x" * 100
    cache.put(prefix + "-gamma10", "mmlu", ["a prompt"], np.array([0.1]))
    assert cache.get(prefix + "-gamma20", "mmlu", ["a prompt"]) is None
    assert cache.get(prefix + "-gamma10", "mmlu", ["a prompt"]).tolist() == [0.1]
    assert cache.get(prefix + "-gamma10", "mmlu", ["another prompt"]) is None
