"""The ``causal_llm`` router (RouteLLM sec. 4): a fine-tuned causal LM reads an instruction-formatted prompt
and answers with a class token: ``[[1]]`` the strong model wins, ``[[2]]`` a tie, ``[[3]]`` the weak model
wins. The instruction ends with the assistant turn opened by ``[[``, so the class is the next token: one
forward pass per batch reads the three digits' logits at the last prompt position (no generation), and
their softmax gives ``(P(strong), P(tie), P(weak))``; the score is ``P(strong) + tie_share * P(tie)``.

The artifact keeps the fine-tuned Hugging Face model folder under ``<artifact>/model/`` (safetensors and the
tokenizer) and, in ``config.json``, the prompt template, the label tokens and the weights' SHA-256.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from routeray.artifacts import Artifact, load_artifact
from routeray.errors import ArtifactError, RouterayError
from routeray.routers.bert import ThreeClassRouter, check_pair, verify_model_dir
from routeray.routers.embedders import length_sorted_batches

log = logging.getLogger(__name__)

# Short on purpose: on CPU every template token costs as much as a prompt token, for every prompt.
SYSTEM = "You route questions between AI models."
INSTRUCTION = ("Which answer to this question would be better: a strong model's or a weak model's? "
               "[[1]] strong, [[2]] equal, [[3]] weak.\n\n")
ANSWER_PREFIX = "[["
LABEL_TEXTS = ("1", "2", "3")
_SENTINEL = "\u2063ROUTERAY_PROMPT\u2063"


def prompt_template(tokenizer: Any) -> tuple[str, str]:
    """The text before and after the user's prompt: the chat template when the tokenizer has one."""
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": INSTRUCTION + _SENTINEL}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        pre, _, post = text.partition(_SENTINEL)
        return pre, post + ANSWER_PREFIX
    return f"{SYSTEM}\n\n{INSTRUCTION}", f"\n\nAnswer: {ANSWER_PREFIX}"


def label_token_ids(tokenizer: Any) -> list[int]:
    """One token id per class digit; a tokenizer that splits a digit cannot be used."""
    ids = []
    for text in LABEL_TEXTS:
        tok = tokenizer.encode(text, add_special_tokens=False)
        if len(tok) != 1:
            raise RouterayError(f"the tokenizer splits the label {text!r} into {len(tok)} tokens")
        ids.append(tok[0])
    return ids


class PromptEncoder:
    """Builds input ids ``template_pre + prompt (truncated) + template_post``, right-padded, in batches."""

    def __init__(self, tokenizer: Any, pre: str, post: str, max_length: int):
        self.tokenizer = tokenizer
        self.pre = tokenizer.encode(pre, add_special_tokens=False)
        self.post = tokenizer.encode(post, add_special_tokens=False)
        self.budget = max_length - len(self.pre) - len(self.post)
        if self.budget < 8:
            raise RouterayError(f"max_length {max_length} leaves no room for the prompt after the template "
                                f"({len(self.pre) + len(self.post)} tokens)")
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (tokenizer.eos_token_id or 0)

    def __call__(self, prompts: Sequence[str], device: str) -> tuple[Any, Any, Any]:
        """``(input_ids, attention_mask, last_index)`` tensors for one batch."""
        import torch

        bodies = self.tokenizer(list(prompts), add_special_tokens=False, truncation=True,
                                max_length=self.budget)["input_ids"]
        rows = [self.pre + body + self.post for body in bodies]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = torch.tensor(row)
            mask[i, :len(row)] = 1
        last = torch.tensor([len(r) - 1 for r in rows])
        return ids.to(device), mask.to(device), last.to(device)


def label_logits(model: Any, encoder: PromptEncoder, label_ids: list[int], prompts: Sequence[str],
                 device: str) -> Any:
    """``(N, 3)`` logits of the label tokens at the answer position: one decoder pass, no full-vocab head."""
    import torch
    import torch.nn.functional as F

    ids, mask, last = encoder(prompts, device)
    decoder = getattr(model, model.base_model_prefix)
    hidden = decoder(input_ids=ids, attention_mask=mask).last_hidden_state
    h = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    head = model.get_output_embeddings()
    bias = head.bias[label_ids] if getattr(head, "bias", None) is not None else None
    return F.linear(h, head.weight[label_ids], bias)


def predict_label_probs(model: Any, encoder: PromptEncoder, label_ids: list[int], prompts: Sequence[str], *,
                        batch_size: int, device: str) -> np.ndarray:
    """``(N, 3)`` softmax over the label tokens, in batches sorted by length."""
    import torch

    out = np.zeros((len(prompts), 3), dtype=np.float64)
    with torch.inference_mode():
        for idx in length_sorted_batches(prompts, batch_size):
            logits = label_logits(model, encoder, label_ids, [prompts[i] for i in idx], device).float()
            out[idx] = torch.softmax(logits, dim=-1).cpu().numpy()
    return out


class CausalLLMRouter(ThreeClassRouter):
    """Scores prompts with a fine-tuned causal LM's label-token probabilities; loads in :meth:`load` only."""

    name: ClassVar[str] = "causal_llm"

    def __init__(self, artifact: Artifact, model: Any, tokenizer: Any, device: str, batch_size: int = 32):
        super().__init__(artifact)
        self.model = model
        self.device = device
        self.batch_size = int(batch_size)
        cfg = artifact.config
        self.encoder = PromptEncoder(tokenizer, cfg["template_pre"], cfg["template_post"],
                                     int(cfg.get("max_length", 256)))
        self.label_ids = label_token_ids(tokenizer)
        if list(cfg.get("label_token_ids", self.label_ids)) != self.label_ids:
            raise ArtifactError(f"{artifact.path}: the tokenizer's label tokens {self.label_ids} differ from "
                                f"the trained ones {cfg['label_token_ids']}")

    @classmethod
    def load(cls, artifact_dir: Path | None, **overrides: Any) -> CausalLLMRouter:
        """Load from an artifact directory. Overrides: ``device`` (default cuda if available), ``batch_size``."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from routeray.train.neural import pick_device

        if artifact_dir is None:
            raise ArtifactError("the causal_llm router needs a trained artifact directory")
        artifact = load_artifact(artifact_dir, expect_router=cls.name)
        model_dir = verify_model_dir(artifact)
        check_pair(artifact, overrides)
        for key in ("template_pre", "template_post"):
            if key not in artifact.config:
                raise ArtifactError(f"{artifact_dir}/config.json lacks {key!r}; retrain the router")
        device = pick_device(overrides.get("device"))
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
        model.to(device).eval()  # type: ignore[arg-type]  # transformers types .to() oddly
        return cls(artifact, model, tokenizer, device, overrides.get("batch_size", 32))

    def _predict(self, prompts: list[str]) -> np.ndarray:
        return predict_label_probs(self.model, self.encoder, self.label_ids, prompts,
                                   batch_size=self.batch_size, device=self.device)
