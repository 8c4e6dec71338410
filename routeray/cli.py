"""routeray: route each LLM request to a strong or a weak model by a learned router's score.

Train a router on preference data (train), pick the threshold for a target share of strong calls
(calibrate), judge routers on a benchmark's cost/quality curve (eval), and run the OpenAI-compatible
routing gateway on Ray Serve (serve). `routeray <command> --help` says more about each.
"""

# Argument parsing lives here (it is a contract); each command's work lives in its own module, imported
# only when that command runs.

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from routeray._version import __version__
from routeray.data.models import DEFAULT_STRONG, DEFAULT_WEAK
from routeray.errors import RouterayError
from routeray.evaluate.benchmarks import BENCHMARKS
from routeray.routers.registry import available_routers
from routeray.train import TRAINERS

# command -> "module:function"; the function takes the parsed arguments and returns an exit code.
_HANDLERS = {
    "train": "routeray.train.cli:run",
    "calibrate": "routeray.calibrate:run_cli",
    "eval": "routeray.evaluate.cli:run",
    "serve": "routeray.deployments.cli:run",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="routeray", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a router on preference data and write its artifact")
    p.add_argument("router", choices=sorted(TRAINERS), help="router to train: %(choices)s")
    p.add_argument("--data", required=True, help="data directory (the layout of ../shared/data)")
    p.add_argument("--out", required=True, help="artifact directory to write")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--config", default=None, help="JSON/YAML file of hyper-parameters for this router")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one hyper-parameter (repeatable)")
    p.add_argument("--max-prompts", type=int, default=None,
                   help="train on at most this many prompts (quick runs and tests)")

    p = sub.add_parser("calibrate", help="threshold for a share of strong calls, or for a spend per 1,000 prompts")
    p.add_argument("--router", required=True, help="router name")
    goal = p.add_mutually_exclusive_group(required=True)
    goal.add_argument("--strong-fraction", type=float, help="target share of strong calls, 0..1 (with a pool: of "
                      "calls to models other than the cheapest)")
    goal.add_argument("--spend-per-1k", type=float, help="target US$ per 1,000 prompts (needs --models and --prices)")
    p.add_argument("--prompts", required=True, help="prompts file: JSONL, CSV, or one prompt per line")
    p.add_argument("--artifacts", default=None, help="artifact directory (default: the router's default)")
    p.add_argument("--models", nargs="+", default=None, help="a model pool to route among (routers that predict "
                   "each model's quality: mf, bert)")
    p.add_argument("--prices", default=None, help="JSON/YAML {model: [in, out]} US$ per million tokens")
    p.add_argument("--model-alias", action="append", default=[], metavar="MODEL=TRAINED",
                   help="score MODEL as the router's trained model TRAINED (repeatable)")
    p.add_argument("--output-tokens", type=float, default=256.0, help="tokens assumed per answer (spend)")
    p.add_argument("--config", default=None, help="a gateway config (or Serve config) with a pool: its models, "
                   "what the router scores them as, and their prices (instead of --models and --prices)")
    p.add_argument("--guard", default=None, metavar="MODE",
                   help="calibrate on the router's scores with the rerouting guard (it lowers them): off, heads, "
                        "anchored, windows, spans, or a JSON spec such as '{\"mode\": \"spans\", \"margin\": 0.01}' "
                        "(routeray.routers.guard); default: the router's own default (Router.guard). Two-tier only")

    p = sub.add_parser("eval", help="evaluate routers on a benchmark in RouteLLM's layout")
    p.add_argument("--benchmark", required=True, choices=[*BENCHMARKS, "golden", "pool"],
                   help="golden: --data-dir is a golden-label CSV (RouterBench, RouteLLM eval) or data folder; "
                        "pool: route among N models, --data-dir is one or more RouterBench CSVs, RouterDC "
                        "JSONs, MMLU-Pro files or data folders (docs/evaluation.md)")
    p.add_argument("--data-dir", required=True, nargs="+",
                   help="folder in RouteLLM's routellm/evals layout (pool: one or more files or folders)")
    p.add_argument("--routers", nargs="+", required=True,
                   help=f"router names (random is always added): {', '.join(available_routers())}")
    p.add_argument("--output", required=True, help="output folder for <benchmark>.json and .png")
    p.add_argument("--artifacts", default=None,
                   help="folder holding one artifact folder per router (default: the default artifacts)")
    p.add_argument("--strong-model", default=DEFAULT_STRONG, help="default: %(default)s")
    p.add_argument("--weak-model", default=DEFAULT_WEAK, help="default: %(default)s")
    p.add_argument("--num-random-seeds", type=int, default=100)
    p.add_argument("--strong-price", type=float, nargs=2, metavar=("IN", "OUT"), default=None,
                   help="strong model price, US$ per million input and output tokens")
    p.add_argument("--weak-price", type=float, nargs=2, metavar=("IN", "OUT"), default=None,
                   help="weak model price, US$ per million input and output tokens")
    p.add_argument("--no-cache", action="store_true", help="recompute router scores")
    p.add_argument("--models", nargs="+", default=None,
                   help="pool: the models to route among (default: every model in the data)")
    p.add_argument("--model-alias", action="append", default=[], metavar="MODEL=TRAINED",
                   help="pool: score MODEL as the router's trained model TRAINED (repeatable)")
    p.add_argument("--prices", default=None,
                   help="pool: JSON/YAML {model: [in, out]} US$ per million tokens (default: recorded costs)")
    p.add_argument("--rule", choices=["cost", "threshold"], default="cost",
                   help="pool: decision rule (routeray.routers.pool)")
    p.add_argument("--name", default="pool", help="pool: output name, <output>/<name>.json and .png")

    p = sub.add_parser("serve", help="run the routing gateway on Ray Serve")
    p.add_argument("--config", default=None,
                   help="Serve config YAML (default: the embedded local profile)")
    p.add_argument("--host", default=None,
                   help="address Serve's HTTP proxy binds (default: the file's http_options, else 127.0.0.1)")
    p.add_argument("--port", type=int, default=None,
                   help="port of Serve's HTTP proxy, and of every URL derived from it (default: the file's "
                        "http_options, else 8000)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    module_name, _, func_name = _HANDLERS[args.command].partition(":")
    try:
        if args.command == "calibrate" and args.config:
            _pool_from_config(args)
        handler = getattr(importlib.import_module(module_name), func_name)
        return int(handler(args) or 0)
    except RouterayError as exc:
        print(f"routeray {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _pool_from_config(args: argparse.Namespace) -> None:
    """``calibrate --config``: the pool's models (as the router scores them), cheapest first, and their prices."""
    from routeray.config import load_config_file

    cfg = load_config_file(args.config)
    if not cfg.pool:
        raise RouterayError(f"{args.config}: no pool to calibrate (the config has the two tiers)")
    if args.models or args.prices:
        raise RouterayError("give either --config or --models/--prices")
    table = cfg.backend_table()
    args.models = [b.router_model for b in table.values()]
    args.pool_names = list(table)
    args.pool_prices = [(b.price_input_per_mtok, b.price_output_per_mtok) for b in table.values()]
    args.pool_call_prices = [cfg.call_price(b) for b in table.values()]
    args.output_tokens = float(cfg.routing.pool_output_tokens)
    scorer = next((r for r in cfg.routers if r.router == args.router), None)
    args.model_alias = [*args.model_alias, *(f"{k}={v}" for k, v in
                                             ((scorer.overrides.get("model_aliases") if scorer else None) or {}).items())]


if __name__ == "__main__":
    raise SystemExit(main())
