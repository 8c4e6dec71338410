"""Train/validation splits that keep every record of one prompt on the same side."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from routeray.data.schema import PreferenceData

logger = logging.getLogger(__name__)


def split_by_prompt(data: PreferenceData, val_fraction: float, seed: int = 0) -> tuple[PreferenceData, PreferenceData]:
    """Random split by prompt text: round(val_fraction * n_prompts) prompts go to validation.

    Deterministic for a given data set and seed (prompts are sorted before shuffling).
    """
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    prompts = data.prompts
    rng = np.random.default_rng(seed)
    n_val = int(round(val_fraction * len(prompts)))
    val_idx = rng.permutation(len(prompts))[:n_val]
    val_prompts = {prompts[i] for i in val_idx}
    return _partition(data, lambda prompt, _source: prompt in val_prompts)


def _matches(source: str, prefix: str) -> bool:
    prefix = prefix.rstrip("/")
    return source == prefix or source.startswith(prefix + "/")


def leave_source_out(data: PreferenceData, source_prefix: str) -> tuple[PreferenceData, PreferenceData]:
    """(train, heldout): heldout holds every record whose source is ``source_prefix`` or under it
    (``routerbench`` matches ``routerbench/mbpp``); train holds the rest, minus any record whose prompt
    text also appears in heldout (so the held-out prompts are truly unseen)."""
    held_prompts = {j.prompt for j in data.judgments if _matches(j.source, source_prefix)}
    held_prompts |= {g.prompt for g in data.golden if _matches(g.source, source_prefix)}
    if not held_prompts:
        raise ValueError(f"no records with source {source_prefix!r}; sources are {data.sources}")
    train, held = _partition(data, lambda _prompt, source: _matches(source, source_prefix))
    before = len(train.judgments) + len(train.golden)
    train = PreferenceData(
        judgments=[j for j in train.judgments if j.prompt not in held_prompts],
        golden=[g for g in train.golden if g.prompt not in held_prompts],
    )
    removed = before - len(train.judgments) - len(train.golden)
    if removed:
        logger.info("leave_source_out(%s): dropped %d training records sharing a held-out prompt",
                    source_prefix, removed)
    return train, held


# Families of sources for leave-one-family-out evaluation: a router must also carry over to a whole kind of
# prompt it never saw (all maths, all multiple choice, all open chat, all code), not only to one more source
# of a kind it knows. A source may sit in two families (MMLU-Pro maths is maths and multiple choice).
SOURCE_FAMILIES: dict[str, tuple[str, ...]] = {
    "math": ("mmlu_pro/math", "routerdc/gsm8k"),
    "multiple_choice": ("mmlu_pro", "routerbench/arc_challenge", "routerbench/winograde", "routerdc/arc_easy",
                        "routerdc/arc_challenge"),
    "open_chat": ("arena_bench", "alpaca_eval", "arena_battles", "arena_55k"),
    "code": ("routerbench/mbpp",),
}


def present_prefixes(data: PreferenceData, prefixes: Sequence[str]) -> list[str]:
    """The ``prefixes`` that name a source of ``data`` or a source under it (``routerbench`` names
    ``routerbench/mbpp``)."""
    return [p for p in prefixes if any(_matches(s, p) for s in data.sources)]


def leave_sources_out(data: PreferenceData, prefixes: tuple[str, ...] | list[str]) -> tuple[PreferenceData,
                                                                                             PreferenceData]:
    """:func:`leave_source_out` for several sources at once (a family): every record under any of
    ``prefixes`` is held out, with every training record sharing one of their prompts."""
    present = present_prefixes(data, prefixes)
    if not present:
        raise ValueError(f"none of the sources {list(prefixes)} is in the data; sources are {data.sources}")
    held_prompts = {j.prompt for j in data.judgments if any(_matches(j.source, p) for p in present)}
    held_prompts |= {g.prompt for g in data.golden if any(_matches(g.source, p) for p in present)}
    train, held = _partition(data, lambda _prompt, source: any(_matches(source, p) for p in present))
    train = PreferenceData(judgments=[j for j in train.judgments if j.prompt not in held_prompts],
                           golden=[g for g in train.golden if g.prompt not in held_prompts])
    return train, held


def _partition(data: PreferenceData,
               to_second: Callable[[str, str], bool]) -> tuple[PreferenceData, PreferenceData]:
    """Records for which ``to_second(prompt, source)`` holds go to the second part."""
    first, second = PreferenceData(), PreferenceData()
    for j in data.judgments:
        (second if to_second(j.prompt, j.source) else first).judgments.append(j)
    for g in data.golden:
        (second if to_second(g.prompt, g.source) else first).golden.append(g)
    return first, second
