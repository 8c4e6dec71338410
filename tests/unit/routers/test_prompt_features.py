"""Structure features of a prompt and the route boost built on them (routeray.routers.prompt_features)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from routeray.routers.prompt_features import (
    INPUT_FEATURES,
    STRUCTURE_FEATURES,
    ScoreBoost,
    boost_columns,
    structure_features,
)

WORD_PROBLEMS = [
    "Tom has 3 apples and buys 5 more. How many apples does he have?",
    "A train leaves at 9 am at 60 km/h and a second one at 10 am at 80 km/h from the same station along the same "
    "track. At what time does the second train catch up with the first, and how far from the station are they?",
    "Sara earns $12 an hour and works 7 hours a day for 5 days. How much does she earn?",
]
OTHERS = [
    "Write a short poem about the sea.",
    "Which planet is largest?\nA) Mars\nB) Jupiter\nC) Venus\nD) 4 of them",
    "def add(a, b):\n    return a + 2 * b\nWhat does add(1, 2) return?",
]


def column(name: str) -> int:
    return STRUCTURE_FEATURES.index(name)


def test_word_problem_marks_numbers_without_options_or_code() -> None:
    f = structure_features(WORD_PROBLEMS + OTHERS)
    assert f[:, column("word_problem")].tolist() == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    wp = f[:, column("word_problem_words")]
    np.testing.assert_allclose(wp[:3], f[:3, column("log_words")])
    assert (wp[3:] == 0).all()
    # mf's input is the first 13, unchanged, so artifacts trained before the gate read the same rows
    assert STRUCTURE_FEATURES[:len(INPUT_FEATURES)] == INPUT_FEATURES


def test_gated_boost_orders_word_problems_by_length_and_leaves_the_rest() -> None:
    prompts = WORD_PROBLEMS + OTHERS
    f = structure_features(prompts)
    boost = ScoreBoost.fit({"log_words|word_problem": 1.0}, f)
    assert boost is not None
    words = f[:3, column("log_words")]
    # standardised over the word problems only: their mean and spread
    assert boost.mean[0] == pytest.approx(words.mean()) and boost.std[0] == pytest.approx(words.std())
    base = np.full(len(prompts), 0.4)
    moved = boost.apply(base, prompts, f)
    np.testing.assert_allclose(moved[3:], base[3:])  # not a word problem: not moved
    z = (words - words.mean()) / words.std()
    np.testing.assert_allclose(moved[:3], 1 / (1 + np.exp(-(math.log(0.4 / 0.6) + z))))
    assert moved[0] < moved[2] < moved[1]  # the longest word problem first

    # served from an artifact, the same numbers
    cfg, tensors = boost.to_artifact()
    again = ScoreBoost.from_artifact(cfg, tensors)
    assert again is not None
    np.testing.assert_allclose(again.apply(base, prompts), moved, atol=1e-6)

    # an ungated term beside it is standardised over every prompt
    both = ScoreBoost.fit({"log_words|word_problem": 1.0, "log_numbers": 0.5}, f)
    assert both is not None and list(both.weights) == ["log_numbers", "log_words|word_problem"]  # name order
    assert both.mean[0] == pytest.approx(f[:, column("log_numbers")].mean())
    assert both.mean[1] == pytest.approx(words.mean())


def test_boost_names_are_checked() -> None:
    assert boost_columns(["log_numbers", "log_words|word_problem"]) == (
        [column("log_numbers"), column("log_words")], [None, column("word_problem")])
    for bad in (["nope"], ["log_words|nope"], ["nope|word_problem"]):
        with pytest.raises(ValueError, match="unknown prompt feature"):
            boost_columns(bad)
    # no training prompt passes the gate: the gated term is left out, the rest kept
    f = structure_features(OTHERS)
    assert ScoreBoost.fit({"log_words|word_problem": 1.0}, f) is None
    rest = ScoreBoost.fit({"log_words|word_problem": 1.0, "log_numbers": 0.5}, f)
    assert rest is not None and rest.weights == {"log_numbers": 0.5}
