"""``routeray train <router> --data <dir> --out <dir>``: load data, subsample, run the trainer, report."""

from __future__ import annotations

import argparse
import importlib
import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from routeray.data.schema import PreferenceData
from routeray.errors import RouterayError
from routeray.train import TRAINERS
from routeray.train.common import format_report, load_config

log = logging.getLogger(__name__)


def get_trainer(router: str) -> Callable[..., Any]:
    """The ``train`` function of a router; an unknown name lists the trainable ones."""
    if router not in TRAINERS:
        raise RouterayError(f"router {router!r} cannot be trained; trainable routers: {', '.join(TRAINERS)}")
    module_name, _, func = TRAINERS[router].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise RouterayError(f"the {router} trainer is not available in this installation") from exc
        raise
    return getattr(module, func)


def subsample_prompts(data: PreferenceData, max_prompts: int, seed: int) -> PreferenceData:
    """Keep every record of at most ``max_prompts`` prompts, chosen at random with ``seed``."""
    prompts = data.prompts
    if max_prompts <= 0:
        raise RouterayError(f"--max-prompts must be positive, got {max_prompts}")
    if len(prompts) <= max_prompts:
        return data
    keep = set(random.Random(seed).sample(prompts, max_prompts))
    return PreferenceData(judgments=[j for j in data.judgments if j.prompt in keep],
                          golden=[g for g in data.golden if g.prompt in keep])


def run(args: argparse.Namespace) -> int:
    """Handler of ``routeray train``."""
    from routeray.data import load_data_dir

    trainer = get_trainer(args.router)
    config = load_config(args.config, args.set)
    data_dir = Path(args.data)
    if not data_dir.is_dir():
        raise RouterayError(f"data directory {data_dir} does not exist")
    data = load_data_dir(data_dir)
    if args.max_prompts:
        data = subsample_prompts(data, args.max_prompts, args.seed)
    log.info("training %s on %d judgments and %d golden labels (%d prompts) from %s",
             args.router, len(data.judgments), len(data.golden), len(data.prompts), data_dir)
    artifact = trainer(data, Path(args.out), seed=args.seed, config=config, progress=True)
    print(format_report(artifact.report))
    print(f"artifact written to {args.out}")
    return 0
