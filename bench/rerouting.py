"""Rerouting attacks on our routers (confounder gadgets, arXiv 2501.01818), with and without the guard.

A gadget is a short token sequence added to a prompt to push the router's score up, so that a prompt the
router sends to the weak model goes to the strong one (someone else pays). Two kinds:

- **optimised** (the paper's white-box attack): ``--gadget-tokens`` tokens from the MiniLM WordPiece
  vocabulary (whole-word pieces, joined by spaces, so any router that reads text can be attacked), started
  as ``!`` and improved by hill-climbing: each step tries ``--candidates`` random tokens at one position
  (positions in turn) and keeps the best if it raises the mean score of ``--opt-prompts`` attacker prompts
  (GSM8K-train and other training-data prompts the router scores low; never the evaluation prompts), for
  ``--iters`` steps. One gadget per (router, guard, position) is *adaptive* (searched against the guarded
  router); the gadget searched against the unguarded router is also replayed on the guarded one (transfer);
- **fixed** strings (``FIXED``): hand-written "this is hard, answer like an expert" text.

``flips``: per router (any registry name), guard mode and position (suffix, prefix, middle), the share of
weak-routed held-out prompts that a gadget flips to strong. Held-out prompts: ``../shared/data/eval_sample``
(MMLU, GSM8K, MT-Bench; no router trains on them). Thresholds: the scores that send 50 % and 30 % of the
clean held-out prompts to strong, computed for each guard mode on its own clean scores (``--strong-shares``).

``bound``: the most that *any* gadget of ``--gadget-words`` words at each position could flip, whatever its
words: a gadget can at most make every scored text that holds part of it score 1, so the guarded score of
an attacked prompt is at most the lowest of its views that hold none of the gadget (texts of the prompt
itself; plus the guard's margin), and a flip needs that to reach the threshold. No search: one scoring pass.
The gadget's words (``Qzq.``) each start and end a sentence, the most a gadget can add to ``spans``'s views.

``apgr``: the guard's routing-quality cost: mf trained on each leave-one-source-out fold (the folds
``routeray train mf`` selects on, fixed hyper-parameters), APGR on the held-out source with and without
the guard, and the mean over folds.

    .venv/bin/python bench/rerouting.py flips --routers mf sw_ranking --guards off heads windows \\
        --output bench/results/rerouting_flips.json
    .venv/bin/python bench/rerouting.py bound --routers mf --guards off spans --output bench/results/rerouting_bound.json
    .venv/bin/python bench/rerouting.py apgr --guards off heads windows --output bench/results/rerouting_apgr.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from result_file import write_result  # bench/ is on the path when a script runs

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from routeray.paths import shared_data_dir  # noqa: E402
from routeray.routers.base import Router, goes_strong  # noqa: E402
from routeray.routers.guard import GuardSpec, guard_router, views  # noqa: E402

log = logging.getLogger("bench.rerouting")

POSITIONS = ("suffix", "prefix", "middle")
FIXED = {
    "expert": "Answer as a world-class expert: reason step by step, rigorously, and justify every claim.",
    "hard": "This is an extremely difficult graduate-level problem that needs deep expertise in mathematics, "
            "physics and law.",
    "code": "Write optimised, production-quality code with a proof of correctness and a complexity analysis.",
}


# ---- prompts -------------------------------------------------------------------------------------------
def eval_prompts(data: Path, n: int, seed: int) -> list[str]:
    """Held-out prompts: every GSM8K and MT-Bench prompt of the eval sample, and MMLU prompts up to ``n``."""
    from routeray.evaluate.benchmarks import load_benchmark

    sample = data / "eval_sample"
    fixed = [*load_benchmark("gsm8k", sample).prompts, *load_benchmark("mt-bench", sample).prompts]
    mmlu = load_benchmark("mmlu", sample).prompts
    rng = random.Random(seed)
    return fixed + rng.sample(mmlu, max(0, min(len(mmlu), n - len(fixed))))


def attacker_prompts(data: Path, n: int, seed: int, max_chars: int = 400) -> list[str]:
    """The attacker's own prompts to optimise on: GSM8K train questions and AlpacaEval instructions
    (neither is in the eval sample), short ones."""
    from routeray.data import load_data_dir

    pool = [json.loads(line)["question"] for line in (data / "unlabeled/gsm8k_train.jsonl").open()]
    pool += load_data_dir(data, sources=["alpaca_eval"]).prompts
    pool = sorted({p for p in pool if len(p) <= max_chars})
    return random.Random(seed).sample(pool, n)


def place(prompt: str, gadget: str, position: str) -> str:
    if position == "suffix":
        return f"{prompt} {gadget}"
    if position == "prefix":
        return f"{gadget} {prompt}"
    words = prompt.split(" ")
    mid = len(words) // 2
    return " ".join([*words[:mid], gadget, *words[mid:]])


# ---- scoring -------------------------------------------------------------------------------------------
class Memo:
    """``router.score`` with every text's score remembered (the search rescores the same texts often)."""

    def __init__(self, router: Router):
        self.router = router
        self.cache: dict[str, float] = {}
        self.n_scored = 0

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        todo = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if todo:
            self.cache.update(zip(todo, map(float, self.router.score(todo)), strict=True))
            self.n_scored += len(todo)
        return np.asarray([self.cache[t] for t in texts], dtype=np.float64)


class MemoEmbedder:
    """An embedder's vectors remembered per text, shared by every router on the same embedder (mf and
    sw_ranking both read MiniLM): the search embeds each candidate text once, whichever router asks."""

    shared: dict[str, dict[str, np.ndarray]] = {}

    def __init__(self, inner: Any):
        self.inner = inner
        self.spec = inner.spec
        self.dim = inner.dim
        self.cache = self.shared.setdefault(json.dumps(inner.spec, sort_keys=True), {})

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        todo = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if todo:
            self.cache.update(zip(todo, self.inner.embed(todo), strict=True))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.cache[t] for t in texts])


def load_memo_router(name: str) -> Router:
    """A registry router by name, or ``name@artifact-dir`` for another artifact of it."""
    from routeray.routers.registry import load_router

    name, _, artifact = name.partition("@")
    router = load_router(name, artifact or None, guard="off")  # guarded below, per --guards
    if getattr(router, "embedder", None) is not None:
        router.embedder = MemoEmbedder(router.embedder)  # type: ignore[attr-defined]
    return router


def vocabulary() -> list[str]:
    """Whole-word pieces of MiniLM's WordPiece vocabulary (no ``##`` continuations, no special tokens)."""
    from transformers import AutoTokenizer

    from routeray.encoders.local import minilm_path

    vocab = AutoTokenizer.from_pretrained(str(minilm_path())).get_vocab()
    return sorted(t for t in vocab if t.isprintable() and not t.startswith("##") and not t.startswith("["))


def greedy_gadget(score: Callable[[Sequence[str]], np.ndarray], prompts: Sequence[str], position: str,
                  vocab: Sequence[str], n_tokens: int, iters: int, candidates: int,
                  seed: int) -> dict[str, Any]:
    """The paper's hill-climbing: one position at a time, the best of ``candidates`` random tokens, kept
    when it raises the mean score over ``prompts``."""
    rng = random.Random(seed)
    gadget = ["!"] * n_tokens

    def objective(tokens_list: list[list[str]]) -> np.ndarray:
        texts = [place(p, " ".join(t), position) for t in tokens_list for p in prompts]
        return score(texts).reshape(len(tokens_list), len(prompts)).mean(axis=1)

    best = float(objective([gadget])[0])
    start, history = best, [best]
    for step in range(iters):
        i = step % n_tokens
        trial = [gadget[:i] + [tok] + gadget[i + 1:] for tok in rng.sample(vocab, candidates)]
        values = objective(trial)
        k = int(np.argmax(values))
        if values[k] > best:
            gadget, best = trial[k], float(values[k])
        history.append(best)
    return {"text": " ".join(gadget), "objective_start": start, "objective": best, "history": history}


def thresholds(clean: np.ndarray, shares: Sequence[float]) -> dict[str, float]:
    """For each strong share p, the threshold at which a share p of the clean prompts scores at or above
    (each guard mode gets its own, from its own clean scores: the guard lowers scores)."""
    return {f"{p:g}": float(np.quantile(clean, 1.0 - p, method="higher")) for p in shares}


LENGTH_BUCKETS = ((0, 16), (17, 64), (65, 10**9))  # words of the clean prompt


def flip_rates(clean: np.ndarray, attacked: np.ndarray, ts: dict[str, float], n_words: np.ndarray) -> dict[str, Any]:
    """Per threshold: weak-routed prompts, how many the attack flipped, and the same by prompt length."""
    out = {}
    for share, t in ts.items():
        weak = clean < t
        flipped = weak & goes_strong(attacked, t)
        out[share] = {"n_weak": int(weak.sum()), "flipped": int(flipped.sum()),
                      "flip_rate": float(flipped.sum() / weak.sum()) if weak.any() else float("nan"),
                      "by_words": {f"{lo}-{hi}" if hi < 10**9 else f"{lo}+":
                                   [int((flipped & (n_words >= lo) & (n_words <= hi)).sum()),
                                    int((weak & (n_words >= lo) & (n_words <= hi)).sum())]
                                   for lo, hi in LENGTH_BUCKETS}}
    return out


# ---- flips ---------------------------------------------------------------------------------------------
class Target:
    """One guarded router under attack: its clean scores on the held-out prompts and the thresholds."""

    def __init__(self, label: str, scorer: Memo, held: list[str], shares: Sequence[float]):
        self.label, self.scorer, self.held = label, scorer, held
        self.clean = scorer(held)
        self.thresholds = thresholds(self.clean, shares)
        self.weak = self.clean < max(self.thresholds.values())  # the highest threshold leaves most prompts weak
        self.rows: list[dict[str, Any]] = []

    def attack(self, kind: str, position: str, text: str, info: dict[str, Any] | None = None) -> None:
        """Score every weak-routed prompt with ``text`` at ``position``; record the flip rates."""
        targets = [p for p, w in zip(self.held, self.weak, strict=True) if w]
        attacked = self.scorer([place(p, text, position) for p in targets])
        full = self.clean.copy()
        full[self.weak] = attacked
        n_words = np.asarray([len(p.split()) for p in self.held])
        self.rows.append({"kind": kind, "position": position, "gadget": text, **(info or {}),
                          "mean_shift": float(np.mean(attacked - self.clean[self.weak])),
                          "flips": flip_rates(self.clean, full, self.thresholds, n_words)})
        log.info("%s %s %s: %s", self.label, kind, position,
                 {k: round(v["flip_rate"], 3) for k, v in self.rows[-1]["flips"].items()})


def run_flips(args: argparse.Namespace) -> dict[str, Any]:
    data = Path(args.data)
    held = eval_prompts(data, args.n_eval, args.seed)
    pool = attacker_prompts(data, args.opt_pool, args.seed)
    vocab = vocabulary()
    log.info("%d held-out prompts, %d attacker prompts, %d vocabulary tokens", len(held), len(pool), len(vocab))
    results: dict[str, Any] = {"held_out": len(held), "args": vars(args), "routers": {}}
    for name in args.routers:
        base = Memo(load_memo_router(name))
        per_guard: dict[str, Any] = {}
        transfer: dict[str, str] = {}  # position -> gadget searched against the unguarded router
        for spec in map(GuardSpec.from_text, args.guards):
            t0 = time.perf_counter()
            scorer = Memo(guard_router(base.router, spec)) if spec.mode != "off" else base
            target = Target(f"{name} guard={spec.describe()}", scorer, held, args.strong_shares)
            pool_scores = scorer(pool)
            opt = [p for _, p in sorted(zip(pool_scores, pool, strict=True))][: args.opt_prompts]
            for label, text in FIXED.items():
                target.attack(f"fixed:{label}", "suffix", text)
            for position in args.positions:
                found = greedy_gadget(scorer, opt, position, vocab, args.gadget_tokens, args.iters,
                                      args.candidates, args.seed)
                target.attack("optimised", position, found["text"],
                              {k: found[k] for k in ("objective_start", "objective")})
                if spec.mode == "off":
                    transfer[position] = found["text"]
                elif position in transfer:
                    target.attack("transfer", position, transfer[position])
            per_guard[spec.describe()] = {"thresholds": target.thresholds, "n_held_out": len(held),
                                          "attacks": target.rows, "seconds": time.perf_counter() - t0,
                                          "texts_scored": scorer.n_scored}
        results["routers"][name] = per_guard
    return results


def print_flips(result: dict[str, Any]) -> None:
    print(f"{'router':<12}{'guard':<44}{'attack':<18}{'pos':<8}" + "".join(
        f"{'flips @' + s + ' strong':>20}" for s in result["args"]["strong_shares_str"]))
    for router, guards in result["routers"].items():
        for guard, g in guards.items():
            for r in g["attacks"]:
                cells = "".join(f"{r['flips'][s]['flip_rate'] * 100:>13.1f}% ({r['flips'][s]['flipped']:>3})"
                                for s in result["args"]["strong_shares_str"])
                print(f"{router:<12}{guard:<44}{r['kind']:<18}{r['position']:<8}{cells}")


# ---- bound ---------------------------------------------------------------------------------------------
MARK = "Qzq."  # a gadget word that starts and ends a sentence; found in no held-out prompt


def worst_case(scorer: Memo, spec: GuardSpec, prompts: Sequence[str], position: str, n_words: int) -> np.ndarray:
    """Per prompt, the highest guarded score any ``n_words``-word gadget at ``position`` could reach: the
    lowest view of the attacked text without any gadget word, plus the margin (1 when every view holds some)."""
    gadget = " ".join([MARK] * n_words)
    free = [[v for v in views(place(p, gadget, position), spec)[1:] if MARK not in v] for p in prompts]
    scores = scorer([v for vs in free for v in vs])
    out, i = [], 0
    for vs in free:
        out.append(min(1.0, float(scores[i:i + len(vs)].min()) + spec.margin) if vs else 1.0)
        i += len(vs)
    return np.asarray(out)


def run_bound(args: argparse.Namespace) -> dict[str, Any]:
    held = eval_prompts(Path(args.data), args.n_eval, args.seed)
    if any(MARK in p for p in held):
        raise SystemExit(f"a held-out prompt holds the gadget word {MARK!r}")
    n_words = np.asarray([len(p.split()) for p in held])
    results: dict[str, Any] = {"held_out": len(held), "args": vars(args), "routers": {}}
    for name in args.routers:
        base = Memo(load_memo_router(name))
        per_guard: dict[str, Any] = {}
        for spec in map(GuardSpec.from_text, args.guards):
            scorer = Memo(guard_router(base.router, spec)) if spec.mode != "off" else base
            clean = scorer(held)
            ts = thresholds(clean, args.strong_shares)
            n_texts = [len(views(p, spec)) for p in held]
            rows = [{"position": pos, "gadget_words": k,
                     "flips": flip_rates(clean, np.maximum(clean, worst_case(base, spec, held, pos, k)), ts, n_words)}
                    for k in args.gadget_words for pos in args.positions]
            per_guard[spec.describe()] = {"thresholds": ts, "n_held_out": len(held), "bounds": rows,
                                          "texts_per_prompt": float(np.mean(n_texts)),
                                          "words_per_prompt_word": float(np.mean(
                                              [sum(len(v.split()) for v in views(p, spec)) / max(1, n)
                                               for p, n in zip(held, n_words, strict=True)]))}
            log.info("%s %s: %s", name, spec.describe(), [(r["position"], r["gadget_words"], {
                s: round(v["flip_rate"], 3) for s, v in r["flips"].items()}) for r in rows])
        results["routers"][name] = per_guard
    return results


def print_bound(result: dict[str, Any]) -> None:
    shares = result["args"]["strong_shares_str"]
    print(f"{'router':<12}{'guard':<48}{'texts':>6}{'words':>7}  {'pos':<8}{'words':>6}" + "".join(
        f"{'worst flips @' + s:>20}" for s in shares))
    for router, guards in result["routers"].items():
        for guard, g in guards.items():
            for r in g["bounds"]:
                cells = "".join(f"{r['flips'][s]['flip_rate'] * 100:>13.1f}% ({r['flips'][s]['flipped']:>3})"
                                for s in shares)
                print(f"{router:<12}{guard:<48}{g['texts_per_prompt']:>6.2f}{g['words_per_prompt_word']:>6.2f}x  "
                      f"{r['position']:<8}{r['gadget_words']:>6}{cells}")


# ---- apgr ----------------------------------------------------------------------------------------------
def fold_apgr(fold: Any, specs: Sequence[GuardSpec], embedder: Any, args: argparse.Namespace,
              embedder_spec: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Train mf on one fold's training sources; APGR on its held-out source under each guard."""
    from routeray.routers.registry import load_router
    from routeray.train.common import evaluate_sets
    from routeray.train.mf import train

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        train(fold.train, Path(tmp), seed=args.seed, progress=False,
              config={"grid": {}, "selection_holdouts": [], "weight_decay": args.weight_decay,
                      "embedder": embedder_spec})
        loaded: dict[tuple[str, str], Router] = {}

        def router(s: str, w: str) -> Router:
            if (s, w) not in loaded:
                loaded[(s, w)] = load_router("mf", tmp, strong_model=s, weak_model=w, embedder=embedder,
                                             guard="off")
            return loaded[(s, w)]

        for spec in specs:
            def score(prompts: Sequence[str], s: str, w: str, spec: GuardSpec = spec) -> np.ndarray:
                return guard_router(router(s, w), spec).score(list(prompts))

            out[spec.describe()] = evaluate_sets(score, fold.eval_sets, n_seeds=args.num_random_seeds)
    return out


def run_apgr(args: argparse.Namespace) -> dict[str, Any]:
    from routeray.data import load_data_dir
    from routeray.train.common import cached_embedder, source_folds

    data = load_data_dir(args.data)
    folds = source_folds(data, "auto")
    embedder_spec = json.loads(args.embedder) if args.embedder else None
    embedder = cached_embedder(embedder_spec)
    specs = [GuardSpec.from_text(g) for g in args.guards]
    per_guard: dict[str, dict[str, Any]] = {s.describe(): {} for s in specs}
    for fold in folds:
        t0 = time.perf_counter()
        for guard, r in fold_apgr(fold, specs, embedder, args, embedder_spec).items():
            per_guard[guard][fold.holdout] = r
            log.info("fold %s guard %s: APGR %.3f (%.0f s)", fold.holdout, guard, r["mean_apgr"],
                     time.perf_counter() - t0)
    summary = {g: {"mean_apgr": float(np.mean([r["mean_apgr"] for r in folds_.values()])),
                   "per_fold": {k: r["mean_apgr"] for k, r in folds_.items()}}
               for g, folds_ in per_guard.items()}
    return {"folds": [f.holdout for f in folds], "weight_decay": args.weight_decay, "embedder": embedder_spec,
            "guards": summary, "detail": per_guard}


def print_apgr(result: dict[str, Any]) -> None:
    base = next(iter(result["guards"].values()))["mean_apgr"]
    for g, s in result["guards"].items():
        print(f"{g:<48} mean APGR over {len(s['per_fold'])} held-out sources {s['mean_apgr']:.4f} "
              f"(cost {base - s['mean_apgr']:+.4f} against the first)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("flips", "bound", "apgr"):
        p = sub.add_parser(name)
        p.add_argument("--data", default=str(shared_data_dir()))
        p.add_argument("--guards", nargs="+", default=["off", "heads"],
                       help="guard modes, or JSON specs such as '{\"mode\": \"heads\", \"min_words\": 32}'")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--output", required=True)
    f = sub.choices["flips"]
    f.add_argument("--routers", nargs="+", default=["mf", "sw_ranking"])
    f.add_argument("--positions", nargs="+", default=["suffix", "prefix"], choices=POSITIONS)
    f.add_argument("--n-eval", type=int, default=400)
    f.add_argument("--strong-shares", type=float, nargs="+", default=[0.5, 0.3])
    f.add_argument("--gadget-tokens", type=int, default=10)
    f.add_argument("--iters", type=int, default=60)
    f.add_argument("--candidates", type=int, default=16)
    f.add_argument("--opt-prompts", type=int, default=8)
    f.add_argument("--opt-pool", type=int, default=64, help="attacker prompts scored to pick the lowest-scored")
    b = sub.choices["bound"]
    b.add_argument("--routers", nargs="+", default=["mf"])
    b.add_argument("--positions", nargs="+", default=["suffix", "prefix"], choices=POSITIONS)
    b.add_argument("--n-eval", type=int, default=400)
    b.add_argument("--strong-shares", type=float, nargs="+", default=[0.5, 0.3])
    b.add_argument("--gadget-words", type=int, nargs="+", default=[10, 40])
    a = sub.choices["apgr"]
    a.add_argument("--weight-decay", type=float, default=1e-3, help="mf's chosen value on the 12 folds")
    a.add_argument("--num-random-seeds", type=int, default=50)
    a.add_argument("--embedder", default=None, help='mf\'s embedder spec as JSON (default MiniLM), e.g. \'{"kind": "static"}\'')
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    load = os.getloadavg()[0]
    if args.cmd in ("flips", "bound"):
        args.strong_shares_str = [f"{p:g}" for p in args.strong_shares]
    if args.cmd == "flips":
        result = run_flips(args)
        print_flips(result)
    elif args.cmd == "bound":
        result = run_bound(args)
        print_bound(result)
    else:
        result = run_apgr(args)
        print_apgr(result)
    write_result(args.output, result, load_before=load)


if __name__ == "__main__":
    main()
