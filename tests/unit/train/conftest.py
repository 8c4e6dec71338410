"""A small real slice of ../shared/data shared by the trainer tests, split by prompt."""

from __future__ import annotations

import pytest

from routeray.data import leave_sources_out, load_data_dir, split_by_prompt
from routeray.train.cli import subsample_prompts


@pytest.fixture(scope="module")
def real_slice(shared_data):
    # the sources these figures were measured on: the 2026-12 ones (RouterDC, 2023 Arena battles) would change
    # the 1,500-prompt sample (tests/unit/data/test_routerdc_arena.py covers them)
    data, _ = leave_sources_out(load_data_dir(shared_data), ["routerdc", "arena_battles"])
    data = subsample_prompts(data, 1500, seed=0)
    return split_by_prompt(data, 0.3, seed=1)
