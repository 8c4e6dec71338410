"""What the two neural routers (``bert``, ``causal_llm``) share: training labels, the training loop, metrics.

Two kinds of targets. Per model (:class:`ModelExamples`, ``bert``'s default head): each model's golden
correctness on a prompt, with pairwise judgments as Bradley–Terry terms on the outputs
(:func:`per_model_loss`); a (strong, weak) pair is read from two outputs as independent correctness
(:func:`routeray.routers.bert.three_class_from_correctness`). Three classes for one pair (:class:`PairExamples`, the paper's):

Labels (RouteLLM paper, sec. 4): for a configured (strong, weak) pair, every judgment between a model of the
strong model's tier and a model of the weak model's tier (tiers from a Bradley–Terry fit, see
:mod:`routeray.data.tiers`) becomes a distribution over three classes ``(strong wins, tie, weak wins)``:
``p=1 -> (1, 0, 0)``, ``p=0.5 -> (0, 1, 0)``, ``p=0 -> (0, 0, 1)``, and a judge's soft preference in between
is split linearly between its two neighbouring classes. Golden labels (per-model correctness) enter through
:func:`routeray.data.golden_to_judgments` restricted to those tier pairs. One training example per prompt:
the mean of its judgments' class distributions.

Source balance (see QUALITY.md): each source family (``alpaca_eval``, ``arena_bench``, ``routerbench``,
``mmlu_pro``, ``arena_55k``; the part before ``/``) contributes at most ``per_source_cap`` prompts, drawn at
random, so tens of thousands of chat judgments cannot drown the golden-label rows, and ``source_weights``
can scale a family's loss on purpose.

Score: ``P(strong wins) + tie_share * P(tie)``. With the default ``tie_share = 0.5`` this is the expected
judgment ``p`` (a tie counts as half a win), i.e. ``0.5 + (P(strong) - P(weak)) / 2``: it orders prompts by
the strong model's expected advantage, and ties — both models right, or both wrong — are where the weak
model is enough. ``tie_share = 0`` gives the paper's ``P(label = strong wins)``.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from routeray.data.schema import Judgment, PreferenceData
from routeray.errors import RouterayError

log = logging.getLogger(__name__)

LABELS = ("strong_wins", "tie", "weak_wins")


def merge_config(defaults: dict[str, Any], config: dict[str, Any] | None) -> dict[str, Any]:
    """``defaults`` updated with ``config``, strings coerced to each default's type (``--set k=v``)."""
    out = dict(defaults)
    for key, value in (config or {}).items():
        if key not in defaults:
            raise RouterayError(f"unknown hyper-parameter {key!r}; known: {', '.join(sorted(defaults))}")
        default = defaults[key]
        if isinstance(value, str) and default is not None and not isinstance(default, str):
            try:
                if isinstance(default, bool):
                    value = value.strip().lower() in ("1", "true", "yes", "on")
                elif isinstance(default, int):
                    value = int(value)
                elif isinstance(default, float):
                    value = float(value)
                else:
                    import json

                    value = json.loads(value)
            except ValueError as exc:
                raise RouterayError(f"hyper-parameter {key}={value!r}: expected {type(default).__name__}") from exc
        out[key] = value
    return out


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) and ask torch for deterministic kernels where it can."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def target_from_p(p: float) -> np.ndarray:
    """Class distribution ``(strong wins, tie, weak wins)`` for a judgment's P(strong wins) = ``p``."""
    p = min(1.0, max(0.0, float(p)))
    if p >= 0.5:
        return np.array([2 * p - 1, 2 - 2 * p, 0.0])
    return np.array([0.0, 2 * p, 1 - 2 * p])


@dataclass
class PairExamples:
    """One example per prompt: its soft 3-class target, loss weight and source family."""

    prompts: list[str]
    targets: np.ndarray  # (N, 3)
    weights: np.ndarray  # (N,)
    sources: list[str]
    n_judgments: int = 0

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def expected(self) -> np.ndarray:
        """The expected judgment P(strong wins) with ties as halves: the validation 'strong quality'."""
        return self.targets[:, 0] + 0.5 * self.targets[:, 1]


@dataclass
class PairSpec:
    """Which models count as the strong side and the weak side, and how that was decided."""

    strong_model: str
    weak_model: str
    strong_models: list[str]
    weak_models: list[str]
    tiers: dict[str, int] = field(default_factory=dict)
    ratings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"strong_model": self.strong_model, "weak_model": self.weak_model,
                "strong_models": self.strong_models, "weak_models": self.weak_models,
                "ratings": {k: round(v, 1) for k, v in sorted(self.ratings.items())}}


def source_family(source: str) -> str:
    return source.split("/", 1)[0]


def resolve_pair(data: PreferenceData, cfg: dict[str, Any]) -> PairSpec:
    """Fit ratings on ``data``, group models into ``n_tiers`` tiers and pick the strong and weak sides.

    A configured model absent from the data is mapped through ``model_aliases`` (unseen name -> known model)
    or, failing that, to ``strong_tier`` / ``weak_tier``; with neither, a clear error (never a KeyError).
    """
    from routeray.data import canonical_model, golden_to_judgments
    from routeray.data.tiers import assign_tiers, fit_ratings

    strong, weak = canonical_model(cfg["strong_model"]), canonical_model(cfg["weak_model"])
    judgments = list(data.judgments) + list(golden_to_judgments(data.golden))
    if not judgments:
        raise RouterayError("no judgments or golden labels to train on")
    ratings = fit_ratings(judgments)
    n_tiers = max(1, min(int(cfg["n_tiers"]), len(ratings)))
    tiers = assign_tiers(ratings, n_tiers) if cfg["use_tiers"] else {m: i for i, m in enumerate(ratings)}
    aliases = {canonical_model(k): canonical_model(v) for k, v in (cfg.get("model_aliases") or {}).items()}

    def tier_of(model: str, side: str) -> int:
        known = aliases.get(model, model)
        if known in tiers:
            return tiers[known]
        if cfg.get(f"{side}_tier") is not None:
            return int(cfg[f"{side}_tier"])
        raise RouterayError(
            f"the {side} model {model!r} is not in the training data; map it to a known model with "
            f"model_aliases={{{model!r}: <known model>}} or to a tier with {side}_tier=<0..{n_tiers - 1}> "
            f"(known models: {', '.join(sorted(tiers))})")

    ts, tw = tier_of(strong, "strong"), tier_of(weak, "weak")
    if cfg["use_tiers"] and ts != tw:
        strong_models = sorted(m for m, t in tiers.items() if t == ts)
        weak_models = sorted(m for m, t in tiers.items() if t == tw)
    else:
        if cfg["use_tiers"]:
            log.warning("%s and %s fall in the same tier: training on that exact pair only", strong, weak)
        strong_models = [aliases.get(strong, strong)]
        weak_models = [aliases.get(weak, weak)]
    log.info("strong side (tier %d): %s; weak side (tier %d): %s", ts, strong_models, tw, weak_models)
    return PairSpec(strong, weak, strong_models, weak_models, tiers, ratings)


def build_examples(data: PreferenceData, pair: PairSpec, cfg: dict[str, Any], seed: int) -> PairExamples:
    """Turn ``data`` into one soft-labelled example per prompt for the pair (see the module docstring)."""
    from routeray.data import golden_to_judgments

    s_set, w_set = set(pair.strong_models), set(pair.weak_models)
    pairs = [(s, w) for s in pair.strong_models for w in pair.weak_models]
    judgments: list[Judgment] = list(data.judgments)
    if data.golden:
        judgments += golden_to_judgments(data.golden, pairs)
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, float] = defaultdict(float)
    source_of: dict[str, str] = {}
    n_used = 0
    for j in judgments:
        if j.model_a in s_set and j.model_b in w_set:
            p = j.p_a
        elif j.model_b in s_set and j.model_a in w_set:
            p = 1.0 - j.p_a
        else:
            continue
        n_used += 1
        w = float(j.weight)
        sums[j.prompt] = sums.get(j.prompt, np.zeros(3)) + w * target_from_p(p)
        counts[j.prompt] += w
        source_of.setdefault(j.prompt, source_family(j.source))
    by_family: dict[str, list[str]] = defaultdict(list)
    for prompt in sorted(sums):
        if counts[prompt] > 0:
            by_family[source_of[prompt]].append(prompt)
    prompts, weights, sources = cap_by_family(by_family, cfg, seed)
    targets = np.stack([sums[p] / counts[p] for p in prompts]) if prompts else np.zeros((0, 3))
    return PairExamples(prompts, targets, weights, sources, n_used)


def cap_by_family(by_family: dict[str, list[str]], cfg: dict[str, Any], seed: int
                  ) -> tuple[list[str], np.ndarray, list[str]]:
    """At most ``per_source_cap`` prompts per source family (drawn with ``seed``), each weighted by its
    family's ``source_weights`` entry (default 1). Returns prompts, weights and families."""
    rng = random.Random(seed)
    cap = cfg.get("per_source_cap")
    weights_cfg = cfg.get("source_weights") or {}
    prompts: list[str] = []
    weights: list[float] = []
    sources: list[str] = []
    for family in sorted(by_family):
        chosen = by_family[family]
        if cap and len(chosen) > int(cap):
            chosen = sorted(rng.sample(chosen, int(cap)))
        prompts += chosen
        weights += [float(weights_cfg.get(family, 1.0))] * len(chosen)
        sources += [family] * len(chosen)
    return prompts, np.asarray(weights, dtype=np.float64), sources


@dataclass
class ModelExamples:
    """Targets for the ``per_model`` head, one row per prompt: each model's golden correctness (``mask``
    marks the labelled cells; graded scores are soft targets) and the prompt's pairwise judgments as
    Bradley–Terry terms ``(row, a, b, P(a beats b), weight)`` on the heads' logits."""

    prompts: list[str]
    models: list[str]
    targets: np.ndarray  # (N, M)
    mask: np.ndarray  # (N, M), 1.0 where labelled
    weights: np.ndarray  # (N,)
    sources: list[str]
    judgments: np.ndarray  # (K, 5)

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def n_judgments(self) -> int:
        return int(len(self.judgments))


def head_models(data: PreferenceData) -> list[str]:
    """Every model with a golden label or a judgment in ``data``, sorted: the ``per_model`` head's outputs."""
    names = {g.model for g in data.golden}
    for j in data.judgments:
        names.update((j.model_a, j.model_b))
    return sorted(names)


def build_model_examples(data: PreferenceData, models: list[str], cfg: dict[str, Any], seed: int
                         ) -> ModelExamples:
    """Per-model examples for ``data`` (see :class:`ModelExamples`); prompts capped per source family as in
    :func:`build_examples`. Judgments count with ``judgment_weight`` times their own weight."""
    col = {m: i for i, m in enumerate(models)}
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    source_of: dict[str, str] = {}
    for g in data.golden:
        if g.model not in col:
            continue
        if g.prompt not in sums:
            sums[g.prompt], counts[g.prompt] = np.zeros(len(models)), np.zeros(len(models))
        sums[g.prompt][col[g.model]] += g.score
        counts[g.prompt][col[g.model]] += 1
        source_of.setdefault(g.prompt, source_family(g.source))
    pairs: dict[str, list[tuple[int, int, float, float]]] = defaultdict(list)
    jw = float(cfg.get("judgment_weight", 1.0))
    if jw > 0:
        for j in data.judgments:
            if j.model_a in col and j.model_b in col and j.model_a != j.model_b:
                pairs[j.prompt].append((col[j.model_a], col[j.model_b], float(j.p_a), jw * float(j.weight)))
                source_of.setdefault(j.prompt, source_family(j.source))
    by_family: dict[str, list[str]] = defaultdict(list)
    for prompt in sorted(set(sums) | set(pairs)):
        by_family[source_of[prompt]].append(prompt)
    prompts, weights, sources = cap_by_family(by_family, cfg, seed)
    targets = np.zeros((len(prompts), len(models)))
    mask = np.zeros((len(prompts), len(models)))
    rows: list[tuple[float, float, float, float, float]] = []
    for i, prompt in enumerate(prompts):
        if prompt in sums:
            labelled = counts[prompt] > 0
            targets[i, labelled] = sums[prompt][labelled] / counts[prompt][labelled]
            mask[i] = labelled
        rows += [(i, a, b, p, w) for a, b, p, w in pairs.get(prompt, [])]
    judgments = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
    return ModelExamples(prompts, models, targets, mask, weights, sources, judgments)


def per_model_loss(train: ModelExamples, judgment_weight: float) -> Callable[[Any, np.ndarray], Any]:
    """Loss for a batch of :class:`ModelExamples` rows ``idx`` given the heads' ``(B, M)`` logits: masked
    binary cross-entropy on the golden cells (prompt-weighted mean) plus ``judgment_weight`` times the
    weighted mean Bradley–Terry loss ``BCE(σ(l_a − l_b), P(a beats b))`` of the batch's judgments."""
    import torch

    f = torch.nn.functional
    by_row: dict[int, list[int]] = defaultdict(list)
    for k, row in enumerate(train.judgments[:, 0].astype(int)):
        by_row[int(row)].append(k)

    def loss(logits: Any, idx: np.ndarray) -> Any:
        logits = logits.float()
        dev = logits.device
        target = torch.as_tensor(train.targets[idx], dtype=torch.float32, device=dev)
        cell_w = torch.as_tensor(train.mask[idx] * train.weights[idx, None], dtype=torch.float32, device=dev)
        bce = f.binary_cross_entropy_with_logits(logits, target, reduction="none")
        total = (bce * cell_w).sum() / cell_w.sum().clamp(min=1e-9)
        ks = [k for pos, row in enumerate(idx) for k in by_row.get(int(row), [])]
        if ks and judgment_weight > 0:
            pos_of = {int(row): pos for pos, row in enumerate(idx)}
            j = train.judgments[ks]
            pos = torch.as_tensor([pos_of[int(r)] for r in j[:, 0]], device=dev)
            a = torch.as_tensor(j[:, 1].astype(int), device=dev)
            b = torch.as_tensor(j[:, 2].astype(int), device=dev)
            p = torch.as_tensor(j[:, 3], dtype=torch.float32, device=dev)
            w = torch.as_tensor(j[:, 4] * train.weights[j[:, 0].astype(int)], dtype=torch.float32, device=dev)
            bt = f.binary_cross_entropy_with_logits(logits[pos, a] - logits[pos, b], p, reduction="none")
            total = total + judgment_weight * (bt * w).sum() / w.sum().clamp(min=1e-9)
        return total

    return loss


def apgr_report(scores: np.ndarray, examples: PairExamples, n_seeds: int = 100) -> dict[str, Any]:
    """APGR of ``scores`` on ``examples`` (strong quality = expected P(strong wins), weak = 1 - it), against
    the random router's mean and 95 % interval; also per source family."""
    from routeray.evaluate.metrics import apgr, random_baseline

    def one(idx: np.ndarray) -> dict[str, Any]:
        sq = examples.expected[idx]
        wq = 1.0 - sq
        if len(idx) < 2 or abs(sq.mean() - wq.mean()) < 1e-9:
            return {"n": int(len(idx)), "apgr": None}
        base = random_baseline(sq, wq, n_seeds=n_seeds, n_points=None)
        return {"n": int(len(idx)), "apgr": round(apgr(scores[idx], sq, wq), 4),
                "random_apgr": round(base.apgr, 4), "random_ci": [round(v, 4) for v in base.apgr_ci]}

    out = one(np.arange(len(examples)))
    fams = np.asarray(examples.sources)
    out["by_source"] = {f: one(np.flatnonzero(fams == f)) for f in sorted(set(examples.sources))}
    # The same numbers in the shape routeray.train.common.format_report prints.
    out["per_source"] = {f: {"apgr": r["apgr"], "random_apgr": r["random_apgr"], "random_apgr_ci": r["random_ci"],
                             "n_prompts": r["n"], "strong": "strong tier", "weak": "weak tier"}
                         for f, r in out["by_source"].items() if r.get("apgr") is not None}
    if out["per_source"]:
        out["mean_apgr"] = float(np.mean([r["apgr"] for r in out["per_source"].values()]))
    return out


@dataclass
class FitResult:
    best_apgr: float
    best_step: int
    history: list[dict[str, Any]]
    seconds: float


def fit(module: Any, class_logits: Callable[[list[str]], Any], score: Callable[[list[str]], np.ndarray],
        train: PairExamples | ModelExamples, val: PairExamples, cfg: dict[str, Any], *, seed: int,
        progress: bool, desc: str, loss_fn: Callable[[Any, np.ndarray], Any] | None = None) -> FitResult:
    """Train ``module``; evaluate validation APGR ``evals_per_epoch`` times per epoch and restore the
    parameters of the best evaluation (model selection on validation APGR).

    ``class_logits(prompts)`` returns a tensor of logits with gradients, ``(len(prompts), 3)`` for the soft
    3-class targets of a :class:`PairExamples`; with ``loss_fn(logits, idx)`` (e.g. :func:`per_model_loss`)
    any head and targets. ``score(prompts)`` returns P(strong wins) in eval mode (batched, no gradients).
    """
    import torch
    from tqdm.auto import tqdm

    if len(train) == 0:
        raise RouterayError("no training examples for this strong/weak pair")
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]))
    bs = int(cfg["batch_size"])
    steps_per_epoch = math.ceil(len(train) / bs)
    total = steps_per_epoch * int(cfg["epochs"])
    warmup = max(1, int(0.1 * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup))))
    gen = np.random.default_rng(seed)
    evals = max(1, int(cfg.get("evals_per_epoch", 1)))
    eval_at = {min(steps_per_epoch, round(steps_per_epoch * (k + 1) / evals)) for k in range(evals)}
    best: tuple[float, int, dict[str, Any] | None] = (-math.inf, 0, None)
    history: list[dict[str, Any]] = []
    start = time.monotonic()
    step = 0
    bar = tqdm(total=total, desc=desc, unit="step", disable=not progress)
    lengths = np.asarray([len(p) for p in train.prompts])
    batch_loss = loss_fn or _soft_class_loss(train)
    for epoch in range(int(cfg["epochs"])):
        batches = _length_bucketed_batches(lengths, bs, gen)
        for i, idx in enumerate(batches):
            module.train()
            logits = class_logits([train.prompts[k] for k in idx])
            loss = batch_loss(logits, idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", epoch=epoch + 1)
            if (i + 1) in eval_at and len(val):
                module.eval()
                report = apgr_report(score(val.prompts), val, n_seeds=20)
                history.append({"step": step, "epoch": epoch + 1, "loss": round(loss.item(), 4),
                                "val_apgr": report["apgr"]})
                log.info("step %d: validation APGR %s", step, report["apgr"])
                val_apgr = report["apgr"] if report["apgr"] is not None else -math.inf
                if val_apgr > best[0]:
                    state = {k: v.detach().clone() for k, v in module.state_dict().items()
                             if _is_trainable(module, k)}
                    best = (val_apgr, step, state)
    bar.close()
    if best[2] is not None:
        module.load_state_dict(best[2], strict=False)
    module.eval()
    return FitResult(best[0] if best[2] is not None else math.nan, best[1], history,
                     time.monotonic() - start)


def _soft_class_loss(train: PairExamples | ModelExamples) -> Callable[[Any, np.ndarray], Any]:
    """Weighted cross-entropy against the soft 3-class targets of a :class:`PairExamples`."""
    import torch

    def loss(logits: Any, idx: np.ndarray) -> Any:
        target = torch.as_tensor(train.targets[idx], dtype=torch.float32, device=logits.device)
        weight = torch.as_tensor(train.weights[idx], dtype=torch.float32, device=logits.device)
        loss_each = -(target * torch.log_softmax(logits.float(), dim=-1)).sum(-1)
        return (loss_each * weight).sum() / weight.sum().clamp(min=1e-9)

    return loss


def _length_bucketed_batches(lengths: np.ndarray, batch_size: int, gen: np.random.Generator
                             ) -> list[np.ndarray]:
    """Random batches of similar-length prompts (less padding, so less compute on CPU): shuffle, sort
    within windows of 8 batches by length, cut into batches, shuffle the batches."""
    order = gen.permutation(len(lengths))
    window = batch_size * 8
    batches = []
    for start in range(0, len(order), window):
        chunk = order[start:start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[k:k + batch_size] for k in range(0, len(chunk), batch_size)]
    return [batches[k] for k in gen.permutation(len(batches))]


def _is_trainable(module: Any, key: str) -> bool:
    trainable = getattr(module, "_routeray_trainable_keys", None)
    if trainable is None:
        names = {n for n, p in module.named_parameters() if p.requires_grad}
        module._routeray_trainable_keys = names
        trainable = names
    return key in trainable


def training_embeddings(prompts: Sequence[str], progress: bool) -> np.ndarray:
    """MiniLM embeddings (float16) of the training prompts, kept in the artifact so evaluations can drop
    benchmark prompts that are near-copies of them (:meth:`routeray.routers.base.Router.training_embeddings`)."""
    from routeray.encoders.cache import EmbeddingCache
    from routeray.encoders.registry import make_embedder

    if not prompts:
        return np.zeros((0, 384), dtype=np.float16)
    cache = EmbeddingCache(make_embedder())
    return cache.embed(list(prompts), progress=progress, desc="embedding training prompts").astype(np.float16)
