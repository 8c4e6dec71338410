"""The prefilter (routeray.routers.prefilter): a ridge estimate of a router's score on cheap features that
settles the routes far from the threshold; the shipped one agrees with the default mf it stands for."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from routeray.errors import ArtifactError
from routeray.paths import shared_data_dir
from routeray.routers.prefilter import FILE, Prefilter, load_prefilter
from routeray.routers.prompt_features import structure_features

WORDS = "apple river stone cloud number seven garden light paper window music table".split()


def _prompts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 60)))) + "?" for _ in range(n)]


def _sigmoid(z: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


def _length_score(prompts: list[str]) -> np.ndarray:
    return _sigmoid(-1.5 + 0.5 * structure_features(prompts)[:, 0])  # rises with log(1 + words)


def test_it_learns_a_score_its_features_carry_and_settles_only_outside_the_band() -> None:
    """The ridge fits the score's logit; the band is in logit units around the threshold's logit."""
    train, test = _prompts(400), _prompts(200, seed=1)
    pre = Prefilter.fit(_length_score(train), train, "fp", band=3.0, lam=0.01)
    est = pre.estimate(test)
    assert np.abs(est - _length_score(test)).max() < 0.01 and pre.residual_sd < 0.01
    assert ((est > 0) & (est < 1)).all()
    thr = float(np.median(est))
    margin = pre.band * pre.residual_sd
    t = np.log(thr / (1 - thr))
    assert pre.settle(float(_sigmoid(t + margin + 1e-6)), thr) is True
    assert pre.settle(float(_sigmoid(t - margin - 1e-6)), thr) is False
    assert pre.settle(float(_sigmoid(t + 0.5 * margin)), thr) is None
    assert pre.settle(float(_sigmoid(t - 0.5 * margin)), thr) is None


def test_it_round_trips_and_refuses_another_artifact(tmp_path) -> None:
    prompts = _prompts(200)
    pre = Prefilter.fit(_length_score(prompts), prompts, "fingerprint-a")
    pre.save(tmp_path)
    back = Prefilter.load(tmp_path, "fingerprint-a", band=2.0)
    np.testing.assert_allclose(back.estimate(prompts[:5]), pre.estimate(prompts[:5]))
    assert back.band == 2.0 and back.residual_sd == pre.residual_sd
    with pytest.raises(ArtifactError, match="another artifact"):
        Prefilter.load(tmp_path, "fingerprint-b")
    # a file of the earlier format (it estimated the score, not its logit) is refused with the way out
    with np.load(tmp_path / FILE) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    del meta["target"]
    np.savez(tmp_path / FILE, **{**arrays, "meta": np.asarray(json.dumps(meta))})
    with pytest.raises(ArtifactError, match="earlier format.*refit"):
        Prefilter.load(tmp_path, "fingerprint-a")
    # one fitted on another set of structure features (before the word-problem ones: no list, 13 features)
    meta["target"] = "logit"
    del meta["structure_features"]
    np.savez(tmp_path / FILE, **{**arrays, "meta": np.asarray(json.dumps(meta))})
    with pytest.raises(ArtifactError, match="13 prompt structure features.*refit it with"):
        Prefilter.load(tmp_path, "fingerprint-a")
    (tmp_path / FILE).unlink()
    with pytest.raises(ArtifactError, match="python -m routeray.routers.prefilter"):
        Prefilter.load(tmp_path, "fingerprint-a")


def test_the_shipped_prefilter_agrees_with_the_default_mf() -> None:
    """On eval-sample MMLU and GSM8K prompts (never distilled on), every route the shipped prefilter settles
    is the route the default mf's own score gives, at thresholds sending half and 30 % of them strong, and it
    settles a fair share of them (measured: 116 and 174 of 420; bench/prefilter.py measures more prompts)."""
    from routeray.routers.registry import load_router

    data = shared_data_dir() / "eval_sample"
    prompts = []
    for path in [data / "gsm8k" / "gsm8k_responses.csv", *sorted((data / "mmlu" / "responses").glob("*.csv"))]:
        with path.open(encoding="utf-8", newline="") as fh:
            prompts += [row["prompt"] for row in csv.DictReader(fh)][:60]
    router = load_router("mf")
    pre = load_prefilter("mf")
    full, est = router.score(prompts), pre.estimate(prompts)
    for share in (0.5, 0.3):
        thr = float(np.quantile(full, 1 - share))
        settled = [(pre.settle(e, thr), f >= thr) for e, f in zip(est, full, strict=True)]
        decided = [(s, f) for s, f in settled if s is not None]
        assert all(s == f for s, f in decided), share
        assert len(decided) >= 0.2 * len(prompts), (share, len(decided))


def test_saving_a_new_artifact_removes_the_prefilter_of_the_old_one(tmp_path) -> None:
    """Retraining into the same folder must not leave a prefilter that refuses to load (and so stops the
    gateway that turns it on when the folder has one)."""
    from routeray.artifacts import Artifact, save_artifact

    save_artifact(Artifact(router="random", config={"seed": 1}), tmp_path)
    prompts = _prompts(100)
    Prefilter.fit(_length_score(prompts), prompts, "old").save(tmp_path)
    assert (tmp_path / FILE).is_file()
    save_artifact(Artifact(router="random", config={"seed": 2}), tmp_path)
    assert not (tmp_path / FILE).exists()
