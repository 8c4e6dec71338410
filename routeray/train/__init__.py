"""Trainers: one per learnable router, each ``train(data, out_dir, *, seed, config, progress) -> Artifact``."""

TRAINERS: dict[str, str] = {
    "mf": "routeray.train.mf:train",
    "knn": "routeray.train.knn:train",
    "sw_ranking": "routeray.train.sw_ranking:train",
    "bert": "routeray.train.bert:train",
    "causal_llm": "routeray.train.causal_llm:train",
}

__all__ = ["TRAINERS"]
