"""Load ../shared/data (or a given folder), time it, and print per-source counts and fitted model tiers.

    .venv/bin/python bench/data_report.py [DATA_DIR] [--tiers N]
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import defaultdict

from routeray.data import assign_tiers, fit_ratings, golden_to_judgments, load_data_dir
from routeray.data.models import GPT4_1106, MIXTRAL
from routeray.paths import shared_data_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", nargs="?", default=str(shared_data_dir()))
    parser.add_argument("--tiers", type=int, default=5)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    t0, c0 = time.perf_counter(), time.process_time()
    data = load_data_dir(args.data_dir)
    t_load, c_load = time.perf_counter() - t0, time.process_time() - c0
    print(f"load_data_dir({args.data_dir}): {t_load:.2f} s wall ({c_load:.2f} s CPU), {len(data.judgments)} judgments, "
          f"{len(data.golden)} golden labels, {len(data.prompts)} prompts, {len(data.models)} models")
    t0 = time.perf_counter()
    fp = data.fingerprint()
    print(f"fingerprint {fp} in {time.perf_counter() - t0:.2f} s")

    stats: dict[str, dict[str, set]] = defaultdict(lambda: defaultdict(set))
    n_j: dict[str, int] = defaultdict(int)
    n_g: dict[str, int] = defaultdict(int)
    for j in data.judgments:
        s = stats[j.source]
        s["prompts"].add(j.prompt)
        s["models"].update((j.model_a, j.model_b))
        n_j[j.source] += 1
    for g in data.golden:
        s = stats[g.source]
        s["prompts"].add(g.prompt)
        s["models"].add(g.model)
        n_g[g.source] += 1
    print(f"\n{'source':<30}{'prompts':>9}{'judgments':>11}{'golden':>9}{'models':>8}")
    for source in sorted(stats):
        s = stats[source]
        print(f"{source:<30}{len(s['prompts']):>9}{n_j[source]:>11}{n_g[source]:>9}{len(s['models']):>8}")

    t0 = time.perf_counter()
    derived = golden_to_judgments(data.golden)
    t_g2j = time.perf_counter() - t0
    t0 = time.perf_counter()
    ratings = fit_ratings(data.judgments + derived)
    t_fit = time.perf_counter() - t0
    tiers = assign_tiers(ratings, args.tiers)
    print(f"\ngolden_to_judgments: {len(derived)} judgments in {t_g2j:.2f} s; "
          f"fit_ratings over {len(data.judgments) + len(derived)} in {t_fit:.2f} s")
    order = sorted(ratings, key=lambda m: -ratings[m])
    print(f"{'rank':>4}  {'tier':>4}  {'Elo':>6}  model")
    for rank, m in enumerate(order, start=1):
        if rank <= args.top or m in (GPT4_1106, MIXTRAL):
            print(f"{rank:>4}  {tiers[m]:>4}  {ratings[m]:>6.0f}  {m}")
    sizes = [sum(1 for t in tiers.values() if t == k) for k in range(args.tiers)]
    print(f"tier sizes (0 = strongest): {sizes}")


if __name__ == "__main__":
    main()
