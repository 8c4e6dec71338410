"""Preference data: one schema for pairwise judgments and one for golden labels, importers, model tiers."""

from routeray.data.alpaca_eval import read_alpaca_eval
from routeray.data.arena_55k import read_arena_55k_csv
from routeray.data.arena_battles import read_arena_battles
from routeray.data.arena_bench import read_arena_bench
from routeray.data.golden import golden_to_judgments
from routeray.data.loader import load_data_dir
from routeray.data.mmlu_pro import read_mmlu_pro
from routeray.data.models import canonical_model
from routeray.data.mt_bench import read_mt_bench
from routeray.data.routellm_eval import read_routellm_eval_csv
from routeray.data.routerbench import read_routerbench_csv
from routeray.data.routerdc import read_routerdc
from routeray.data.schema import MIN_PROMPT_CHARS, GoldenLabel, Judgment, PreferenceData
from routeray.data.splits import SOURCE_FAMILIES, leave_source_out, leave_sources_out, split_by_prompt
from routeray.data.tiers import TierMap, assign_tiers, fit_ratings, fit_tier_map

__all__ = [
    "MIN_PROMPT_CHARS",
    "SOURCE_FAMILIES",
    "GoldenLabel",
    "Judgment",
    "PreferenceData",
    "TierMap",
    "assign_tiers",
    "canonical_model",
    "fit_ratings",
    "fit_tier_map",
    "golden_to_judgments",
    "leave_source_out",
    "leave_sources_out",
    "load_data_dir",
    "read_alpaca_eval",
    "read_arena_55k_csv",
    "read_arena_battles",
    "read_arena_bench",
    "read_mmlu_pro",
    "read_mt_bench",
    "read_routellm_eval_csv",
    "read_routerbench_csv",
    "read_routerdc",
    "split_by_prompt",
]
