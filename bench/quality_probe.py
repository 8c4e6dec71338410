"""Routing-quality probe: which training recipe makes an embedding router beat random on HELD-OUT data?

Every recipe sees frozen MiniLM embeddings (through the on-disk EmbeddingCache) of the training prompts and
is scored by APGR on a source it never saw (leave-one-source-out, held-out prompts within cosine 0.95 of a
training prompt dropped), beside the random router's 95 % interval (100 seeds). Recipes:

- ``pooled``: one logistic regression on "did the strong model beat the weak one" (golden pairs
  GPT-4-1106/gpt-4o vs Mixtral) plus AlpacaEval judgments of GPT-4-1106 vs every model, weight 1 each:
  the quick probe of QUALITY.md.
- ``heads[-w]``: one correctness head per model (P(correct | prompt, model)) on every model's golden
  labels, sharing nothing but the input; AlpacaEval judgments enter as Bradley-Terry pairs on the heads'
  logits with total weight ``w`` relative to golden labels. Routed on ``gap`` = P(strong right) -
  P(weak right), on ``weakfail`` = 1 - P(weak right), on ``hard`` = 1 - mean over models, or on ``win`` =
  P(strong right) x (1 - P(weak right)) (strong right where weak is wrong, if independent).
- ``mlp``: the same with a shared 64-unit hidden layer (an MF-like shared prompt representation).
- ``+feat``: hand features appended (log length, digits, code, number of options, math symbols).
- ``knn``: 1 - mean correctness of the 25 nearest training prompts (weak model, or all models).

Model selection uses only the held-out training sources; ``--final`` then trains the chosen recipes on
all training data and evaluates once on ../shared/data/eval_sample (never trained on, never tuned on).

    .venv/bin/python bench/quality_probe.py            # held-out table
    .venv/bin/python bench/quality_probe.py --final    # + eval_sample check of the best recipes
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from routeray.data import leave_source_out, load_data_dir, split_by_prompt  # noqa: E402
from routeray.data.models import GPT4_1106, MIXTRAL  # noqa: E402
from routeray.data.schema import PreferenceData  # noqa: E402
from routeray.evaluate.benchmarks import load_benchmark  # noqa: E402
from routeray.evaluate.metrics import apgr, random_baseline  # noqa: E402
from routeray.train.common import embed_texts  # noqa: E402

log = logging.getLogger("bench.quality_probe")
GPT4O = "gpt-4o-2024-05-13"
CONTAMINATION_COS = 0.95
HOLDOUTS = ("arena_bench", "routerbench/arc_challenge", "routerbench/winograde", "routerbench/mbpp",
            "mmlu_pro/math", "mmlu_pro/chemistry", "mmlu_pro/business", "mmlu_pro/biology")


def strong_for(source: str) -> str:
    """The strong model a held-out source is evaluated with (MMLU-Pro only has gpt-4o)."""
    return GPT4O if source.startswith("mmlu_pro") else GPT4_1106


# ----------------------------------------------------------------------------------------------- features
_OPTION = re.compile(r"^\s*\(?[A-J][.)]\s", re.M)
_CODE = re.compile(r"def |class |\breturn\b|\{|\}|;\s*$|```|import ", re.M)
_MATH = re.compile(r"[=+\-*/^√∫∑]|\d")


def hand_features(prompts: list[str]) -> np.ndarray:
    """Five cheap prompt features, roughly standardised."""
    rows = []
    for p in prompts:
        rows.append([np.log1p(len(p)) - 5.5, np.log1p(len(re.findall(r"\d", p))) - 1.5,
                     min(len(_CODE.findall(p)), 10) / 5.0, len(_OPTION.findall(p)) / 5.0,
                     np.log1p(len(_MATH.findall(p))) - 2.0])
    return np.asarray(rows, dtype=np.float32)


class Embeddings:
    """Prompt -> unit MiniLM vector, filled once from the EmbeddingCache."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.matrix = np.zeros((0, 384), dtype=np.float32)

    def add(self, prompts: list[str]) -> None:
        new = [p for p in dict.fromkeys(prompts) if p not in self.index]
        if new:
            vecs, _ = embed_texts(new, None, desc="embedding")
            for p in new:
                self.index[p] = len(self.index)
            self.matrix = np.vstack([self.matrix, vecs.astype(np.float32)])

    def __call__(self, prompts: list[str]) -> np.ndarray:
        return self.matrix[[self.index[p] for p in prompts]]


# ------------------------------------------------------------------------------------------ training sets
@dataclass
class TrainSet:
    prompts: list[str]
    models: list[str]
    y: np.ndarray  # prompts x models, NaN = no label
    pairs: np.ndarray  # (n, 3) int: prompt, model_a, model_b
    p_a: np.ndarray
    pair_w: np.ndarray


def build_trainset(data: PreferenceData) -> TrainSet:
    """Golden labels as a prompt x model matrix (mean of duplicates) and AlpacaEval pairs on the same axes."""
    prompts = sorted({g.prompt for g in data.golden} | {j.prompt for j in data.judgments})
    models = sorted({g.model for g in data.golden} | {j.model_a for j in data.judgments}
                    | {j.model_b for j in data.judgments})
    pi = {p: i for i, p in enumerate(prompts)}
    mi = {m: i for i, m in enumerate(models)}
    tot = np.zeros((len(prompts), len(models)))
    cnt = np.zeros_like(tot)
    for g in data.golden:
        tot[pi[g.prompt], mi[g.model]] += g.score
        cnt[pi[g.prompt], mi[g.model]] += 1
    with np.errstate(invalid="ignore"):
        y = np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)
    pairs = np.asarray([(pi[j.prompt], mi[j.model_a], mi[j.model_b]) for j in data.judgments],
                       dtype=np.int64).reshape(-1, 3)
    return TrainSet(prompts, models, y, pairs, np.asarray([j.p_a for j in data.judgments], dtype=np.float32),
                    np.asarray([j.weight for j in data.judgments], dtype=np.float32))


# ------------------------------------------------------------------------------------------------- models
def fit_heads(x: np.ndarray, ts: TrainSet, hidden: int, alpaca_weight: float, steps: int = 300,
              l2: float = 1e-3, seed: int = 0) -> torch.nn.Module:
    """Per-model correctness logits s(x, m); golden BCE + ``alpaca_weight`` x Bradley-Terry on pairs."""
    torch.manual_seed(seed)
    d, m = x.shape[1], len(ts.models)
    net = (torch.nn.Linear(d, m) if hidden == 0 else
           torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, m)))
    xt = torch.from_numpy(x)
    mask = torch.from_numpy(~np.isnan(ts.y))
    yt = torch.from_numpy(np.nan_to_num(ts.y).astype(np.float32))
    pairs = torch.from_numpy(ts.pairs)
    pa, pw = torch.from_numpy(ts.p_a), torch.from_numpy(ts.pair_w)
    opt = torch.optim.Adam(net.parameters(), lr=0.01, weight_decay=l2)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    for _ in range(steps):
        opt.zero_grad()
        s = net(xt)
        loss = bce(s[mask], yt[mask])
        if alpaca_weight > 0 and len(pairs):
            diff = s[pairs[:, 0], pairs[:, 1]] - s[pairs[:, 0], pairs[:, 2]]
            loss = loss + alpaca_weight * (bce(diff, pa, reduction="none") * pw).sum() / pw.sum()
        loss.backward()
        opt.step()
    return net.eval()


def head_scores(net: torch.nn.Module, x: np.ndarray, ts: TrainSet, strong: str, weak: str,
                golden_models: list[str]) -> dict[str, np.ndarray]:
    with torch.no_grad():
        p = torch.sigmoid(net(torch.from_numpy(x))).numpy()
    s, w = p[:, ts.models.index(strong)], p[:, ts.models.index(weak)]
    hard = 1.0 - p[:, [ts.models.index(m) for m in golden_models]].mean(axis=1)
    return {"gap": s - w, "weakfail": 1.0 - w, "hard": hard, "win": s * (1.0 - w)}


def fit_pooled(x: np.ndarray, ts: TrainSet, xe: np.ndarray, steps: int = 300) -> np.ndarray:
    """One logistic regression on P(strong beats weak): golden GPT-4 vs Mixtral pairs + AlpacaEval."""
    rows, targets = [], []
    w = ts.models.index(MIXTRAL)
    for strong in (GPT4_1106, GPT4O):
        if strong not in ts.models:
            continue
        s = ts.models.index(strong)
        ok = ~np.isnan(ts.y[:, s]) & ~np.isnan(ts.y[:, w])
        rows += list(np.flatnonzero(ok))
        targets += list((ts.y[ok, s] - ts.y[ok, w] + 1) / 2)
    g4 = ts.models.index(GPT4_1106)
    for (pi, a, b), pa in zip(ts.pairs, ts.p_a, strict=True):
        if a == g4:
            rows.append(pi)
            targets.append(pa)
        elif b == g4:
            rows.append(pi)
            targets.append(1 - pa)
    xt = torch.from_numpy(x[rows])
    yt = torch.tensor(targets, dtype=torch.float32)
    lin = torch.nn.Linear(x.shape[1], 1)
    opt = torch.optim.Adam(lin.parameters(), lr=0.01, weight_decay=1e-3)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(lin(xt).squeeze(1), yt).backward()
        opt.step()
    with torch.no_grad():
        return torch.sigmoid(lin(torch.from_numpy(xe))).squeeze(1).numpy()


def knn_scores(x: np.ndarray, ts: TrainSet, xe: np.ndarray, weak: str, golden_models: list[str],
               k: int = 25) -> dict[str, np.ndarray]:
    """1 - mean correctness of the k nearest training prompts that have labels."""
    out = {}
    for name, cols in (("knn_weak", [ts.models.index(weak)]),
                       ("knn_all", [ts.models.index(m) for m in golden_models])):
        sub = ts.y[:, cols]
        keep = ~np.isnan(sub).all(axis=1)
        vals = np.full(len(sub), np.nan)
        vals[keep] = np.nanmean(sub[keep], axis=1)
        sims = xe @ x[keep, :384].T
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        out[name] = 1.0 - vals[keep][top].mean(axis=1)
    return out


# --------------------------------------------------------------------------------------------- evaluation
@dataclass
class Target:
    name: str
    prompts: list[str]
    sq: np.ndarray
    wq: np.ndarray
    strong: str


def target_from_golden(name: str, held: PreferenceData, strong: str) -> Target:
    by: dict[str, dict[str, list[float]]] = {}
    for g in held.golden:
        if g.model in (strong, MIXTRAL):
            by.setdefault(g.prompt, {}).setdefault(g.model, []).append(g.score)
    prompts = [p for p, d in by.items() if strong in d and MIXTRAL in d]
    return Target(name, prompts, np.array([np.mean(by[p][strong]) for p in prompts]),
                  np.array([np.mean(by[p][MIXTRAL]) for p in prompts]), strong)


def recipes_for(x: np.ndarray, xf: np.ndarray, ts: TrainSet, tgt: Target, e: np.ndarray, ef: np.ndarray,
                only: set[str] | None) -> dict[str, np.ndarray]:
    """Every recipe's scores on the target prompts (or only those named in ``only``)."""
    golden_models = [m for m in ts.models if (~np.isnan(ts.y[:, ts.models.index(m)])).sum() >= 200]
    out: dict[str, np.ndarray] = {}

    def want(prefix: str) -> bool:
        return only is None or any(o.startswith(prefix) for o in only)

    if want("pooled"):
        out["pooled"] = fit_pooled(x, ts, e)
    for tag, hidden, aw, xx, ee in (("heads", 0, 0.0, x, e), ("heads-a0.1", 0, 0.1, x, e),
                                    ("heads-a1", 0, 1.0, x, e), ("heads+feat", 0, 0.0, xf, ef),
                                    ("mlp", 64, 0.0, x, e), ("mlp+feat", 64, 0.0, xf, ef)):
        if not want(tag + "/"):
            continue
        net = fit_heads(xx, ts, hidden, aw)
        for rule, sc in head_scores(net, ee, ts, tgt.strong, MIXTRAL, golden_models).items():
            out[f"{tag}/{rule}"] = sc
    if want("knn"):
        out.update(knn_scores(x, ts, e, MIXTRAL, golden_models))
    return {k: v for k, v in out.items() if only is None or k in only}


def source_prior(train: PreferenceData, prompts: list[str], source_of: dict[str, str]) -> np.ndarray:
    """The shortcut: each prompt's score is its source's mean strong-minus-weak gap in training."""
    gaps: dict[str, list[float]] = {}
    by: dict[tuple[str, str], float] = {}
    for g in train.golden:
        by[(g.prompt, g.model)] = g.score
    for (prompt, model), score in by.items():
        if model == MIXTRAL:
            for strong in (GPT4_1106, GPT4O):
                if (prompt, strong) in by:
                    gaps.setdefault(source_of[prompt], []).append(by[(prompt, strong)] - score)
    return np.array([np.mean(gaps.get(source_of[p], [0.0])) for p in prompts])


def run_fold(tgt: Target, train: PreferenceData, emb: Embeddings, only: set[str] | None,
             source_of: dict[str, str] | None = None) -> dict[str, object]:
    ts = build_trainset(train)
    x = emb(ts.prompts)
    e = emb(tgt.prompts)
    # decontaminate: drop target prompts within cosine 0.95 of any training prompt
    maxcos = (e @ x.T).max(axis=1) if len(x) else np.zeros(len(e))
    keep = maxcos < CONTAMINATION_COS
    tgt = Target(tgt.name, [p for p, k in zip(tgt.prompts, keep, strict=True) if k], tgt.sq[keep], tgt.wq[keep],
                 tgt.strong)
    e = e[keep]
    xf = np.hstack([x, hand_features(ts.prompts)])
    ef = np.hstack([e, hand_features(tgt.prompts)])
    scores = recipes_for(x, xf, ts, tgt, e, ef, only)
    if source_of is not None:
        scores["source_prior (shortcut)"] = source_prior(train, tgt.prompts, source_of)
    rb = random_baseline(tgt.sq, tgt.wq, n_seeds=100, n_points=None)
    return {"n": len(tgt.prompts), "dropped": int((~keep).sum()), "random": rb.apgr_ci,
            "apgr": {k: apgr(v, tgt.sq, tgt.wq) for k, v in scores.items()},
            "gap": (tgt.sq.mean(), tgt.wq.mean())}


def print_table(results: dict[str, dict[str, object]]) -> None:
    cols = list(results)
    recipes = list(next(iter(results.values()))["apgr"])  # type: ignore[arg-type]
    w = max(len(r) for r in recipes) + 2
    print("recipe".ljust(w) + "".join(c.split("/")[-1][:11].rjust(12) for c in cols) + "   #above  mean")
    for label, key in (("strong/weak", "gap"), ("n (dropped)", "n")):
        cells = []
        for c in cols:
            r = results[c]
            cells.append(f"{r['gap'][0]:.2f}/{r['gap'][1]:.2f}" if key == "gap"  # type: ignore[index]
                         else f"{r['n']} ({r['dropped']})")
        print(label.ljust(w) + "".join(s.rjust(12) for s in cells))
    print("random 95%".ljust(w) + "".join(
        f"{results[c]['random'][0]:.2f}-{results[c]['random'][1]:.2f}".rjust(12) for c in cols))  # type: ignore[index]
    for rec in recipes:
        vals = [results[c]["apgr"][rec] for c in cols]  # type: ignore[index]
        marks = []
        above = 0
        for c, v in zip(cols, vals, strict=True):
            lo, hi = results[c]["random"]  # type: ignore[misc]
            mark = "+" if v > hi else ("-" if v < lo else " ")
            above += mark == "+"
            marks.append(f"{v:.3f}{mark}")
        print(rec.ljust(w) + "".join(m.rjust(12) for m in marks) + f"   {above:>6}  {np.mean(vals):.3f}")
    print("(+ above the random router's 95 % interval, - below it)")


def within(data: PreferenceData, emb: Embeddings, only: set[str] | None) -> None:
    """Control: train on 80 % of prompts of every source, evaluate on the other 20 %, per source group
    and on the RouterBench + arena_bench mix (where knowing the source alone already helps)."""
    train, val = split_by_prompt(data, 0.2, seed=0)
    source_of = {g.prompt: g.source for g in data.golden}
    groups = {"mix(rb+arena)": ("routerbench", "arena_bench"), "routerbench": ("routerbench",),
              "arena_bench": ("arena_bench",), "mmlu_pro": ("mmlu_pro",)}
    results = {}
    for name, prefixes in groups.items():
        held = PreferenceData(golden=[g for g in val.golden if g.source.startswith(prefixes)])
        strong = GPT4O if prefixes == ("mmlu_pro",) else GPT4_1106
        results[name] = run_fold(target_from_golden(name, held, strong), train, emb, only, source_of)
    print("\nWithin-source control: random 80/20 prompt split of all training sources (NOT held out)")
    print_table(results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--holdouts", nargs="+", default=list(HOLDOUTS))
    ap.add_argument("--recipes", nargs="*", default=None, help="only these recipe names")
    ap.add_argument("--final", nargs="*", default=None,
                    help="train these recipes on all training data; evaluate on eval_sample")
    ap.add_argument("--within", action="store_true",
                    help="control: random 20 %% prompt split over all sources (not held-out sources)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    data = load_data_dir(args.data)
    emb = Embeddings()
    emb.add(data.prompts)
    only = set(args.recipes) if args.recipes else None
    if args.within:
        within(data, emb, only)
        return
    if args.final is None:
        results = {}
        for src in args.holdouts:
            train, held = leave_source_out(data, src)
            results[src] = run_fold(target_from_golden(src, held, strong_for(src)), train, emb, only)
        print(f"\nLeave-one-source-out APGR (train: every other source incl. AlpacaEval; "
              f"{time.perf_counter() - start:.0f}s)")
        print_table(results)
        return
    eval_dir = Path(args.data) / "eval_sample"
    results = {}
    for name in ("mmlu", "gsm8k", "mt-bench"):
        b = load_benchmark(name, eval_dir)
        emb.add(b.prompts)
        tgt = Target(name, b.prompts, b.strong_quality, b.weak_quality, GPT4_1106)
        results[name] = run_fold(tgt, data, emb, set(args.final) if args.final else only)
    print(f"\neval_sample APGR (train: all of {args.data} except eval_sample; {time.perf_counter() - start:.0f}s)")
    print_table(results)


if __name__ == "__main__":
    main()
