"""The call–performance plot of the paper's figures: each router's curve, random with its 95 % band,
the oracle, and the strong and weak models' levels."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _figure(path: Path, size: tuple[float, float], legend: dict[str, Any]) -> Iterator[Any]:
    """One figure's axes; afterwards the grid, the legend, and the PNG written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size, dpi=110)
    try:
        yield ax
        ax.legend(**legend)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    log.info("plot written to %s", path)


def plot_result(result: dict[str, Any], path: str | Path) -> Path:
    """Draw ``result`` (the ``<benchmark>.json`` contract) to a PNG at ``path``."""
    path = Path(path)
    with _figure(path, (9, 5.5), {"fontsize": 8, "loc": "lower right"}) as ax:
        routers = result["routers"]
        rnd = routers.get("random")
        if rnd is not None and rnd.get("curve_lo"):
            xs = [p["strong_pct"] for p in rnd["curve"]]
            ax.fill_between(xs, rnd["curve_lo"], rnd["curve_hi"], color="grey", alpha=0.2,
                            label="random, 95% interval")
        for name, r in routers.items():
            xs = [p["strong_pct"] for p in r["curve"]]
            ys = [p["score"] for p in r["curve"]]
            apgr = r.get("apgr")
            label = f"{name} (APGR {apgr:.3f})" if apgr is not None else name
            style: dict[str, Any] = {"color": "grey", "linestyle": ":"} if name == "random" else {}
            ax.plot(xs, ys, label=label, linewidth=1.6, **style)
        oracle = result.get("oracle")
        if oracle:
            ax.plot([p["strong_pct"] for p in oracle["curve"]], [p["score"] for p in oracle["curve"]],
                    color="black", linestyle="--", linewidth=1, label=f"oracle (APGR {oracle['apgr']:.3f})"
                    if oracle.get("apgr") is not None else "oracle")
        ax.axhline(result["strong_score"], color="tab:red", linestyle="--", linewidth=1,
                   label=f"{result['strong_model']} ({result['strong_score']:.3f})")
        ax.axhline(result["weak_score"], color="tab:blue", linestyle="--", linewidth=1,
                   label=f"{result['weak_model']} ({result['weak_score']:.3f})")
        ax.set_xlim(0, 100)
        ax.set_xlabel("Strong model calls (%)")
        ax.set_ylabel(f"Quality ({result.get('quality_unit', 'score')})")
        ax.set_title(f"{result['benchmark']}: calls vs performance ({result['n_prompts']} prompts, "
                     f"{result['n_contaminated']} dropped as contaminated)")
        ax.grid(alpha=0.3)
    return path


def plot_pool(result: dict[str, Any], path: str | Path) -> Path:
    """Draw a pool evaluation (``routeray eval --benchmark pool``): quality against US$ per 1,000 prompts
    for every single model, each N-way router, its best two-model router, random mixing and the oracle."""

    def draw(ax: Any, r: dict[str, Any], label: str, **style: Any) -> None:
        pts = r["curve"]
        xs, ys = [p["usd_per_1k"] for p in pts], [p["quality"] for p in pts]
        # the frontier is a staircase between operating points joined by mixing: draw the joined line
        ax.plot(xs, ys, label=f"{label} (area {r['area']:.3f})" if r.get("area") is not None else label,
                linewidth=1.6, **style)

    path = Path(path)
    # the legend sits outside the axes: the model labels stay readable
    with _figure(path, (12.5, 6), {"fontsize": 7, "loc": "upper left", "bbox_to_anchor": (1.01, 1.0)}) as ax:
        best = result["single_models"][result["best_model"]]
        draw(ax, result["random_mix"], "random mix of single models", color="grey", linestyle=":")
        draw(ax, result["oracle"], "oracle (answer key, same rule)", color="black", linestyle="--")
        for name, r in result["routers"].items():
            draw(ax, r, f"{name}, N-way")
            pair = r["two_model"]
            draw(ax, pair, f"{name}, best pair ({' | '.join(pair['pair'])})", linestyle="-.")
        for model, v in result["single_models"].items():
            ax.scatter([v["usd_per_1k"]], [v["quality"]], s=18, color="tab:gray", zorder=3)
            ax.annotate(model.rsplit("/", 1)[-1], (v["usd_per_1k"], v["quality"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        ax.axhline(0.95 * best["quality"], color="tab:red", linewidth=0.8, linestyle="--",
                   label=f"95 % of {result['best_model']}")
        ax.axvline(0.5 * best["usd_per_1k"], color="tab:red", linewidth=0.8, linestyle=":",
                   label="50 % of its cost")
        ax.set_xscale("log")
        ax.set_xlabel("US$ per 1,000 prompts (log scale)")
        ax.set_ylabel(f"Quality ({result.get('quality_unit', 'score')})")
        ax.set_title(f"{result['benchmark']}: routing among {len(result['models'])} models "
                     f"({result['n_prompts']} prompts, rule {result['rule']})")
        ax.grid(alpha=0.3, which="both")
    return path
