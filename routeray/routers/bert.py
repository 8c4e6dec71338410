"""The ``bert`` router (RouteLLM sec. 4): a fine-tuned encoder whose head gives (strong wins, tie, weak
wins) probabilities; the score is ``P(strong wins) + tie_share * P(tie)`` (see :mod:`routeray.train.neural`
for the labels and why ``tie_share`` defaults to 0.5). The head is either the paper's 3-class classifier
(``head: three_class``) or one output per model, P(correct) (``head: per_model``, the default, see
:mod:`routeray.train.bert`), read for the requested strong and weak models.

The artifact keeps a Hugging Face model folder under ``<artifact>/model/`` (safetensors + tokenizer) and
``config.json`` with the hyper-parameters, the pair, the training report and the SHA-256 of every weight
file, checked on load so a swapped or half-copied model folder fails loudly.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from routeray.artifacts import Artifact, load_artifact
from routeray.encoders.base import length_sorted_batches, pick_device
from routeray.errors import ArtifactError, RouterayError
from routeray.paths import sha256_file
from routeray.routers.base import Router
from routeray.routers.pool import PoolScoring

log = logging.getLogger(__name__)

MODEL_DIR = "model"


def weight_files_digest(model_dir: Path) -> dict[str, str]:
    """SHA-256 of each ``*.safetensors`` file of a model folder (recorded at training, checked on load)."""
    return {path.name: sha256_file(path) for path in sorted(model_dir.glob("*.safetensors"))}


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


def score_from_probs(probs: np.ndarray, tie_share: float) -> np.ndarray:
    """P(strong wins) from class probabilities ``(N, 3)``: ``P(strong) + tie_share * P(tie)``, in [0, 1]."""
    probs = np.asarray(probs, dtype=np.float64)
    return np.clip(probs[:, 0] + tie_share * probs[:, 1], 0.0, 1.0)


def three_class_from_correctness(p_strong: np.ndarray, p_weak: np.ndarray) -> np.ndarray:
    """``(N, 3)`` (strong wins, tie, weak wins) from each model's P(correct), taken as independent — the
    golden-label rule: strong right and weak wrong is a strong win, both right or both wrong a tie. With
    ``tie_share = 0.5`` the score is ``(1 + p_strong − p_weak) / 2``."""
    ps, pw = np.asarray(p_strong, dtype=np.float64), np.asarray(p_weak, dtype=np.float64)
    return np.stack([ps * (1 - pw), ps * pw + (1 - ps) * (1 - pw), pw * (1 - ps)], axis=1)


def _predict_batches(model: Any, tokenizer: Any, prompts: Sequence[str], transform: Any, width: int, *,
                     max_length: int, batch_size: int, device: str) -> np.ndarray:
    """``(N, width)`` = ``transform(logits)`` of a sequence-classification model, in batches sorted by length."""
    import torch

    out = np.zeros((len(prompts), width), dtype=np.float64)
    with torch.inference_mode():
        for idx in length_sorted_batches(prompts, batch_size):
            batch = tokenizer([prompts[i] for i in idx], padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt").to(device)
            out[idx] = transform(model(**batch).logits.float()).cpu().numpy()
    return out


def predict_class_probs(model: Any, tokenizer: Any, prompts: Sequence[str], *, max_length: int,
                        batch_size: int, device: str) -> np.ndarray:
    """``(N, 3)`` class probabilities from a 3-class sequence-classification model."""
    import torch

    return _predict_batches(model, tokenizer, prompts, lambda x: torch.softmax(x, dim=-1), 3,
                            max_length=max_length, batch_size=batch_size, device=device)


def predict_correctness(model: Any, tokenizer: Any, prompts: Sequence[str], columns: Sequence[int], *,
                        max_length: int, batch_size: int, device: str) -> np.ndarray:
    """``(N, len(columns))`` P(correct) of the given outputs of a ``per_model`` head."""
    import torch

    cols = list(columns)
    return _predict_batches(model, tokenizer, prompts, lambda x: torch.sigmoid(x[:, cols]), len(cols),
                            max_length=max_length, batch_size=batch_size, device=device)


def head_indices(models: Sequence[str], strong: str, weak: str, aliases: dict[str, str] | None,
                 fallback: tuple[str, str] | None = None) -> tuple[int, int]:
    """Outputs of the strong and weak models in a ``per_model`` head. A model the head does not know is
    mapped by ``aliases`` or its canonical name; failing that it falls back to ``fallback``'s model of that
    side with a warning, or, without a fallback (training), is a clear error."""
    from routeray.routers.mf import ModelResolver

    resolver = ModelResolver(models, aliases)
    out = []
    for side, name, default in (("strong", strong, fallback and fallback[0]), ("weak", weak, fallback and fallback[1])):
        known = resolver.resolve(name, default or "")
        if not known:
            raise RouterayError(f"the {side} model {name!r} has no labels in the training data; map it to a "
                                f"known model with model_aliases={{{name!r}: <model>}} (known: {', '.join(models)})")
        out.append(resolver.index(known, known))
    return out[0], out[1]


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
        return score_from_probs(self.class_probs(prompts), self.tie_share)

    def training_embeddings(self) -> np.ndarray | None:
        """MiniLM embeddings of the training prompts (stored at training time), for decontamination."""
        emb = self.artifact.tensors.get("train_embeddings")
        return None if emb is None else np.asarray(emb, dtype=np.float32)

    @property
    def fingerprint(self) -> str:
        return f"{self.name}-{self.artifact.fingerprint}"


class BertRouter(PoolScoring, ThreeClassRouter):
    """Scores prompts with a fine-tuned encoder; the model loads in :meth:`load`, not at import. With a
    ``per_model`` head it also predicts every pool model's correctness (:meth:`model_quality`)."""

    name: ClassVar[str] = "bert"

    def __init__(self, artifact: Artifact, model: Any, tokenizer: Any, device: str, batch_size: int = 32,
                 head_pair: tuple[int, int] | None = None, model_aliases: dict[str, str] | None = None):
        """``head_pair``: the strong and weak outputs of a ``per_model`` head; None for a 3-class head."""
        from routeray.routers.mf import ModelResolver

        super().__init__(artifact)
        models = list(artifact.config.get("models") or []) if head_pair is not None else []
        self.resolver = ModelResolver(models, {**artifact.config.get("model_aliases", {}), **(model_aliases or {})})
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.batch_size = int(batch_size)
        self.max_length = int(artifact.config.get("max_length", 256))
        self.head_pair = head_pair

    @classmethod
    def load(cls, artifact_dir: Path | None, **overrides: Any) -> BertRouter:
        """Load from an artifact directory. Overrides: ``device`` (default cuda if available), ``batch_size``,
        ``strong_model``, ``weak_model``, ``model_aliases``."""
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if artifact_dir is None:
            raise ArtifactError("the bert router needs a trained artifact directory")
        artifact = load_artifact(artifact_dir, expect_router=cls.name)
        cfg = artifact.config
        model_dir = verify_model_dir(artifact, "bert")
        device = pick_device(overrides.get("device"))
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), dtype=torch.float32)
        head_pair = None
        if cfg.get("head", "three_class") == "per_model":
            models = list(cfg["models"])
            expected = len(models)
            aliases = {**cfg.get("model_aliases", {}), **(overrides.get("model_aliases") or {})}
            head_pair = head_indices(models, overrides.get("strong_model") or cfg["strong_model"],
                                     overrides.get("weak_model") or cfg["weak_model"], aliases,
                                     fallback=(cfg["strong_model"], cfg["weak_model"]))
        else:
            expected = 3
            check_pair(artifact, overrides)
        if model.config.num_labels != expected:
            raise ArtifactError(f"{model_dir} has {model.config.num_labels} outputs, its config.json says "
                                f"{expected}; retrain the router")
        model.to(device).eval()
        return cls(artifact, model, tokenizer, device, overrides.get("batch_size", 32), head_pair,
                   overrides.get("model_aliases"))

    def pool_error(self) -> str | None:
        if self.head_pair is None:
            return (f"{self.artifact.path} has the 3-class (pair) head; retrain with `--set head=per_model` "
                    "to predict each model's correctness")
        return None

    def _quality(self, prompts: list[str], columns: list[int]) -> np.ndarray:
        with self._lock:
            return predict_correctness(self.model, self.tokenizer, prompts, columns, max_length=self.max_length,
                                       batch_size=self.batch_size, device=self.device)

    def _predict(self, prompts: list[str]) -> np.ndarray:
        if self.head_pair is None:
            return predict_class_probs(self.model, self.tokenizer, prompts, max_length=self.max_length,
                                       batch_size=self.batch_size, device=self.device)
        p = predict_correctness(self.model, self.tokenizer, prompts, self.head_pair, max_length=self.max_length,
                                batch_size=self.batch_size, device=self.device)
        return three_class_from_correctness(p[:, 0], p[:, 1])
