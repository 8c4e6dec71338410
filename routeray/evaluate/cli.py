"""``routeray eval``: the arguments are parsed in :mod:`routeray.cli`; this runs them."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from routeray.errors import ArtifactError, RouterayError
from routeray.evaluate.benchmarks import load_benchmark, load_golden
from routeray.evaluate.cache import ScoreCache
from routeray.evaluate.cost import Prices
from routeray.evaluate.runner import BASELINES, evaluate_benchmark, summary_table
from routeray.routers.base import Router

log = logging.getLogger(__name__)


def load_routers(names: list[str], artifacts: str | None, strong_model: str | None = None,
                 weak_model: str | None = None, model_aliases: dict[str, str] | None = None,
                 baselines: tuple[str, ...] = ()) -> dict[str, Router]:
    """Load each named router, then the ``baselines`` (``random`` is added by the evaluation itself), for
    the evaluated pair (passed as the ``strong_model``/``weak_model`` overrides routers accept).

    With ``artifacts``, router ``<name>`` comes from ``<artifacts>/<name>``; without, from its default. A
    baseline that was not asked for by name uses its default artifact when ``artifacts`` lacks it.
    ``model_aliases`` (pool model -> trained model) go to every router that takes them."""
    from routeray.routers.registry import get_router_class, load_router

    routers: dict[str, Router] = {}
    for name in dict.fromkeys([*names, *baselines]):
        if name == "random":
            continue
        artifact = None
        if artifacts is not None and getattr(get_router_class(name), "needs_artifact", True):
            artifact = Path(artifacts) / name
            if name in baselines and name not in names and not artifact.is_dir():
                artifact = None  # a baseline added by the evaluation itself: its default artifact
            elif not artifact.is_dir():
                raise ArtifactError(f"--artifacts {artifacts}: no folder {name!r} for router {name!r} "
                                    f"(expected one artifact folder per router)")
        log.info("loading router %s from %s", name, artifact or "its default artifact")
        pair = {k: v for k, v in (("strong_model", strong_model), ("weak_model", weak_model)) if v}
        extra = {"model_aliases": model_aliases} if model_aliases else {}
        routers[name] = load_router(name, artifact, **pair, **extra)
    return routers


def run(args: argparse.Namespace) -> int:
    """Evaluate the routers on the benchmark and write ``<output>/<benchmark>.json`` and ``.png``."""
    if args.benchmark == "pool":
        return run_pool(args)
    if len(args.data_dir) != 1:
        raise RouterayError(f"--benchmark {args.benchmark} reads one --data-dir, got {len(args.data_dir)}")
    data_dir = args.data_dir[0]
    strong, weak = args.strong_model, args.weak_model
    if args.benchmark == "golden":
        bench = load_golden(data_dir, strong, weak)
    else:
        bench = load_benchmark(args.benchmark, data_dir, strong, weak)
    prices = None
    if args.strong_price or args.weak_price:
        if not (args.strong_price and args.weak_price):
            raise RouterayError("give both --strong-price IN OUT and --weak-price IN OUT")
        prices = Prices(*args.strong_price, *args.weak_price)
    routers = load_routers(args.routers, args.artifacts, strong, weak, baselines=BASELINES)
    result = evaluate_benchmark(bench, routers, output=args.output, num_random_seeds=args.num_random_seeds,
                                prices=prices, cache=None if args.no_cache else ScoreCache(),
                                auto_baselines=tuple(b for b in BASELINES if b not in args.routers))
    sys.stdout.write(summary_table(result) + "\n")
    sys.stdout.write(f"wrote {Path(args.output) / (bench.name + '.json')} and .png\n")
    return 0


def run_pool(args: argparse.Namespace) -> int:
    """``--benchmark pool``: the N-way cost-quality curves, ``<output>/<name>.json`` and ``.png``."""
    from routeray.evaluate.pool import evaluate_pool, pool_summary
    from routeray.evaluate.pool_data import load_pool
    from routeray.routers.pool import parse_aliases, read_prices

    prices = read_prices(args.prices) if args.prices else None
    bench = load_pool(args.data_dir, args.models, prices, name=args.name)
    aliases = parse_aliases(args.model_alias)
    routers = load_routers(args.routers, args.artifacts, model_aliases=aliases)
    result = evaluate_pool(bench, routers, output=args.output, rule=args.rule,
                           cache=None if args.no_cache else ScoreCache())
    sys.stdout.write(pool_summary(result) + "\n")
    sys.stdout.write(f"wrote {Path(args.output) / (bench.name + '.json')} and .png\n")
    return 0
