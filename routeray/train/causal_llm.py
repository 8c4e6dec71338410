"""Train the ``causal_llm`` router: fine-tune a causal LM (SmolLM2-135M-Instruct by default) to answer an
instruction-formatted prompt with label tokens (see :mod:`routeray.routers.causal_llm` for both heads).

``per_model`` (default): each training row is a prompt and two of the models labelled on it, named in the
answer slots (the stronger by training rating first, as the strong model is at inference). From a prompt's
golden labels two labelled models are drawn; from its judgments, one judged pair; with probability
``pair_focus`` the draw is limited to pairs of the configured strong and weak tiers, the pairs the router is
validated and used on. The loss is :func:`routeray.train.neural.per_model_loss` on the two slots'
correctness logits: masked binary cross-entropy on golden labels plus ``judgment_weight`` times
Bradley–Terry on the slots' logit difference for the pair's judgments — bert's per-model loss, with the
slots in place of the head's outputs. ``three_class``: the soft cross-entropy over the three class tokens.

To keep CPU training affordable only the top ``train_layers`` decoder layers and the final norm are trained
(0: every layer); the embeddings — tied to the output head in SmolLM2 — stay frozen, so the label tokens
keep their meaning. Labels, source balance, the validation split (3-class labels of the configured pair)
and model selection are shared with ``bert`` (:mod:`routeray.train.neural`).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np

from routeray.artifacts import Artifact
from routeray.data.schema import PreferenceData
from routeray.routers.bert import score_from_probs, three_class_from_correctness
from routeray.train import neural
from routeray.train.bert import DEFAULTS as BERT_DEFAULTS
from routeray.train.bert import start_fine_tune, write_fine_tuned

log = logging.getLogger(__name__)

# Sized for the shared 2-core CPU: 1,477 training prompts, 185 steps, 50 minutes measured with another
# training job on the same two cores (per_source_cap 150: 8 minutes, but validation at random). On a GPU
# raise per_source_cap and max_length.
DEFAULTS: dict[str, Any] = {
    **BERT_DEFAULTS,
    "base_model": None,  # a local HF causal LM folder; None: SmolLM2-135M-Instruct (routeray.local_models)
    "head": "per_model",  # or "three_class" (the paper's)
    "pair_focus": 0.5,  # per_model: share of rows drawn from (strong tier, weak tier) pairs when there are any
    "train_layers": 4,
    "lr": 2e-4,
    "batch_size": 8,
    "epochs": 1,
    "evals_per_epoch": 2,
    "per_source_cap": 400,
    "max_length": 160,
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


def slot_examples(ex: neural.ModelExamples, pair: neural.PairSpec, pair_focus: float, seed: int
                  ) -> tuple[neural.ModelExamples, list[tuple[str, str]]]:
    """One pair of models per prompt of ``ex`` (see the module docstring) and the prompt's targets for those
    two slots, as a two-column :class:`~routeray.train.neural.ModelExamples` that ``per_model_loss`` reads."""
    rng = random.Random(seed)
    rating = [pair.ratings.get(m, 0.0) for m in ex.models]
    strong_side = {i for i, m in enumerate(ex.models) if m in set(pair.strong_models)}
    weak_side = {i for i, m in enumerate(ex.models) if m in set(pair.weak_models)}
    judged: dict[int, list[np.ndarray]] = {}
    for row in ex.judgments:
        judged.setdefault(int(row[0]), []).append(row)
    pairs: list[tuple[str, str]] = []
    targets, mask, rows = np.zeros((len(ex), 2)), np.zeros((len(ex), 2)), []
    for i in range(len(ex)):
        labelled = [int(m) for m in np.flatnonzero(ex.mask[i])]
        options = [(int(j[1]), int(j[2])) for j in judged.get(i, [])]
        if len(labelled) >= 2 and (not options or rng.random() < 0.5):
            options = [(a, b) for k, a in enumerate(labelled) for b in labelled[k + 1:]]
        elif not options:  # one labelled model: the other slot is any model, unlabelled
            others = [m for m in range(len(ex.models)) if m not in labelled]
            options = [(labelled[0], rng.choice(others))]
        focus = [(a, b) for a, b in options if {a, b} & strong_side and {a, b} & weak_side and a != b]
        a, b = rng.choice(focus if focus and rng.random() < pair_focus else options)
        if rating[b] > rating[a]:
            a, b = b, a
        pairs.append((ex.models[a], ex.models[b]))
        targets[i], mask[i] = ex.targets[i, [a, b]], ex.mask[i, [a, b]]
        for j in judged.get(i, []):
            if (int(j[1]), int(j[2])) in ((a, b), (b, a)):
                rows.append((i, 0, 1, j[3] if int(j[1]) == a else 1.0 - j[3], j[4]))
    judgments = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
    return neural.ModelExamples(ex.prompts, ["first slot", "second slot"], targets, mask, ex.weights,
                                ex.sources, judgments), pairs


def train(data: PreferenceData, out_dir: Path, *, seed: int = 0, config: dict[str, Any] | None = None,
          progress: bool = True) -> Artifact:
    """Fine-tune the causal LM on ``data`` and write the artifact (model folder + config.json) to ``out_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from routeray.local_models import smollm2_path
    from routeray.routers.bert import head_indices
    from routeray.routers.causal_llm import (
        HEADS,
        SLOTS,
        PromptEncoder,
        SlotEncoder,
        label_logits,
        label_token_ids,
        predict_label_probs,
        predict_pair_correctness,
        prompt_template,
        slot_logits,
    )

    run = start_fine_tune(data, DEFAULTS, config, seed, HEADS, smollm2_path)
    cfg, pair, device, head = run.cfg, run.pair, run.device, run.cfg["head"]
    tokenizer = AutoTokenizer.from_pretrained(str(run.base))
    model = AutoModelForCausalLM.from_pretrained(str(run.base), dtype=torch.float32).to(device)  # type: ignore[arg-type]
    model.config.use_cache = False
    n_trainable = freeze_lower_layers(model, int(cfg["train_layers"]))
    log.info("training %.1fM of %.1fM parameters", n_trainable / 1e6,
             sum(p.numel() for p in model.parameters()) / 1e6)
    pre, post = prompt_template(tokenizer, head)
    encoder = PromptEncoder(tokenizer, pre, post, int(cfg["max_length"]))
    label_ids = label_token_ids(tokenizer, head)
    infer_bs = int(cfg["infer_batch_size"])
    models: list[str] = []
    fit_ex: neural.PairExamples | neural.ModelExamples = run.train_ex
    loss_fn = None
    if head == "per_model":
        models = neural.head_models(run.train_data)
        i_s, i_w = head_indices(models, pair.strong_model, pair.weak_model, cfg["model_aliases"])
        asked = (models[i_s], models[i_w])
        slots = SlotEncoder(encoder)
        fit_ex, row_pairs = slot_examples(neural.build_model_examples(run.train_data, models, cfg, seed), pair,
                                          float(cfg["pair_focus"]), seed)
        pair_of = dict(zip(fit_ex.prompts, row_pairs, strict=True))
        loss_fn = neural.per_model_loss(fit_ex, float(cfg["judgment_weight"]))

        def class_logits(prompts: list[str]) -> torch.Tensor:
            return slot_logits(model, slots, label_ids, prompts, [pair_of[p] for p in prompts], device)

        def score(prompts: list[str]) -> np.ndarray:
            p = predict_pair_correctness(model, slots, label_ids, prompts, asked, batch_size=infer_bs,
                                         device=device)
            return score_from_probs(three_class_from_correctness(p[:, 0], p[:, 1]),
                                           float(cfg["tie_share"]))
    else:
        def class_logits(prompts: list[str]) -> torch.Tensor:
            return label_logits(model, encoder, label_ids, prompts, device)

        def score(prompts: list[str]) -> np.ndarray:
            probs = predict_label_probs(model, encoder, label_ids, prompts, batch_size=infer_bs, device=device)
            return score_from_probs(probs, float(cfg["tie_share"]))

    result = neural.fit(model, class_logits, score, fit_ex, run.val_ex, cfg, seed=seed, progress=progress,
                        desc="training causal_llm", loss_fn=loss_fn)
    model.config.use_cache = True
    report: dict[str, Any] = {"trainable_params": n_trainable}
    if isinstance(fit_ex, neural.ModelExamples):
        report["n_train_golden_cells"] = int(fit_ex.mask.sum())
    saved = {"labels": list(neural.LABELS), "label_token_ids": label_ids, "template_pre": pre, "template_post": post}
    if head == "per_model":
        saved.update({"models": models, "slots": list(SLOTS)})
    return write_fine_tuned("causal_llm", run, model, tokenizer, out_dir, seed=seed, fit_ex=fit_ex, score=score,
                            result=result, progress=progress, report=report, config=saved,
                            tensors={"label_token_ids": np.asarray(label_ids, dtype=np.int64)})
