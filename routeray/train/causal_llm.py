"""Train the ``causal_llm`` router: fine-tune a causal LM (SmolLM2-135M-Instruct by default) to answer an
instruction-formatted prompt with a class token (``1`` strong wins, ``2`` tie, ``3`` weak wins).

The loss is the soft cross-entropy over the three label tokens' logits at the answer position (the same
function the router scores with). To keep CPU training affordable only the top ``train_layers`` decoder
layers and the final norm are trained (0: every layer); the embeddings — tied to the output head in
SmolLM2 — stay frozen, so the label tokens keep their meaning. Labels, source balance, the validation
split and model selection are shared with ``bert`` (:mod:`routeray.train.neural`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from routeray.artifacts import Artifact, fingerprint_texts, save_artifact
from routeray.data.schema import PreferenceData
from routeray.train import neural
from routeray.train.bert import DEFAULTS as BERT_DEFAULTS
from routeray.train.bert import base_report, prepare_examples

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    **BERT_DEFAULTS,
    "base_model": None,  # a local HF causal LM folder; None: SmolLM2-135M-Instruct (routeray.local_models)
    "train_layers": 4,
    "lr": 2e-4,
    "batch_size": 8,
    "epochs": 1,
    "evals_per_epoch": 2,
    "per_source_cap": 100,
    "max_length": 128,
}


def freeze_lower_layers(model: Any, train_layers: int) -> int:
    """Freeze everything but the top ``train_layers`` decoder layers and the final norm; return trainable count."""
    decoder = getattr(model, model.base_model_prefix)
    layers = getattr(decoder, "layers", None) or getattr(decoder, "h", None)
    for p in model.parameters():
        p.requires_grad = False
    if layers is None or train_layers <= 0:
        for name, p in decoder.named_parameters():
            p.requires_grad = "embed" not in name and "wte" not in name and "wpe" not in name
    else:
        for layer in list(layers)[-train_layers:]:
            for p in layer.parameters():
                p.requires_grad = True
        for p in decoder.parameters(recurse=False):
            p.requires_grad = True
        for name, child in decoder.named_children():
            if "norm" in name or name in ("ln_f",):
                for p in child.parameters():
                    p.requires_grad = True
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def train(data: PreferenceData, out_dir: Path, *, seed: int = 0, config: dict[str, Any] | None = None,
          progress: bool = True) -> Artifact:
    """Fine-tune the causal LM on ``data`` and write the artifact (model folder + config.json) to ``out_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from routeray.local_models import smollm2_path
    from routeray.routers.bert import MODEL_DIR, weight_files_digest
    from routeray.routers.causal_llm import (
        PromptEncoder,
        label_logits,
        label_token_ids,
        predict_label_probs,
        prompt_template,
    )

    started = time.monotonic()
    cfg = neural.merge_config(DEFAULTS, config)
    neural.set_seed(seed)
    pair, train_ex, val_ex, _ = prepare_examples(data, cfg, seed)
    base = Path(cfg["base_model"]) if cfg["base_model"] else smollm2_path()
    device = neural.pick_device(cfg["device"])
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32).to(device)  # type: ignore[arg-type]
    model.config.use_cache = False
    n_trainable = freeze_lower_layers(model, int(cfg["train_layers"]))
    log.info("training %.1fM of %.1fM parameters", n_trainable / 1e6,
             sum(p.numel() for p in model.parameters()) / 1e6)
    pre, post = prompt_template(tokenizer)
    encoder = PromptEncoder(tokenizer, pre, post, int(cfg["max_length"]))
    label_ids = label_token_ids(tokenizer)

    def class_logits(prompts: list[str]) -> torch.Tensor:
        return label_logits(model, encoder, label_ids, prompts, device)

    def score(prompts: list[str]) -> np.ndarray:
        probs = predict_label_probs(model, encoder, label_ids, prompts,
                                    batch_size=int(cfg["infer_batch_size"]), device=device)
        return neural.score_from_probs(probs, float(cfg["tie_share"]))

    result = neural.fit(model, class_logits, score, train_ex, val_ex, cfg, seed=seed, progress=progress,
                        desc="training causal_llm")
    out_dir = Path(out_dir)
    model_dir = out_dir / MODEL_DIR
    model.config.use_cache = True
    model.save_pretrained(str(model_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(model_dir))
    report = base_report("causal_llm", pair, train_ex, val_ex)
    report.update({"validation": neural.apgr_report(score(val_ex.prompts), val_ex) if len(val_ex) else {},
                   "best_step": result.best_step, "history": result.history,
                   "trainable_params": n_trainable, "train_seconds": round(result.seconds, 1),
                   "seconds": round(time.monotonic() - started, 1), "device": device})
    saved_cfg = {**cfg, "base_model": str(base), "model_type": model.config.model_type,
                 "labels": list(neural.LABELS), "label_token_ids": label_ids, "template_pre": pre,
                 "template_post": post, "model_files": weight_files_digest(model_dir),
                 "strong_model": pair.strong_model, "weak_model": pair.weak_model, "seed": seed}
    artifact = Artifact(router="causal_llm", config=saved_cfg,
                        tensors={"label_token_ids": np.asarray(label_ids, dtype=np.int64),
                                 "train_embeddings": neural.training_embeddings(train_ex.prompts, progress)},
                        embedder=None,
                        data_fingerprint=fingerprint_texts(train_ex.prompts, {"targets": train_ex.targets.sum(0)}),
                        report=report)
    save_artifact(artifact, out_dir)
    log.info("causal_llm router written to %s (validation APGR %s)", out_dir, report["validation"].get("apgr"))
    return artifact
