"""Hand-made features of a prompt's structure: length, numbers, maths and code markers, answer options,
questions and instructions asked, and whether the prompt is a word problem. Cheap (pure Python, microseconds
per prompt), no training, no model.

:func:`structure_features` returns one row per prompt in the order of :data:`STRUCTURE_FEATURES`.
Counts enter as ``log(1 + n)`` so one very long prompt does not dominate a linear model.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from routeray.routers.base import logit, sigmoid

log = logging.getLogger(__name__)

_NUMBER = re.compile(r"(?<![A-Za-z_])[-+]?\$?\d[\d,]*(?:\.\d+)?%?")
_MATH = re.compile(r"[=<>^√∑∏∫±≤≥×÷]|\\frac|\\sqrt|\\int|\\sum|\$[^$\n]+\$|\b(?:sin|cos|tan|log|ln|lim)\b")
_OPERATOR = re.compile(r"\d\s*[-+*/×÷]\s*\d")
_CODE = re.compile(r"```|\bdef |\bclass |\breturn\b|\bimport |#include|\bfunction\b|=>|\bSELECT\b|[{};]\s*$",
                   re.MULTILINE)
_OPTION = re.compile(r"^\s*\(?[A-Ja-j][).:]\s+\S", re.MULTILINE)
_WORD = re.compile(r"\w+")
_SENTENCE = re.compile(r"[.!?](?:\s|$)")
_INSTRUCTION = re.compile(r"\b(?:step[- ]by[- ]step|explain|prove|derive|calculate|compute|solve|show that|"
                          r"justify|analy[sz]e|compare|implement|write|design|optimi[sz]e)\b", re.IGNORECASE)

# the features mf reads as input beside the embedding (train/mf.py's default ``prompt_features``)
INPUT_FEATURES = (
    "log_words", "log_chars", "log_numbers", "number_density", "log_math", "log_operators", "log_code",
    "options", "log_questions", "log_instructions", "log_lines", "log_sentences", "non_ascii",
)
# and two for gating a route boost: ``word_problem`` is 1 for a prompt with numbers in it and neither answer
# options nor code (GSM8K's kind), ``word_problem_words`` its log_words there and 0 elsewhere, so that a boost
# gated to word problems (``"log_words|word_problem"``) is linear in the features (the prefilter fits it exactly)
STRUCTURE_FEATURES = (*INPUT_FEATURES, "word_problem", "word_problem_words")


def _log(n: int) -> float:
    return math.log1p(n)


def prompt_structure(text: str) -> list[float]:
    """The :data:`STRUCTURE_FEATURES` of one prompt."""
    words = len(_WORD.findall(text))
    numbers = len(_NUMBER.findall(text))
    non_ascii = sum(1 for ch in text if ord(ch) > 127) / max(len(text), 1)
    code = len(_CODE.findall(text))
    options = min(len(_OPTION.findall(text)), 10)
    word_problem = float(numbers > 0 and not options and not code)
    return [
        _log(words), _log(len(text)), _log(numbers), numbers / max(words, 1),
        _log(len(_MATH.findall(text))), _log(len(_OPERATOR.findall(text))), _log(code),
        float(options), _log(text.count("?")), _log(len(_INSTRUCTION.findall(text))),
        _log(text.count("\n")), _log(len(_SENTENCE.findall(text))), non_ascii,
        word_problem, word_problem * _log(words),
    ]


def feature_columns(names: Sequence[str]) -> list[int]:
    """The columns of :func:`structure_features` holding ``names``; ValueError on an unknown name."""
    unknown = [n for n in names if n not in STRUCTURE_FEATURES]
    if unknown:
        raise ValueError(f"unknown prompt feature(s) {unknown}; known: {', '.join(STRUCTURE_FEATURES)}")
    return [STRUCTURE_FEATURES.index(n) for n in names]


def boost_columns(names: Sequence[str]) -> tuple[list[int], list[int | None]]:
    """For route-boost terms ``feature`` or ``feature|gate``: each term's feature column and its gate's column
    (None: ungated); ValueError on an unknown name."""
    parts = [name.partition("|") for name in names]
    cols = feature_columns([f for f, _, _ in parts])
    gates = feature_columns([g for _, _, g in parts if g])
    it = iter(gates)
    return cols, [next(it) if g else None for _, _, g in parts]


def structure_features(prompts: Sequence[str]) -> np.ndarray:
    """``(n, len(STRUCTURE_FEATURES))`` float64 features of each prompt."""
    return np.asarray([prompt_structure(p) for p in prompts], dtype=np.float64).reshape(len(prompts),
                                                                                        len(STRUCTURE_FEATURES))


class FeatureInput:
    """Structure features appended to a prompt embedding as extra input dimensions of a linear router
    (``mf``): each feature standardised on the training prompts, then multiplied by ``scale`` so that it
    weighs against the embedding's unit-norm dimensions as the trainer selected."""

    def __init__(self, names: Sequence[str], mean: np.ndarray, std: np.ndarray, scale: float):
        self.names = tuple(names)
        self._cols = feature_columns(self.names)
        self.mean = np.asarray(mean, dtype=np.float64).reshape(len(self.names))
        self.std = np.maximum(np.asarray(std, dtype=np.float64).reshape(len(self.names)), 1e-6)
        self.scale = float(scale)

    @classmethod
    def fit(cls, prompts: Sequence[str], names: Sequence[str], scale: float,
            features: np.ndarray | None = None) -> FeatureInput:
        """Standardisation from ``prompts`` (or their precomputed :func:`structure_features`)."""
        f = structure_features(prompts) if features is None else features
        cols = feature_columns(names)
        return cls(names, f[:, cols].mean(axis=0), f[:, cols].std(axis=0), scale)

    def transform(self, prompts: Sequence[str], features: np.ndarray | None = None) -> np.ndarray:
        """``(n, len(names))`` scaled, standardised features (from precomputed ``features`` when given)."""
        f = structure_features(prompts) if features is None else features
        return self.scale * (f[:, self._cols] - self.mean) / self.std

    def append(self, emb: np.ndarray, prompts: Sequence[str], features: np.ndarray | None = None) -> np.ndarray:
        """The router's input rows: ``[embedding, scaled features]``."""
        return np.hstack([np.asarray(emb, dtype=np.float64), self.transform(prompts, features)])

    def to_artifact(self) -> tuple[dict[str, object], dict[str, np.ndarray]]:
        """Config entries and tensors that :meth:`from_artifact` reads back."""
        return ({"prompt_features": list(self.names), "feature_scale": self.scale},
                {"feature_mean": self.mean.astype(np.float32), "feature_std": self.std.astype(np.float32)})

    @classmethod
    def from_artifact(cls, config: dict, tensors: dict) -> FeatureInput | None:
        """The artifact's feature input, or None when it reads the embedding alone."""
        names = config.get("prompt_features") or []
        if not names or not float(config.get("feature_scale", 0.0)):
            return None
        return cls(names, tensors["feature_mean"], tensors["feature_std"], float(config["feature_scale"]))


class ScoreBoost:
    """A router's score moved on the logit scale by weighted, standardised structure features:
    ``σ(logit(score) + Σ_j w_j g_j (f_j − μ_j) / σ_j)``. A term named ``feature`` is standardised over all
    training prompts (``g_j = 1``); one named ``feature|gate`` only over those where the gate feature is
    positive, and is 0 elsewhere (``g_j`` = the gate): ``"log_words|word_problem"`` orders word problems by
    length, 1 logit per standard deviation of their lengths, and leaves every other prompt where it was.

    Within one benchmark an embedding router's scores can be nearly flat (GSM8K: every prompt is a word
    problem), where what still separates the prompts is their structure: on the held-out MMLU-Pro and
    RouterDC sets, the questions with more numbers in them are the ones the strong model wins. The weights are
    selected on held-out folds (``routeray train mf``'s grid ``route_boost``; docs/evaluation.md)."""

    def __init__(self, weights: Mapping[str, float], mean: np.ndarray, std: np.ndarray):
        """``mean`` and ``std`` line up with ``weights``' order. The terms are kept in name order (their
        statistics moved with them), the order the artifact's JSON config, written with sorted keys, reads back in."""
        names = list(weights)
        order = sorted(range(len(names)), key=names.__getitem__)
        self.weights = {names[i]: float(weights[names[i]]) for i in order}
        self._cols, self._gates = boost_columns(list(self.weights))
        self._w = np.asarray(list(self.weights.values()), dtype=np.float64)
        self.mean = np.asarray(mean, dtype=np.float64).reshape(len(names))[order]
        self.std = np.maximum(np.asarray(std, dtype=np.float64).reshape(len(names))[order], 1e-6)

    @classmethod
    def fit(cls, weights: Mapping[str, float], features: np.ndarray) -> ScoreBoost | None:
        """Standardisation from the training prompts' :func:`structure_features` (a gated term's from the
        prompts its gate holds for; a gated term whose gate holds for none of them is left out, with a warning);
        None when no term is left."""
        weights = {n: float(w) for n, w in weights.items() if float(w)}
        cols, gates = boost_columns(list(weights))
        kept: dict[str, float] = {}
        mean, std = [], []
        for (name, w), col, gate in zip(weights.items(), cols, gates, strict=True):
            values = features[:, col] if gate is None else features[features[:, gate] > 0, col]
            if not len(values):
                log.warning("route boost term %r left out: no training prompt passes its gate", name)
                continue
            kept[name] = w
            mean.append(values.mean())
            std.append(values.std())
        return cls(kept, np.asarray(mean), np.asarray(std)) if kept else None

    def apply(self, scores: np.ndarray, prompts: Sequence[str], features: np.ndarray | None = None) -> np.ndarray:
        """The boosted scores, still in (0, 1) and in the same order wherever the features tie."""
        f = structure_features(prompts) if features is None else features
        z = (f[:, self._cols] - self.mean) / self.std
        for j, gate in enumerate(self._gates):
            if gate is not None:
                z[:, j] *= f[:, gate] > 0
        return sigmoid(logit(scores) + z @ self._w)

    def to_artifact(self) -> tuple[dict[str, object], dict[str, np.ndarray]]:
        """Config entries and tensors that :meth:`from_artifact` reads back."""
        return ({"route_boost": dict(self.weights)},
                {"boost_mean": self.mean.astype(np.float32), "boost_std": self.std.astype(np.float32)})

    @classmethod
    def from_artifact(cls, config: Mapping[str, Any], tensors: Mapping[str, np.ndarray]) -> ScoreBoost | None:
        """The artifact's boost, or None when it has none."""
        weights = config.get("route_boost") or {}
        if not weights:
            return None
        return cls(weights, tensors["boost_mean"], tensors["boost_std"])
