"""The ``bert`` router (RouteLLM sec. 4): a fine-tuned encoder with a 3-class head over
``(strong wins, tie, weak wins)``; the score is ``P(strong wins) + tie_share * P(tie)`` (see
:mod:`routeray.train.neural` for the labels and why ``tie_share`` defaults to 0.5).

The artifact keeps a Hugging Face model folder under ``<artifact>/model/`` (safetensors + tokenizer) and
``config.json`` with the hyper-parameters, the pair, the training report and the SHA-256 of every weight
file, checked on load so a swapped or half-copied model folder fails loudly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from routeray.artifacts import Artifact, load_artifact
from routeray.errors import ArtifactError
from routeray.routers.base import Router
from routeray.routers.embedders import length_sorted_batches

log = logging.getLogger(__name__)

MODEL_DIR = "model"


def weight_files_digest(model_dir: Path) -> dict[str, str]:
    """SHA-256 of each ``*.safetensors`` file of a model folder (recorded at training, checked on load)."""
    out = {}
    for path in sorted(model_dir.glob("*.safetensors")):
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        out[path.name] = h.hexdigest()
    return out


def verify_model_dir(artifact: Artifact, expect_model_type: str | None = None) -> Path:
    """The artifact's model folder, after checking it is there and is the one the artifact was trained with."""
    assert artifact.path is not None
    model_dir = artifact.path / MODEL_DIR
    cfg_file = model_dir / "config.json"
    if not cfg_file.is_file():
        raise ArtifactError(f"{artifact.path}: the {artifact.router} router needs its model folder "
                            f"{model_dir} (config.json + safetensors), which is missing; retrain it with "
                            f"`routeray train {artifact.router}` (or `make artifacts`)")
    model_type = json.loads(cfg_file.read_text()).get("model_type")
    expected_type = artifact.config.get("model_type", expect_model_type)
    if expected_type and model_type != expected_type:
        raise ArtifactError(f"{model_dir} holds a {model_type!r} model, but {artifact.path} was trained "
                            f"with a {expected_type!r} model")
    expected = artifact.config.get("model_files") or {}
    if not expected:
        raise ArtifactError(f"{artifact.path}/config.json lists no model files; retrain the router")
    found = weight_files_digest(model_dir)
    if found != expected:
        missing = sorted(set(expected) - set(found))
        raise ArtifactError(
            f"{model_dir} does not match {artifact.path}/config.json "
            + (f"(missing {', '.join(missing)})" if missing else "(weights differ: another or a corrupt model)")
            + "; retrain the router or restore its model folder")
    return model_dir


def check_pair(artifact: Artifact, overrides: dict[str, Any]) -> None:
    """A router scores the pair it was trained for; asking for another pair is allowed (models of the same
    tiers, or unseen ones mapped by configuration) but said plainly in the log, never a KeyError."""
    from routeray.data import canonical_model

    cfg = artifact.config
    pair = artifact.report.get("pair", {})
    for side in ("strong", "weak"):
        asked = overrides.get(f"{side}_model")
        if asked is None:
            continue
        known = pair.get(f"{side}_models") or [cfg.get(f"{side}_model")]
        if canonical_model(asked) not in known:
            log.warning("%s was trained for %s model(s) %s; %r is scored as one of them", artifact.path,
                        side, known, asked)


def predict_class_probs(model: Any, tokenizer: Any, prompts: Sequence[str], *, max_length: int,
                        batch_size: int, device: str) -> np.ndarray:
    """``(N, 3)`` class probabilities from a sequence-classification model, in batches sorted by length."""
    import torch

    out = np.zeros((len(prompts), 3), dtype=np.float64)
    with torch.inference_mode():
        for idx in length_sorted_batches(prompts, batch_size):
            batch = tokenizer([prompts[i] for i in idx], padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt").to(device)
            logits = model(**batch).logits.float()
            out[idx] = torch.softmax(logits, dim=-1).cpu().numpy()
    return out


class ThreeClassRouter(Router):
    """Shared by ``bert`` and ``causal_llm``: a model that gives (strong wins, tie, weak wins) probabilities;
    the score is ``P(strong wins) + tie_share * P(tie)``. Subclasses implement :meth:`_predict`."""

    def __init__(self, artifact: Artifact):
        self.artifact = artifact
        self.tie_share = float(artifact.config.get("tie_share", 0.5))
        self._lock = threading.Lock()

    def _predict(self, prompts: list[str]) -> np.ndarray:
        """``(N, 3)`` class probabilities for a non-empty list of prompts."""
        raise NotImplementedError

    def class_probs(self, prompts: Sequence[str]) -> np.ndarray:
        """``(N, 3)`` probabilities of (strong wins, tie, weak wins)."""
        if len(prompts) == 0:
            return np.zeros((0, 3))
        with self._lock:  # one forward pass at a time per model: safe under threaded servers
            return self._predict(list(prompts))

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        from routeray.train.neural import score_from_probs

        return score_from_probs(self.class_probs(prompts), self.tie_share)

    def training_embeddings(self) -> np.ndarray | None:
        """MiniLM embeddings of the training prompts (stored at training time), for decontamination."""
        emb = self.artifact.tensors.get("train_embeddings")
        return None if emb is None else np.asarray(emb, dtype=np.float32)

    @property
    def fingerprint(self) -> str:
        return f"{self.name}-{self.artifact.fingerprint}"


class BertRouter(ThreeClassRouter):
    """Scores prompts with a fine-tuned encoder classifier; the model loads in :meth:`load`, not at import."""

    name: ClassVar[str] = "bert"

    def __init__(self, artifact: Artifact, model: Any, tokenizer: Any, device: str, batch_size: int = 32):
        super().__init__(artifact)
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.batch_size = int(batch_size)
        self.max_length = int(artifact.config.get("max_length", 256))

    @classmethod
    def load(cls, artifact_dir: Path | None, **overrides: Any) -> BertRouter:
        """Load from an artifact directory. Overrides: ``device`` (default cuda if available), ``batch_size``."""
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from routeray.train.neural import pick_device

        if artifact_dir is None:
            raise ArtifactError("the bert router needs a trained artifact directory")
        artifact = load_artifact(artifact_dir, expect_router=cls.name)
        model_dir = verify_model_dir(artifact, "bert")
        check_pair(artifact, overrides)
        device = pick_device(overrides.get("device"))
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), dtype=torch.float32)
        if model.config.num_labels != 3:
            raise ArtifactError(f"{model_dir} has {model.config.num_labels} labels, the bert router needs 3")
        model.to(device).eval()
        return cls(artifact, model, tokenizer, device, overrides.get("batch_size", 32))

    def _predict(self, prompts: list[str]) -> np.ndarray:
        return predict_class_probs(self.model, self.tokenizer, prompts, max_length=self.max_length,
                                   batch_size=self.batch_size, device=self.device)
