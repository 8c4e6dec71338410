"""The ``causal_llm`` router (RouteLLM sec. 4): a fine-tuned causal LM reads an instruction-formatted prompt
and answers with label tokens; one forward pass per batch reads the label tokens' logits at fixed answer
positions (no generation, no full-vocabulary head). Two heads (``head`` in the artifact config):

``per_model`` (default): the assistant turn names two models, each followed by an answer slot,
``"{strong}: [[" <read> "?]] {weak}: [[" <read>``. At each read position the logit difference of the label
tokens ``yes`` and ``no`` is that model's correctness logit, so P(correct) of the strong and of the weak
model come from the same pass. The first slot is filled with the fixed placeholder ``?`` in training and
inference alike, and causal attention keeps the first read blind to what follows, so the two reads do not
depend on which pair is asked beyond the names before them. The pair becomes (strong wins, tie, weak wins)
as with ``bert`` (:func:`routeray.routers.bert.three_class_from_correctness`). Any strong and weak model can
be asked for by name; a name the training data lacks is mapped to a trained one (aliases, canonical
spelling, else the artifact's own strong or weak model, with a warning), because the LM only learned the
trained names.

``three_class`` (the paper's): the assistant turn is opened by ``[[`` and the next token is a class digit,
``1`` strong wins, ``2`` a tie, ``3`` weak wins; their softmax gives the three probabilities. Artifacts
without a ``head`` entry are of this kind.

The score is ``P(strong) + tie_share * P(tie)``. The artifact keeps the fine-tuned Hugging Face model folder
under ``<artifact>/model/`` (safetensors and the tokenizer) and, in ``config.json``, the prompt template,
the label tokens and the weights' SHA-256.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from routeray.artifacts import Artifact, load_artifact
from routeray.encoders.base import length_sorted_batches, pick_device
from routeray.errors import ArtifactError, RouterayError
from routeray.routers.bert import (
    ThreeClassRouter,
    check_pair,
    head_indices,
    three_class_from_correctness,
    verify_model_dir,
)

log = logging.getLogger(__name__)

HEADS = ("per_model", "three_class")
# Short on purpose: on CPU every template token costs as much as a prompt token, for every prompt.
SYSTEM = "You route questions between AI models."
INSTRUCTIONS = {
    "three_class": ("Which answer to this question would be better: a strong model's or a weak model's? "
                    "[[1]] strong, [[2]] equal, [[3]] weak.\n\n"),
    "per_model": "Will each AI model answer this question correctly? [[yes]] or [[no]] per model.\n\n",
}
ANSWER_PREFIX = "[["
LABEL_TEXTS = {"three_class": ("1", "2", "3"), "per_model": ("yes", "no")}
# per_model: the two answer slots after the assistant turn opens; the first read follows SLOTS[0], the
# second follows SLOTS[1], whose "?" stands in for the first answer in training and inference alike.
SLOTS = ("{model}: " + ANSWER_PREFIX, "?]] {model}: " + ANSWER_PREFIX)
_SENTINEL = "\u2063ROUTERAY_PROMPT\u2063"


def prompt_template(tokenizer: Any, head: str = "three_class") -> tuple[str, str]:
    """The text before and after the user's prompt: the chat template when the tokenizer has one. For
    ``three_class`` the text after ends with the answer prefix ``[[``; for ``per_model`` it ends where the
    assistant turn starts, and the slots (:data:`SLOTS`) follow."""
    answer = ANSWER_PREFIX if head == "three_class" else ""
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": INSTRUCTIONS[head] + _SENTINEL}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        pre, _, post = text.partition(_SENTINEL)
        return pre, post + answer
    return f"{SYSTEM}\n\n{INSTRUCTIONS[head]}", f"\n\nAnswer: {answer}"


def label_token_ids(tokenizer: Any, head: str = "three_class") -> list[int]:
    """One token id per label; a tokenizer that splits a label cannot be used."""
    ids = []
    for text in LABEL_TEXTS[head]:
        tok = tokenizer.encode(text, add_special_tokens=False)
        if len(tok) != 1:
            raise RouterayError(f"the tokenizer splits the label {text!r} into {len(tok)} tokens")
        ids.append(tok[0])
    return ids


class PromptEncoder:
    """Builds input ids ``template_pre + prompt (truncated) + template_post [+ tail]``, right-padded, in
    batches. A per-row ``tail`` (the ``per_model`` slots) comes out of that row's prompt budget, so the
    template and the slots are never cut."""

    def __init__(self, tokenizer: Any, pre: str, post: str, max_length: int):
        self.tokenizer = tokenizer
        self.pre = tokenizer.encode(pre, add_special_tokens=False)
        self.post = tokenizer.encode(post, add_special_tokens=False)
        self.max_length = max_length
        self.budget = max_length - len(self.pre) - len(self.post)
        if self.budget < 8:
            raise RouterayError(f"max_length {max_length} leaves no room for the prompt after the template "
                                f"({len(self.pre) + len(self.post)} tokens)")
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (tokenizer.eos_token_id or 0)

    def __call__(self, prompts: Sequence[str], device: str,
                 tails: Sequence[list[int]] | None = None) -> tuple[Any, Any, Any]:
        """``(input_ids, attention_mask, last_index)`` tensors for one batch."""
        import torch

        bodies = self.tokenizer(list(prompts), add_special_tokens=False, truncation=True,
                                max_length=self.budget)["input_ids"]
        tails = tails or [[] for _ in bodies]
        rows = []
        for body, tail in zip(bodies, tails, strict=True):
            room = self.budget - len(tail)
            if room < 8:
                raise RouterayError(f"max_length {self.max_length} leaves no room for the prompt after the "
                                    f"template and the answer slots ({self.max_length - room} tokens)")
            rows.append(self.pre + body[:room] + self.post + tail)
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = torch.tensor(row)
            mask[i, :len(row)] = 1
        last = torch.tensor([len(r) - 1 for r in rows])
        return ids.to(device), mask.to(device), last.to(device)


class SlotEncoder:
    """The ``per_model`` input: prompt, then ``SLOTS[0]`` named after the first model and ``SLOTS[1]``
    after the second; returns the batch and the two read positions (the last token of each slot)."""

    def __init__(self, prompts: PromptEncoder, slots: Sequence[str] = SLOTS):
        self.prompts = prompts
        self.slots = tuple(slots)
        self._cache: dict[tuple[int, str], list[int]] = {}

    def slot_ids(self, k: int, model: str) -> list[int]:
        key = (k, model)
        if key not in self._cache:
            self._cache[key] = self.prompts.tokenizer.encode(self.slots[k].format(model=model),
                                                            add_special_tokens=False)
        return self._cache[key]

    def __call__(self, prompts: Sequence[str], pairs: Sequence[tuple[str, str]], device: str
                 ) -> tuple[Any, Any, Any]:
        """``(input_ids, attention_mask, reads)``; ``reads`` is ``(B, 2)``: the positions read for the
        first and the second model of each row's pair."""
        import torch

        second = [self.slot_ids(1, b) for _, b in pairs]
        tails = [self.slot_ids(0, a) + s for (a, _), s in zip(pairs, second, strict=True)]
        ids, mask, last = self.prompts(prompts, device, tails)
        first = last - torch.tensor([len(s) for s in second], device=last.device)
        return ids, mask, torch.stack([first, last], dim=1)


def read_label_logits(model: Any, ids: Any, mask: Any, positions: Any, label_ids: list[int]) -> Any:
    """Logits of the label tokens at ``positions`` (``(B,)`` or ``(B, K)``): ``(B, L)`` or ``(B, K, L)``;
    one decoder pass, and only the label rows of the output head."""
    import torch
    import torch.nn.functional as F

    decoder = getattr(model, model.base_model_prefix)
    hidden = decoder(input_ids=ids, attention_mask=mask).last_hidden_state
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    h = hidden[rows[:, None], positions] if positions.dim() == 2 else hidden[rows, positions]
    head = model.get_output_embeddings()
    bias = head.bias[label_ids] if getattr(head, "bias", None) is not None else None
    return F.linear(h, head.weight[label_ids], bias)


def label_logits(model: Any, encoder: PromptEncoder, label_ids: list[int], prompts: Sequence[str],
                 device: str) -> Any:
    """``(N, 3)`` logits of the class tokens at the answer position (``three_class``)."""
    ids, mask, last = encoder(prompts, device)
    return read_label_logits(model, ids, mask, last, label_ids)


def slot_logits(model: Any, encoder: SlotEncoder, label_ids: list[int], prompts: Sequence[str],
                pairs: Sequence[tuple[str, str]], device: str) -> Any:
    """``(N, 2)`` correctness logits ``logit(yes) − logit(no)`` of each row's two models (``per_model``)."""
    ids, mask, reads = encoder(prompts, pairs, device)
    logits = read_label_logits(model, ids, mask, reads, label_ids)
    return logits[..., 0] - logits[..., 1]


def predict_label_probs(model: Any, encoder: PromptEncoder, label_ids: list[int], prompts: Sequence[str], *,
                        batch_size: int, device: str) -> np.ndarray:
    """``(N, 3)`` softmax over the class tokens, in batches sorted by length (``three_class``)."""
    import torch

    out = np.zeros((len(prompts), 3), dtype=np.float64)
    with torch.inference_mode():
        for idx in length_sorted_batches(prompts, batch_size):
            logits = label_logits(model, encoder, label_ids, [prompts[i] for i in idx], device).float()
            out[idx] = torch.softmax(logits, dim=-1).cpu().numpy()
    return out


def predict_pair_correctness(model: Any, encoder: SlotEncoder, label_ids: list[int], prompts: Sequence[str],
                             pair: tuple[str, str], *, batch_size: int, device: str) -> np.ndarray:
    """``(N, 2)`` P(correct) of the strong and the weak model of ``pair`` (``per_model``), in batches."""
    import torch

    out = np.zeros((len(prompts), 2), dtype=np.float64)
    with torch.inference_mode():
        for idx in length_sorted_batches(prompts, batch_size):
            logits = slot_logits(model, encoder, label_ids, [prompts[i] for i in idx], [pair] * len(idx), device)
            out[idx] = torch.sigmoid(logits.float()).cpu().numpy()
    return out


class CausalLLMRouter(ThreeClassRouter):
    """Scores prompts with a fine-tuned causal LM's label-token probabilities; loads in :meth:`load` only."""

    name: ClassVar[str] = "causal_llm"

    def __init__(self, artifact: Artifact, model: Any, tokenizer: Any, device: str, batch_size: int = 32,
                 pair: tuple[str, str] | None = None):
        """``pair``: the trained model names read for the strong and weak slots (``per_model``); None for
        the ``three_class`` head."""
        super().__init__(artifact)
        self.model = model
        self.device = device
        self.batch_size = int(batch_size)
        self.pair = pair
        cfg = artifact.config
        head = cfg.get("head", "three_class")
        self.encoder = PromptEncoder(tokenizer, cfg["template_pre"], cfg["template_post"],
                                     int(cfg.get("max_length", 256)))
        self.slots = SlotEncoder(self.encoder, cfg.get("slots", SLOTS))
        self.label_ids = label_token_ids(tokenizer, head)
        if list(cfg.get("label_token_ids", self.label_ids)) != self.label_ids:
            raise ArtifactError(f"{artifact.path}: the tokenizer's label tokens {self.label_ids} differ from "
                                f"the trained ones {cfg['label_token_ids']}")

    @classmethod
    def load(cls, artifact_dir: Path | None, **overrides: Any) -> CausalLLMRouter:
        """Load from an artifact directory. Overrides: ``device`` (default cuda if available), ``batch_size``,
        ``strong_model``, ``weak_model``, ``model_aliases`` (the last three for the ``per_model`` head)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if artifact_dir is None:
            raise ArtifactError("the causal_llm router needs a trained artifact directory")
        artifact = load_artifact(artifact_dir, expect_router=cls.name)
        cfg = artifact.config
        head = cfg.get("head", "three_class")
        if head not in HEADS:
            raise ArtifactError(f"{artifact_dir}: unknown causal_llm head {head!r} (this version reads "
                                f"{' and '.join(HEADS)}); retrain the router")
        required = ["template_pre", "template_post"] + (["models", "slots"] if head == "per_model" else [])
        for key in required:
            if key not in cfg:
                raise ArtifactError(f"{artifact_dir}/config.json lacks {key!r}; retrain the router")
        model_dir = verify_model_dir(artifact)
        pair = None
        if head == "per_model":
            models = list(cfg["models"])
            aliases = {**cfg.get("model_aliases", {}), **(overrides.get("model_aliases") or {})}
            i_s, i_w = head_indices(models, overrides.get("strong_model") or cfg["strong_model"],
                                    overrides.get("weak_model") or cfg["weak_model"], aliases,
                                    fallback=(cfg["strong_model"], cfg["weak_model"]))
            pair = (models[i_s], models[i_w])
        else:
            check_pair(artifact, overrides)
        device = pick_device(overrides.get("device"))
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
        model.to(device).eval()  # type: ignore[arg-type]  # transformers types .to() oddly
        return cls(artifact, model, tokenizer, device, overrides.get("batch_size", 32), pair)

    def _predict(self, prompts: list[str]) -> np.ndarray:
        if self.pair is None:
            return predict_label_probs(self.model, self.encoder, self.label_ids, prompts,
                                       batch_size=self.batch_size, device=self.device)
        p = predict_pair_correctness(self.model, self.slots, self.label_ids, prompts, self.pair,
                                     batch_size=self.batch_size, device=self.device)
        return three_class_from_correctness(p[:, 0], p[:, 1])
