"""What every trainer shares: configuration, judgments as arrays, source weighting, prompt embeddings,
and validation on golden labels (APGR against the random router's interval)."""

from __future__ import annotations

import itertools
import json
import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from routeray.data.models import DEFAULT_STRONG, DEFAULT_WEAK
from routeray.data.schema import GoldenLabel, Judgment, PreferenceData
from routeray.errors import DataError, RouterayError

log = logging.getLogger(__name__)

BALANCE_MODES = ("none", "prompt", "equal")

# What the embedding routers' trainers start from: the pair, the encoder (None: the local MiniLM) and names
# of models the data lacks, mapped to ones it has.
PAIR_DEFAULTS: dict[str, Any] = {
    "strong_model": DEFAULT_STRONG,
    "weak_model": DEFAULT_WEAK,
    "embedder": None,
    "model_aliases": {"gpt-4o": "gpt-4o-2024-05-13", "gpt-4": "gpt-4-0314", "gpt-3.5": "gpt-3.5-turbo-1106"},
}

# score_fn(prompts, strong_model, weak_model) -> P(strong wins) per prompt
ScoreFn = Callable[[Sequence[str], str, str], np.ndarray]


def source_group(source: str) -> str:
    """``routerbench/mbpp`` -> ``routerbench``; ``mmlu_pro/math`` -> ``mmlu_pro``."""
    return source.split("/", 1)[0]


def merge_config(defaults: Mapping[str, Any], given: Mapping[str, Any] | None, router: str) -> dict[str, Any]:
    """Defaults updated with ``given``; an unknown key is an error naming the known ones."""
    out = dict(defaults)
    for key, value in (given or {}).items():
        if key not in defaults:
            raise RouterayError(f"unknown {router} hyper-parameter {key!r}; known: {', '.join(sorted(defaults))}")
        out[key] = value
    return out


def seed_everything(seed: int) -> None:
    """Fix every random generator a trainer may touch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    torch.manual_seed(seed)


def parse_value(text: str) -> Any:
    """A ``--set`` value: JSON when it parses (numbers, lists, dicts, true/false), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def load_config(path: str | Path | None, sets: Sequence[str] = ()) -> dict[str, Any]:
    """Hyper-parameters from a JSON/YAML file, then ``KEY=VALUE`` overrides."""
    config: dict[str, Any] = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise DataError("config file not found", p)
        text = p.read_text()
        try:
            if p.suffix in (".yaml", ".yml"):
                import yaml

                loaded = yaml.safe_load(text)
            else:
                loaded = json.loads(text)
        except Exception as exc:  # yaml and json raise different types
            raise DataError(f"cannot parse config: {exc}", p) from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise DataError("config must be a mapping of hyper-parameter names to values", p)
        config.update(loaded or {})
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RouterayError(f"--set expects KEY=VALUE, got {item!r}")
        config[key.strip()] = parse_value(value.strip())
    return config


@dataclass
class JudgmentTable:
    """Judgments as arrays over a list of unique prompts and a list of models."""

    prompts: list[str]
    models: list[str]
    prompt_idx: np.ndarray  # int64 (J,)
    a_idx: np.ndarray  # int64 (J,)
    b_idx: np.ndarray  # int64 (J,)
    p_a: np.ndarray  # float32 (J,)
    weight: np.ndarray  # float32 (J,)
    group: np.ndarray  # object (J,) source group per judgment

    def __len__(self) -> int:
        return int(self.p_a.size)


def all_judgments(data: PreferenceData) -> list[Judgment]:
    """Pairwise judgments plus golden labels turned into judgments over every labelled model pair."""
    from routeray.data import golden_to_judgments

    out = list(data.judgments)
    if data.golden:
        out.extend(golden_to_judgments(data.golden))
    return out


def build_table(judgments: Sequence[Judgment], *, models: Sequence[str] | None = None,
                balance: str = "prompt", source_weights: Mapping[str, float] | None = None) -> JudgmentTable:
    """Index judgments and weight them by source.

    ``balance``: ``none`` keeps each judgment's weight; ``prompt`` gives each source group a total weight
    equal to its number of prompts (so a source with many judgments per prompt does not drown one with a
    single judgment per prompt); ``equal`` gives every source group the same total weight.
    ``source_weights`` multiplies a group's weight (key: ``routerbench`` or a full source name).
    """
    if balance not in BALANCE_MODES:
        raise RouterayError(f"balance must be one of {BALANCE_MODES}, got {balance!r}")
    if not judgments:
        raise DataError("no judgments to train on (is the data directory empty?)")
    model_list = list(models) if models is not None else sorted(
        {j.model_a for j in judgments} | {j.model_b for j in judgments})
    model_pos = {m: i for i, m in enumerate(model_list)}
    prompt_pos: dict[str, int] = {}
    n = len(judgments)
    pi = np.empty(n, dtype=np.int64)
    ai = np.empty(n, dtype=np.int64)
    bi = np.empty(n, dtype=np.int64)
    pa = np.empty(n, dtype=np.float32)
    w = np.empty(n, dtype=np.float32)
    groups = np.empty(n, dtype=object)
    keep = np.ones(n, dtype=bool)
    for k, j in enumerate(judgments):
        if j.model_a not in model_pos or j.model_b not in model_pos or j.model_a == j.model_b:
            keep[k] = False
            continue
        pi[k] = prompt_pos.setdefault(j.prompt, len(prompt_pos))
        ai[k], bi[k] = model_pos[j.model_a], model_pos[j.model_b]
        pa[k], w[k] = j.p_a, j.weight
        groups[k] = source_group(j.source)
    pi, ai, bi, pa, w, groups = pi[keep], ai[keep], bi[keep], pa[keep], w[keep], groups[keep]
    sw = dict(source_weights or {})
    for g in sorted(set(groups)):
        mask = groups == g
        total = float(w[mask].sum())
        if total <= 0:
            continue
        n_prompts = len(np.unique(pi[mask]))
        if balance == "prompt":
            w[mask] *= n_prompts / total
        elif balance == "equal":
            w[mask] *= 1000.0 / total
        w[mask] *= float(sw.get(g, 1.0))
    # A full source name in source_weights (e.g. "routerbench/mbpp") refines its group's weight.
    for name, factor in sw.items():
        if "/" in name:
            src = np.asarray([j.source for j, k in zip(judgments, keep, strict=True) if k], dtype=object)
            w[src == name] *= float(factor)
    prompts = [""] * len(prompt_pos)
    for p, i in prompt_pos.items():
        prompts[i] = p
    return JudgmentTable(prompts, model_list, pi, ai, bi, pa, w, groups)


def embed_texts(texts: Sequence[str], spec: Mapping[str, Any] | None, *, progress: bool = True,
                desc: str = "embedding prompts") -> tuple[np.ndarray, dict[str, Any]]:
    """Embeddings (float32, unit rows) through the on-disk cache, and the embedder's spec."""
    from routeray.encoders.cache import EmbeddingCache
    from routeray.encoders.registry import make_embedder

    embedder = make_embedder(dict(spec) if spec else None)
    cache = EmbeddingCache(embedder)
    return cache.embed(list(texts), progress=progress, desc=desc), dict(embedder.spec)


def cached_embedder(spec: Mapping[str, Any] | None) -> Any:
    """An embedder that reads and fills the on-disk cache: for evaluating on datasets seen before."""
    from routeray.encoders.base import Embedder
    from routeray.encoders.cache import EmbeddingCache
    from routeray.encoders.registry import make_embedder

    class _Cached(Embedder):
        def __init__(self) -> None:
            self.cache = EmbeddingCache(make_embedder(dict(spec) if spec else None))

        @property
        def spec(self) -> dict[str, Any]:
            return self.cache.embedder.spec

        def embed(self, texts: Sequence[str]) -> np.ndarray:
            return self.cache.embed(list(texts))

    return _Cached()


@dataclass
class EvalSet:
    """Golden labels of one source group for one (strong, weak) pair, aligned by prompt."""

    group: str
    strong: str
    weak: str
    prompts: list[str]
    strong_q: np.ndarray
    weak_q: np.ndarray


def golden_eval_sets(golden: Sequence[GoldenLabel], strong: str = DEFAULT_STRONG, weak: str = DEFAULT_WEAK,
                     min_prompts: int = 10) -> list[EvalSet]:
    """Per source group, the prompts on which both models are labelled.

    Where a group lacks the configured strong (weak) model, its best (worst) labelled model stands in,
    e.g. MMLU-Pro has gpt-4o rather than gpt-4-1106-preview.
    """
    by_group: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(dict))
    for g in golden:
        by_group[source_group(g.source)][g.model].setdefault(g.prompt, []).append(g.score)
    out: list[EvalSet] = []
    for group in sorted(by_group):
        per_model = by_group[group]
        means = {m: float(np.mean([np.mean(v) for v in d.values()])) for m, d in per_model.items()}
        s = strong if strong in per_model else max(means, key=means.__getitem__)
        w = weak if weak in per_model else min(means, key=means.__getitem__)
        if s == w:
            continue
        prompts = sorted(set(per_model[s]) & set(per_model[w]))
        if len(prompts) < min_prompts:
            continue
        sq = np.asarray([np.mean(per_model[s][p]) for p in prompts])
        wq = np.asarray([np.mean(per_model[w][p]) for p in prompts])
        if sq.mean() == wq.mean():
            continue
        out.append(EvalSet(group, s, w, prompts, sq, wq))
    return out


def evaluate_sets(score_fn: ScoreFn, sets: Sequence[EvalSet], n_seeds: int = 50) -> dict[str, Any]:
    """APGR of ``score_fn`` per eval set beside the random router's mean and 95 % interval."""
    from routeray.evaluate.metrics import apgr, random_baseline

    per: dict[str, Any] = {}
    for es in sets:
        scores = np.asarray(score_fn(es.prompts, es.strong, es.weak), dtype=np.float64)
        rb = random_baseline(es.strong_q, es.weak_q, n_seeds=n_seeds, n_points=None)
        per[es.group] = {
            "apgr": apgr(scores, es.strong_q, es.weak_q),
            "random_apgr": rb.apgr,
            "random_apgr_ci": list(rb.apgr_ci),
            "n_prompts": len(es.prompts),
            "strong": es.strong,
            "weak": es.weak,
        }
    mean = float(np.mean([v["apgr"] for v in per.values()])) if per else float("nan")
    return {"mean_apgr": mean, "per_source": per}


@dataclass
class Fold:
    """One leave-one-source-out fold: train on everything but ``holdout``, evaluate on its golden labels."""

    holdout: str
    train: PreferenceData
    eval_sets: list[EvalSet]


def source_folds(data: PreferenceData, holdouts: str | Sequence[str], strong: str = DEFAULT_STRONG,
                 weak: str = DEFAULT_WEAK, min_prompts: int = 200) -> list[Fold]:
    """Leave-one-source-out folds for model selection.

    A random prompt split rewards knowing which source a prompt came from (bench/quality_probe.md, section
    2); inside one held-out source that shortcut is a constant, so only real prompt understanding scores.
    ``holdouts="auto"``: every full source name (``mmlu_pro/math``…) that labels the weak model and whose
    golden labels give an eval set of at least ``min_prompts`` prompts for the pair; otherwise the given
    source names or prefixes.
    """
    from routeray.data import leave_source_out

    if isinstance(holdouts, str):
        if holdouts != "auto":
            raise RouterayError(f"selection_holdouts must be 'auto' or a list of sources, got {holdouts!r}")
        by_source: dict[str, list[GoldenLabel]] = defaultdict(list)
        for g in data.golden:
            by_source[g.source].append(g)
        # Only sources that label the weak model: elsewhere (RouterDC's seven 7B models) the stand-in pair
        # would measure another routing problem than the one the router is selected for.
        holdouts = [s for s in sorted(by_source) if any(g.model == weak for g in by_source[s])
                    and golden_eval_sets(by_source[s], strong, weak, min_prompts=min_prompts)]
    folds = []
    for source in holdouts:
        train, held = leave_source_out(data, source)
        sets = golden_eval_sets(held.golden, strong, weak, min_prompts=1)
        if sets and (train.golden or train.judgments):
            folds.append(Fold(source, train, sets))
    return folds


def family_folds(data: PreferenceData, families: str | Sequence[str], strong: str = DEFAULT_STRONG,
                 weak: str = DEFAULT_WEAK) -> list[Fold]:
    """One fold per family of sources held out at once (:data:`routeray.data.SOURCE_FAMILIES`; ``"all"`` for
    every family): a harder test than one source out, since no source of the held-out kind is trained on."""
    from routeray.data import SOURCE_FAMILIES, leave_sources_out
    from routeray.data.splits import present_prefixes

    names = list(SOURCE_FAMILIES) if families == "all" else list(families)
    unknown = [n for n in names if n not in SOURCE_FAMILIES]
    if unknown:
        raise RouterayError(f"selection_families: unknown famil{'ies' if len(unknown) > 1 else 'y'} {unknown}; "
                            f"known: {', '.join(SOURCE_FAMILIES)}")
    folds = []
    for name in names:
        if not present_prefixes(data, SOURCE_FAMILIES[name]):
            continue  # no source of this family in the data: nothing to hold out
        train, held = leave_sources_out(data, SOURCE_FAMILIES[name])
        sets = golden_eval_sets(held.golden, strong, weak)
        if sets and (train.golden or train.judgments):
            folds.append(Fold(f"family:{name}", train, sets))
    return folds


def fold_summary(per_fold: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``evaluate_sets`` results of several folds as one ``{"mean_apgr", "per_source"}`` keyed by fold."""
    per = {name if len(r["per_source"]) == 1 else f"{name}/{group}": v
           for name, r in per_fold.items() for group, v in r["per_source"].items()}
    mean = float(np.mean([v["apgr"] for v in per.values()])) if per else float("nan")
    return {"mean_apgr": mean, "per_source": per}


def training_config(defaults: Mapping[str, Any], given: Mapping[str, Any] | None, router: str,
                    seed: int) -> dict[str, Any]:
    """A trainer's start: its hyper-parameters (:func:`merge_config`) with every generator seeded."""
    cfg = merge_config(defaults, given, router)
    seed_everything(seed)
    return cfg


def embedded_rows(texts: Sequence[str], spec: Mapping[str, Any] | None, *, progress: bool = True
                  ) -> tuple[Callable[[Sequence[str]], np.ndarray], dict[str, Any]]:
    """Embed ``texts`` once (:func:`embed_texts`); returns ``rows(prompts)``, their embeddings in the order
    asked, and the embedder's spec."""
    unique = list(dict.fromkeys(texts))
    emb, embedder_spec = embed_texts(unique, spec, progress=progress)
    index = {t: i for i, t in enumerate(unique)}

    def rows(prompts: Sequence[str]) -> np.ndarray:
        return emb[[index[p] for p in prompts]]

    return rows, embedder_spec


@dataclass
class Selection:
    """What grid search on leave-one-source-out folds chose: the best ``combo``, its ``validation`` summary,
    every grid ``points`` and the ``folds`` it ran on."""

    combo: dict[str, Any]
    validation: dict[str, Any]
    points: list[dict[str, Any]]
    folds: list[Fold]

    def report(self, router: str, seed: int, started: float, **counts: Any) -> dict[str, Any]:
        """The training report: ``counts`` (n_train_prompts, …) and how the selection went."""
        return {
            "router": router, **counts,
            "n_val_prompts": sum(len(es.prompts) for f in self.folds for es in f.eval_sets),
            "selection": "leave-one-source-out" + (" and leave-one-family-out"
                                                   if any(f.holdout.startswith("family:") for f in self.folds) else ""),
            "folds": [f.holdout for f in self.folds],
            "chosen": self.combo,
            "grid": [p["row"] for p in self.points],
            "validation": self.validation,
            "seed": seed,
            "seconds": time.perf_counter() - started,
        }


def select_on_folds(router: str, data: PreferenceData, cfg: Mapping[str, Any], fit_key: Callable[[dict[str, Any]], str],
                    fit: Callable[[Fold, dict[str, Any]], Any], scorer: Callable[[Any, dict[str, Any]], ScoreFn],
                    progress: bool = True) -> Selection:
    """Grid search (``cfg["grid"]``) on leave-one-source-out folds (``cfg["selection_holdouts"]``): every
    combination is fitted on each fold's training part — once per ``fit_key``, so combinations that differ
    only in how they score share a fit — scored by ``scorer(fitted, run_cfg)`` on the fold's held-out sets,
    and the best mean held-out APGR wins."""
    from tqdm.auto import tqdm

    folds = source_folds(data, cfg["selection_holdouts"], cfg["strong_model"], cfg["weak_model"],
                         int(cfg["min_holdout_prompts"]))
    folds += family_folds(data, cfg.get("selection_families") or (), cfg["strong_model"], cfg["weak_model"])
    combos = grid_combos(cfg)
    fits: dict[tuple[str, str], Any] = {}
    points: list[dict[str, Any]] = []
    with tqdm(total=len(combos) * len(folds), desc=f"{router} selection folds", disable=not progress) as bar:
        for combo in combos:
            run_cfg = {**cfg, **combo}
            key = fit_key(run_cfg)
            per_fold = {}
            for fold in folds:
                if (fold.holdout, key) not in fits:
                    fits[(fold.holdout, key)] = fit(fold, run_cfg)
                per_fold[fold.holdout] = evaluate_sets(scorer(fits[(fold.holdout, key)], run_cfg), fold.eval_sets)
                bar.update(1)
            points.append(grid_point(router, combo, per_fold))
    best = best_grid_point(points)
    return Selection(best["combo"], best["summary"], points, folds)


def config_key(run_cfg: Mapping[str, Any], keys: Sequence[str] | None = None, exclude: Sequence[str] = ()) -> str:
    """A fit key: the config's ``keys`` (all but ``exclude`` when None) as canonical JSON."""
    chosen = {k: v for k, v in run_cfg.items() if (keys is None or k in keys) and k not in exclude}
    return json.dumps(chosen, sort_keys=True, default=str)


def grid_combos(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the config's ``grid`` (``{param: [values]}``), sorted by parameter; ``[{}]`` when
    there is no grid."""
    grid = cfg.get("grid") or {}
    keys = sorted(grid)
    combos: list[dict[str, Any]] = [dict(zip(keys, values, strict=True))
                                    for values in itertools.product(*(grid[k] for k in keys))]
    return combos or [{}]


def grid_point(router: str, combo: dict[str, Any], per_fold: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One grid combination scored on the held-out-source folds: its ``combo``, its ``fold_summary`` and
    the ``row`` kept in the training report; logged."""
    summary = fold_summary(per_fold)
    log.info("%s %s: mean held-out-source APGR %.3f", router, combo, summary["mean_apgr"])
    row = {**combo, "heldout_mean_apgr": summary["mean_apgr"],
           "heldout_apgr": {k: v["apgr"] for k, v in summary["per_source"].items()}}
    return {"combo": combo, "summary": summary, "row": row}


def best_grid_point(points: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The point with the highest mean held-out APGR (NaN counts as lowest; the first wins a tie)."""
    def key(point: dict[str, Any]) -> float:
        mean = point["summary"]["mean_apgr"]
        return mean if np.isfinite(mean) else -np.inf

    return max(points, key=key)


def format_report(report: Mapping[str, Any]) -> str:
    """A few human lines from a training report."""
    lines = [
        f"router {report.get('router')}: {report.get('n_train_prompts')} train / {report.get('n_val_prompts')} "
        f"val prompts, {report.get('n_train_judgments')} train judgments, "
        f"{report.get('seconds', 0):.1f} s",
        f"chosen: {json.dumps(report.get('chosen', {}), sort_keys=True)}",
    ]
    val = report.get("validation", {})
    for group, v in sorted(val.get("per_source", {}).items()):
        lo, hi = v["random_apgr_ci"]
        lines.append(f"  val {group:<14} APGR {v['apgr']:.3f}  random {v['random_apgr']:.3f} "
                     f"[{lo:.3f}, {hi:.3f}]  n={v['n_prompts']} ({v['strong']} vs {v['weak']})")
    if "mean_apgr" in val:
        lines.append(f"  val mean APGR {val['mean_apgr']:.3f}")
    return "\n".join(lines)


def evaluate_router_dir(router: str, artifact_dir: str | Path, golden: Sequence[GoldenLabel],
                        strong: str = DEFAULT_STRONG, weak: str = DEFAULT_WEAK, n_seeds: int = 100,
                        **overrides: Any) -> dict[str, Any]:
    """Load a trained router and evaluate it on held-out golden labels, one eval set per source group
    (the router is loaded for each set's own strong/weak pair)."""
    from routeray.artifacts import load_artifact
    from routeray.routers.registry import load_router

    if "embedder" not in overrides:
        overrides["embedder"] = cached_embedder(load_artifact(artifact_dir).embedder)
    loaded: dict[tuple[str, str], Any] = {}

    def score(prompts: Sequence[str], s: str, w: str) -> np.ndarray:
        if (s, w) not in loaded:
            loaded[(s, w)] = load_router(router, artifact_dir, strong_model=s, weak_model=w, **overrides)
        return loaded[(s, w)].score(list(prompts))

    return evaluate_sets(score, golden_eval_sets(golden, strong, weak), n_seeds=n_seeds)
