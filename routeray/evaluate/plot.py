"""The call–performance plot of the paper's figures: each router's curve, random with its 95 % band,
the oracle, and the strong and weak models' levels."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def plot_result(result: dict[str, Any], path: str | Path) -> Path:
    """Draw ``result`` (the ``<benchmark>.json`` contract) to a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    try:
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
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    log.info("plot written to %s", path)
    return path
