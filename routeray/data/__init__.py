"""Preference data: one schema for pairwise judgments and one for golden labels, importers, model tiers."""

from routeray.data.schema import GoldenLabel, Judgment, PreferenceData

__all__ = ["GoldenLabel", "Judgment", "PreferenceData"]
