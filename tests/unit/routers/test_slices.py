"""Small real slices of ../shared/data for the neural routers' tests (bert and causal_llm share them).

The slice is MMLU-Pro golden labels (gpt-4o vs Mixtral) from four categories where the strong model's
advantage differs a lot (chemistry and math large, biology and psychology small), split BY PROMPT into a
training part and a held-out part. A router that learns nothing lands inside the random router's interval.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from routeray.data import load_data_dir
from routeray.data.schema import PreferenceData

STRONG = "gpt-4o-2024-05-13"
WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
SLICE_SOURCES = ["mmlu_pro/chemistry", "mmlu_pro/math", "mmlu_pro/biology", "mmlu_pro/psychology"]


def _subset(data: PreferenceData, prompts: set[str]) -> PreferenceData:
    return PreferenceData([j for j in data.judgments if j.prompt in prompts],
                          [g for g in data.golden if g.prompt in prompts])


def mmlu_pro_slice(data_dir: Path, n_train: int, n_heldout: int, seed: int = 0
                   ) -> tuple[PreferenceData, list[str], np.ndarray, np.ndarray]:
    """``(train data, held-out prompts, strong quality, weak quality)``; prompts disjoint by construction."""
    data = load_data_dir(data_dir, sources=SLICE_SOURCES)
    prompts = data.prompts
    order = np.random.default_rng(seed).permutation(len(prompts))
    train_prompts = {prompts[i] for i in order[:n_train]}
    held = [prompts[i] for i in order[n_train:n_train + n_heldout]]
    quality: dict[str, dict[str, float]] = {}
    for g in data.golden:
        quality.setdefault(g.prompt, {})[g.model] = g.score
    sq = np.array([quality[p][STRONG] for p in held])
    wq = np.array([quality[p][WEAK] for p in held])
    return _subset(data, train_prompts), held, sq, wq


def test_slice_is_split_by_prompt(shared_data: Path) -> None:
    train, held, sq, wq = mmlu_pro_slice(shared_data, 50, 30)
    assert len(train.prompts) == 50 and len(held) == 30
    assert not set(train.prompts) & set(held)
    assert {g.model for g in train.golden} == {STRONG, WEAK}
    assert sq.shape == wq.shape == (30,)
