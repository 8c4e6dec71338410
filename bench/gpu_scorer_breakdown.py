"""Where a GPU scorer replica's time goes, and which settings move it: a follow-up to
``bench/gpu_scorer_throughput.py`` for the default router (``mf`` on MiniLM).

The first GPU run found ``mf`` at about 1,200 prompts/s at batch 128–256 in float32 on an H200 and float16
slower than float32 below batch 16, which points at work outside the encoder. This script times, on the same
carried ``.gpu/`` (see ``gpu_scorer_throughput.py prepare``), per batch of distinct prompts:

- the stages on their own: tokenising (CPU), the prompt-structure features mf's ``route_boost`` needs (CPU),
  and the encoder forward pass with the copy back (GPU, synchronised);
- ``router.score`` end to end under variants, each in its own process (the tokenizer reads
  ``TOKENIZERS_PARALLELISM`` once): as shipped (sequential tokenizer, encoder sub-batches of 64);
  ``tokpar`` (the Rust tokenizer's thread pool on); ``+sub256`` (one encoder call per batch up to 256);
  ``+tf32`` (TensorFloat-32 matmuls for float32); ``+pad32`` (padding to a multiple of 32 tokens, so the
  encoder sees few distinct shapes).

On the GPU machine (repository root; ``carry: [".gpu"]``, ``timeout_s`` 300)::

    PYTHONUNBUFFERED=1 python3 bench/gpu_scorer_breakdown.py --out $OUT/gpu_scorer_breakdown.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
GPU_DIR = REPO / ".gpu"
VARIANTS = {  # name: (TOKENIZERS_PARALLELISM, encoder sub-batch, tf32, pad multiple)
    "shipped": ("false", 64, False, None),
    "tokpar": ("true", 64, False, None),
    "tokpar+sub256": ("true", 256, False, None),
    "tokpar+sub256+tf32": ("true", 256, True, None),
    "tokpar+sub256+pad32": ("true", 256, False, 32),
}


class _Padded:
    """The embedder's tokenizer, padding to a multiple of ``multiple`` tokens."""

    def __init__(self, tokenizer: Any, multiple: int) -> None:
        self._tokenizer, self._multiple = tokenizer, multiple

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._tokenizer(*args, pad_to_multiple_of=self._multiple, **kwargs)


def _median_ms(fn: Any, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(1e3 * statistics.median(times), 3)


def one_variant(name: str, batches: list[int], seconds: float, stage_batches: list[int]) -> dict[str, Any]:
    import torch
    from gpu_scorer_throughput import read_prompts, time_cells

    from routeray import load_router
    from routeray.routers.prompt_features import structure_features

    _, sub_batch, tf32, pad = VARIANTS[name]
    torch.backends.cuda.matmul.allow_tf32 = tf32
    device = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: a dry run here
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    prompts = read_prompts(GPU_DIR / "prompts.jsonl")
    router = load_router("mf", embedder_options={"model_path": str(GPU_DIR / "minilm"), "device": device,
                                                 "runtime": "torch", "batch_size": sub_batch,
                                                 "gpu_float16": False})  # as measured: before that option
    router.score(["warm-up"])
    emb = router.embedder
    if pad:
        emb._tokenizer = _Padded(emb._tokenizer, pad)
    out: dict[str, Any] = {"cells": {}, "stages": {}}
    for dtype in ("float32", "float16"):
        emb._model.to(getattr(torch, dtype))
        print(f"{name} {dtype}", flush=True)
        out["cells"][dtype] = time_cells(router.score, prompts, batches, seconds, sync)
        for batch in stage_batches:
            chunk = prompts[batch:2 * batch]
            enc = emb._tokenizer(chunk, padding=True, truncation=True, max_length=emb.max_length,
                                 return_tensors="pt")

            def forward(enc: Any = enc) -> None:
                with torch.inference_mode():
                    on = enc.to(device)
                    emb._model(**on).last_hidden_state.float().cpu()

            forward()
            out["stages"][f"{dtype}/b{batch}"] = {
                "tokenize_ms": _median_ms(lambda c=chunk: emb._tokenizer(
                    c, padding=True, truncation=True, max_length=emb.max_length, return_tensors="pt"), 5),
                "features_ms": _median_ms(lambda c=chunk: structure_features(c), 5),
                "forward_ms": _median_ms(forward, 5),
                "padded_tokens": int(enc["input_ids"].shape[1]),
            }
            print(f"  stages b={batch}: {out['stages'][f'{dtype}/b{batch}']}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8, 64, 256])
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--stage-batches", nargs="*", type=int, default=[64, 256],
                    help="batches whose stages are timed apart (in the shipped and tokpar+sub256 variants)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "gpu_scorer_breakdown.json")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one variant, print its JSON last
    args = ap.parse_args(argv)
    if args.one:
        staged = args.one in ("shipped", "tokpar+sub256")
        res = one_variant(args.one, args.batches, args.seconds, args.stage_batches if staged else [])
        print("RESULT " + json.dumps(res))
        return 0
    import torch
    from result_file import write_result

    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu (dry run)", "torch": torch.__version__,
                              "cpu_count": os.cpu_count(), "variants": {}}
    started = time.perf_counter()
    for name in args.variants:
        env = dict(os.environ, TOKENIZERS_PARALLELISM=VARIANTS[name][0], HF_HUB_OFFLINE="1",
                   TRANSFORMERS_OFFLINE="1")
        proc = subprocess.run([sys.executable, __file__, "--one", name, "--seconds", str(args.seconds),
                               "--batches", *map(str, args.batches),
                               "--stage-batches", *map(str, args.stage_batches)], env=env, capture_output=True, text=True)
        lines = proc.stdout.splitlines()
        print("\n".join(line for line in lines if not line.startswith("RESULT ")), flush=True)
        if proc.returncode:
            print(proc.stderr[-3000:], flush=True)
            result["variants"][name] = {"error": proc.stderr[-1000:]}
            continue
        result["variants"][name] = json.loads(next(line for line in lines if line.startswith("RESULT "))[7:])
    result["wall_s"] = round(time.perf_counter() - started, 1)
    lines = ["| variant | dtype | " + " | ".join(f"b={b}" for b in args.batches) + " |",
             "|" + " --- |" * (len(args.batches) + 2)]
    for name, res in result["variants"].items():
        for dtype, rows in res.get("cells", {}).items():
            lines.append(f"| {name} | {dtype} | " + " | ".join(f"{r['prompts_per_s']:,.0f}" for r in rows) + " |")
    print("\n".join(lines))
    write_result(args.out, result, note=f" in {result['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
