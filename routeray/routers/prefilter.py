"""A cheap first stage that settles the routes a router's full score would not change.

A route only depends on which side of the threshold a prompt's score falls, and most prompts sit far from
it. The prefilter is a ridge regression, distilled from a router's own scores (no labels), on features that
cost a fraction of a millisecond: the static embedder (``routeray/encoders/static.py``) and the prompt's
structure (``routeray/routers/prompt_features.py``), fitted to the score's logit (a router whose score is
moved by its prompt's structure on that scale, ``mf``'s ``route_boost``, is then fitted exactly in that part).
Where its estimate lies more than ``band`` residual standard deviations (logit units, measured on prompts held
out from the fit) from the threshold's logit, the estimate decides; otherwise the router scores the prompt as
usual. ``bench/prefilter.py`` measures the share of prompts it
settles and how often it agrees with the full score.

It is stored as ``prefilter.npz`` beside the router's artifact and refuses to load for another artifact
(it records the artifact's fingerprint) or another static table (it records the embedder's spec).

    python -m routeray.routers.prefilter --artifact routeray/default_artifacts/mf   # minutes: scores every prompt
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from routeray.artifacts import STALE_ON_SAVE
from routeray.errors import ArtifactError
from routeray.routers.base import logit, sigmoid

FILE = STALE_ON_SAVE  # "prefilter.npz"; save_artifact removes it when the artifact beside it is replaced
STATIC_SPEC: dict[str, Any] = {"kind": "static"}
TARGET = "logit"  # what the ridge predicts; recorded in the file, which an earlier format lacks


@dataclass
class Prefilter:
    """``estimate(prompts)`` approximates the router's score; ``settle(estimate, threshold)`` says whether
    that is enough to route (True: strong, False: weak) or the full score is needed (None)."""

    weights: np.ndarray  # (F,) on standardised features, the last one the intercept; predicts the score's logit
    mean: np.ndarray  # (F,)
    std: np.ndarray  # (F,)
    residual_sd: float
    embedder: dict[str, Any]
    artifact_fingerprint: str
    band: float = 3.0

    def __post_init__(self) -> None:
        from routeray.encoders.registry import make_embedder

        self._embedder = make_embedder(self.embedder)  # built once: estimate() runs on every routed request

    def features(self, prompts: Sequence[str]) -> np.ndarray:
        return (_raw_features(self._embedder, prompts) - self.mean) / self.std

    def estimate(self, prompts: Sequence[str]) -> np.ndarray:
        """The estimated scores, in (0, 1)."""
        return sigmoid(self.features(prompts) @ self.weights)

    def settle(self, estimate: float, threshold: float) -> bool | None:
        margin = self.band * self.residual_sd
        gap = float(logit(estimate) - logit(threshold))
        if gap >= margin:
            return True
        if gap < -margin:
            return False
        return None

    def save(self, artifact_dir: str | Path) -> Path:
        from routeray.routers.prompt_features import STRUCTURE_FEATURES

        path = Path(artifact_dir) / FILE
        meta = {"residual_sd": self.residual_sd, "embedder": self.embedder,
                "artifact_fingerprint": self.artifact_fingerprint, "band": self.band, "target": TARGET,
                "structure_features": list(STRUCTURE_FEATURES)}
        np.savez(path, weights=self.weights, mean=self.mean, std=self.std, meta=np.asarray(json.dumps(meta)))
        return path

    @classmethod
    def load(cls, artifact_dir: str | Path, artifact_fingerprint: str, band: float | None = None) -> Prefilter:
        path = Path(artifact_dir) / FILE
        if not path.is_file():
            raise ArtifactError(f"{artifact_dir} has no {FILE}: fit one with "
                                f"`python -m routeray.routers.prefilter --artifact {artifact_dir}`")
        from routeray.routers.prompt_features import INPUT_FEATURES, STRUCTURE_FEATURES

        with np.load(path) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("target") != TARGET:
                raise ArtifactError(f"{path} estimates the score itself (an earlier format; this routeray "
                                    f"estimates its logit): refit it with "
                                    f"`python -m routeray.routers.prefilter --artifact {artifact_dir}`")
            # a file without the list read the 13 features there were before the word-problem ones (2026-12-05)
            fitted_on = meta.get("structure_features", list(INPUT_FEATURES))
            if fitted_on != list(STRUCTURE_FEATURES):
                raise ArtifactError(f"{path} was fitted on {len(fitted_on)} prompt structure features and this "
                                    f"routeray computes {len(STRUCTURE_FEATURES)}: refit it with "
                                    f"`python -m routeray.routers.prefilter --artifact {artifact_dir}`")
            pre = cls(z["weights"], z["mean"], z["std"], float(meta["residual_sd"]), meta["embedder"],
                      meta["artifact_fingerprint"], float(meta["band"] if band is None else band))
        from routeray.encoders.registry import check_embedder

        check_embedder(pre._embedder, pre.embedder, path)
        if pre.artifact_fingerprint != artifact_fingerprint:
            raise ArtifactError(f"{path} was fitted for another artifact ({pre.artifact_fingerprint}, this one is "
                                f"{artifact_fingerprint}); refit it")
        return pre

    @classmethod
    def fit(cls, scores: np.ndarray, prompts: Sequence[str], artifact_fingerprint: str, *, lam: float = 10.0,
            band: float = 3.0, embedder: dict[str, Any] | None = None, seed: int = 0) -> Prefilter:
        """Ridge from the cheap features of ``prompts`` to the logit of the router's ``scores`` of them; the
        residual spread is measured on a fifth of the prompts left out of a first fit."""
        from routeray.encoders.registry import make_embedder

        spec = dict(embedder or STATIC_SPEC)
        emb_model = make_embedder(spec)
        raw = _raw_features(emb_model, prompts)
        mean, std = raw.mean(axis=0), raw.std(axis=0) + 1e-6
        mean[-1], std[-1] = 0.0, 1.0  # the intercept column stays 1
        z, y = (raw - mean) / std, logit(scores)
        order = np.random.default_rng(seed).permutation(len(y))
        cut = int(0.8 * len(y))
        first = _ridge(z[order[:cut]], y[order[:cut]], lam)
        residual_sd = float((y[order[cut:]] - z[order[cut:]] @ first).std())
        spec = getattr(emb_model, "spec", spec)
        return cls(_ridge(z, y, lam), mean, std, residual_sd, spec, artifact_fingerprint, band)


def load_prefilter(router: str, artifact: str | Path | None = None, band: float | None = None) -> Prefilter:
    """The prefilter beside a router's artifact (the default one when ``artifact`` is None), checked against
    that artifact and warmed up (the static table loads, or is built from MiniLM, now rather than on the first
    request)."""
    from routeray.artifacts import load_artifact, resolve_artifact_dir

    folder = resolve_artifact_dir(router, artifact)
    pre = Prefilter.load(folder, load_artifact(folder, expect_router=router).fingerprint, band)
    pre.estimate(["warm-up"])
    return pre


def _raw_features(embedder: Any, prompts: Sequence[str]) -> np.ndarray:
    """``[static embedding, structure features, 1]`` per prompt, before standardisation."""
    from routeray.routers.prompt_features import structure_features

    return np.hstack([embedder.embed(list(prompts)), structure_features(prompts), np.ones((len(prompts), 1))])


def _ridge(z: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    return np.linalg.solve(z.T @ z + lam * np.eye(z.shape[1]), z.T @ y)


def main(argv: Sequence[str] | None = None) -> None:
    from tqdm.auto import tqdm

    from routeray.artifacts import load_artifact
    from routeray.data import load_data_dir
    from routeray.paths import shared_data_dir
    from routeray.routers.registry import load_router

    p = argparse.ArgumentParser(description="Fit a router's prefilter (prefilter.npz beside its artifact).")
    p.add_argument("--artifact", required=True, type=Path)
    p.add_argument("--router", default="mf")
    p.add_argument("--data", type=Path, default=None, help="prompts to distil on (../shared/data by default)")
    p.add_argument("--band", type=float, default=3.0)
    args = p.parse_args(argv)
    prompts = load_data_dir(args.data or shared_data_dir()).prompts
    router = load_router(args.router, args.artifact)
    scores = np.concatenate([router.score(prompts[i:i + 256])
                             for i in tqdm(range(0, len(prompts), 256), desc="scoring prompts to distil")])
    pre = Prefilter.fit(scores, prompts, load_artifact(args.artifact).fingerprint, band=args.band)
    print(f"wrote {pre.save(args.artifact)}: residual sd {pre.residual_sd:.4f} against the score logits' sd "
          f"{logit(scores).std():.4f} ({len(prompts)} prompts)")


if __name__ == "__main__":
    main()
