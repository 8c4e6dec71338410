"""Train the ``bert`` router: fine-tune an encoder (MiniLM by default).

Two heads (``head``): ``per_model`` (default) has one output per model, P(model answers correctly |
prompt), learned from every model's golden labels, with pairwise judgments as Bradley–Terry terms on the
outputs (``judgment_weight``); the router reads the strong and weak models' outputs and scores
``(1 + p_strong − p_weak) / 2``. ``three_class`` is the paper's classifier over (strong wins, tie, weak
wins) for the configured pair's tiers. Keeping each model's own labels, rather than pooling them into one
"strong beat weak" label, is what made embedding routers rank held-out sources and the MMLU sample the
right way round (``bench/quality_probe.md``). Labels, source balance and the score are described in
:mod:`routeray.train.neural`. Validation is split by prompt and scored on the pair's 3-class labels; the
checkpoint with the best validation APGR is kept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routeray.artifacts import Artifact, fingerprint_texts, save_artifact
from routeray.data.models import DEFAULT_STRONG, DEFAULT_WEAK
from routeray.data.schema import PreferenceData
from routeray.encoders.base import pick_device
from routeray.errors import RouterayError
from routeray.routers import bert as bert_router
from routeray.routers.bert import score_from_probs, three_class_from_correctness
from routeray.train import neural

log = logging.getLogger(__name__)

# Sized for a shared 2-core CPU (`make artifacts` within ~20 minutes); on a GPU raise per_source_cap,
# max_length and epochs with --set (e.g. per_source_cap=3000 max_length=256 epochs=2).
DEFAULTS: dict[str, Any] = {
    "strong_model": DEFAULT_STRONG,
    "weak_model": DEFAULT_WEAK,
    "base_model": None,  # a local HF encoder folder; None: all-MiniLM-L6-v2 from its PyPI package
    "head": "per_model",  # or "three_class" (the paper's)
    "judgment_weight": 0.1,  # per_model: weight of the pairwise judgments against the golden labels
    "use_tiers": True,
    "n_tiers": 10,
    "strong_tier": None,
    "weak_tier": None,
    "model_aliases": {},
    "per_source_cap": 1000,
    "source_weights": {},
    "val_fraction": 0.1,
    "max_length": 128,
    "batch_size": 16,
    "epochs": 1,
    "lr": 1e-4,
    "weight_decay": 0.01,
    "evals_per_epoch": 2,
    "tie_share": 0.5,
    "device": None,
    "infer_batch_size": 32,
}


def prepare_examples(data: PreferenceData, cfg: dict[str, Any], seed: int
                     ) -> tuple[neural.PairSpec, neural.PairExamples, neural.PairExamples, PreferenceData]:
    """Split ``data`` by prompt, fit tiers on the training side, and build both sides' examples; also
    returns the training side itself."""
    from routeray.data.splits import split_by_prompt

    train_data, val_data = split_by_prompt(data, float(cfg["val_fraction"]), seed)
    pair = neural.resolve_pair(train_data, cfg)
    train_ex = neural.build_examples(train_data, pair, cfg, seed)
    frac = float(cfg["val_fraction"])
    val_cfg = dict(cfg)
    if cfg.get("per_source_cap"):
        val_cfg["per_source_cap"] = max(1, round(int(cfg["per_source_cap"]) * frac / max(1e-9, 1 - frac)))
    val_ex = neural.build_examples(val_data, pair, val_cfg, seed)
    log.info("%d training and %d validation prompts (%d/%d judgments)", len(train_ex), len(val_ex),
             train_ex.n_judgments, val_ex.n_judgments)
    return pair, train_ex, val_ex, train_data


def base_report(router: str, pair: neural.PairSpec, train_ex: neural.PairExamples | neural.ModelExamples,
                val_ex: neural.PairExamples) -> dict[str, Any]:
    """The report's data part; ``train_ex`` is what was trained on (pair or per-model examples)."""

    def by_family(ex: neural.PairExamples | neural.ModelExamples) -> dict[str, int]:
        return {f: ex.sources.count(f) for f in sorted(set(ex.sources))}

    return {"router": router, "n_train": len(train_ex), "n_val": len(val_ex), "n_train_prompts": len(train_ex),
            "n_val_prompts": len(val_ex), "train_sources": by_family(train_ex),
            "val_sources": by_family(val_ex), "n_train_judgments": train_ex.n_judgments,
            "pair": pair.to_json()}


@dataclass
class FineTuneRun:
    """What a neural trainer starts from: its hyper-parameters, pair, examples, base model and device."""

    started: float
    cfg: dict[str, Any]
    pair: neural.PairSpec
    train_ex: neural.PairExamples
    val_ex: neural.PairExamples
    train_data: PreferenceData
    base: Path
    device: str


def start_fine_tune(data: PreferenceData, defaults: dict[str, Any], config: dict[str, Any] | None, seed: int,
                    heads: tuple[str, ...], default_base: Callable[[], Path]) -> FineTuneRun:
    """Check the head, seed everything, build the examples and pick the base model and the device."""
    started = time.monotonic()
    cfg = neural.merge_config(defaults, config)
    if cfg["head"] not in heads:
        raise RouterayError(f"head={cfg['head']!r}: expected one of {', '.join(heads)}")
    neural.set_seed(seed)
    pair, train_ex, val_ex, train_data = prepare_examples(data, cfg, seed)
    base = Path(cfg["base_model"]) if cfg["base_model"] else default_base()
    return FineTuneRun(started, cfg, pair, train_ex, val_ex, train_data, base, pick_device(cfg["device"]))


def write_fine_tuned(router: str, run: FineTuneRun, model: Any, tokenizer: Any, out_dir: Path, *, seed: int,
                     fit_ex: neural.PairExamples | neural.ModelExamples, score: Callable[[list[str]], Any],
                     result: Any, progress: bool, config: dict[str, Any], report: dict[str, Any],
                     tensors: dict[str, Any]) -> Artifact:
    """Save the fine-tuned model folder under ``out_dir/model`` and the artifact beside it: ``config`` and
    ``report`` entries of this router on top of what both neural routers record."""
    out_dir = Path(out_dir)
    model_dir = out_dir / bert_router.MODEL_DIR
    model.save_pretrained(str(model_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(model_dir))
    full_report = {**base_report(router, run.pair, fit_ex, run.val_ex), **report,
                   "validation": neural.apgr_report(score(run.val_ex.prompts), run.val_ex) if len(run.val_ex) else {},
                   "best_step": result.best_step, "history": result.history, "train_seconds": round(result.seconds, 1),
                   "seconds": round(time.monotonic() - run.started, 1), "device": run.device}
    saved_cfg = {**run.cfg, "base_model": str(run.base), "model_type": model.config.model_type, **config,
                 "model_files": bert_router.weight_files_digest(model_dir), "strong_model": run.pair.strong_model,
                 "weak_model": run.pair.weak_model, "seed": seed}
    artifact = Artifact(router=router, config=saved_cfg, embedder=None, report=full_report,
                        tensors={**tensors, "train_embeddings": neural.training_embeddings(fit_ex.prompts, progress)},
                        data_fingerprint=fingerprint_texts(fit_ex.prompts, {"targets": fit_ex.targets.sum(0)}))
    save_artifact(artifact, out_dir)
    log.info("%s router written to %s (validation APGR %s)", router, out_dir, full_report["validation"].get("apgr"))
    return artifact


def train(data: PreferenceData, out_dir: Path, *, seed: int = 0, config: dict[str, Any] | None = None,
          progress: bool = True) -> Artifact:
    """Fine-tune the encoder on ``data`` and write the artifact (model folder + config.json) to ``out_dir``."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from routeray.encoders.local import minilm_path
    from routeray.routers.bert import head_indices, predict_class_probs, predict_correctness

    run = start_fine_tune(data, DEFAULTS, config, seed, ("per_model", "three_class"), minilm_path)
    cfg, pair, device = run.cfg, run.pair, run.device
    tokenizer = AutoTokenizer.from_pretrained(str(run.base))
    per_model = cfg["head"] == "per_model"
    if per_model:
        models = neural.head_models(run.train_data)
        fit_ex: neural.PairExamples | neural.ModelExamples = neural.build_model_examples(
            run.train_data, models, cfg, seed)
        i_strong, i_weak = head_indices(models, pair.strong_model, pair.weak_model, cfg["model_aliases"])
        labels: dict[int, str] = dict(enumerate(models))
    else:
        models, fit_ex, labels = [], run.train_ex, dict(enumerate(neural.LABELS))
    model = AutoModelForSequenceClassification.from_pretrained(
        str(run.base), num_labels=len(labels), id2label=labels, label2id={n: i for i, n in labels.items()},
        dtype=torch.float32).to(device)
    max_len = int(cfg["max_length"])

    def class_logits(prompts: list[str]) -> torch.Tensor:
        batch = tokenizer(prompts, padding=True, truncation=True, max_length=max_len,
                          return_tensors="pt").to(device)
        return model(**batch).logits

    def score(prompts: list[str]) -> Any:
        if per_model:
            probs = predict_correctness(model, tokenizer, prompts, [i_strong, i_weak], max_length=max_len,
                                        batch_size=int(cfg["infer_batch_size"]), device=device)
            probs = three_class_from_correctness(probs[:, 0], probs[:, 1])
        else:
            probs = predict_class_probs(model, tokenizer, prompts, max_length=max_len,
                                        batch_size=int(cfg["infer_batch_size"]), device=device)
        return score_from_probs(probs, float(cfg["tie_share"]))

    loss_fn = neural.per_model_loss(fit_ex, float(cfg["judgment_weight"])) \
        if isinstance(fit_ex, neural.ModelExamples) else None
    result = neural.fit(model, class_logits, score, fit_ex, run.val_ex, cfg, seed=seed, progress=progress,
                        desc="training bert", loss_fn=loss_fn)
    return write_fine_tuned("bert", run, model, tokenizer, out_dir, seed=seed, fit_ex=fit_ex, score=score,
                            result=result, progress=progress, report={},
                            config={"labels": list(labels.values()), "models": models}, tensors={})
