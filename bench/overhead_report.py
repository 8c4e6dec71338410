"""The arithmetic and the presentation of ``bench/overhead.py compare``: which steps kept up, saturation,
goodput past it, latency added over a direct call, the ratios between targets, a Markdown table and a plot.

Pure functions over the result JSON (no processes, no network), so they are unit-tested on small dicts.
A step is one target at one offered rate: the load generator's summary plus ``cpu_ms_per_ok``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

REJECTED = ("http_429", "http_503")  # answers that shed load: refusals in OpenAI's shape, not failures


def failures(step: dict[str, Any]) -> int:
    """Requests that neither got an answer nor a fast refusal (timeouts, resets, 5xx other than 503)."""
    return sum(n for e, n in step["errors"].items() if e not in REJECTED) + step["unfinished"]


def rejections(step: dict[str, Any]) -> int:
    return sum(step["errors"].get(e, 0) for e in REJECTED)


def collapsed(step: dict[str, Any]) -> bool:
    """A target that answered under half the offered rate, or failed a tenth of its requests, is past
    saturation; higher rates would only grow its queue."""
    failed = sum(step["errors"].values()) + step["unfinished"]
    return step["throughput_rps"] < 0.5 * step["send_rps"] or failed > 0.1 * max(1, step["sent"])


def sustained(step: dict[str, Any]) -> bool:
    """Kept up: ≥ 90 % of the rate sent answered, no errors, < 1 % fallbacks, p99 under a second."""
    lat = step["latency_ms"] or step["ttft_ms"]
    return (step["throughput_rps"] >= 0.9 * step["send_rps"] and not step["errors"]
            and not step["unfinished"] and sum(step["fallbacks"].values()) <= 0.01 * step["ok"]
            and bool(lat) and lat["p99"] < 1000)


def added(step: dict[str, Any], direct: dict[str, Any], key: str) -> dict[str, float]:
    """Latency a target adds over calling the backend directly at the same offered rate (ms)."""
    a, d = step.get(key) or {}, direct.get(key) or {}
    return {q: round(a[q] - d[q], 2) for q in ("p50", "p90", "p99") if q in a and q in d}


def _steps(rows: list[dict[str, Any]], target: str) -> list[dict[str, Any]]:
    return [r["targets"][target] for r in rows if target in r["targets"]]


def saturation(rows: list[dict[str, Any]], targets: list[str]) -> dict[str, dict[str, float | None]]:
    """Per target: the most ok answers per second seen (its peak), and the highest offered rate it sustained."""
    out: dict[str, dict[str, float | None]] = {}
    for target in targets:
        steps = _steps(rows, target)
        if steps:
            kept = [s["offered_rps"] for s in steps if sustained(s)]
            out[target] = {"max_throughput_rps": max(s["throughput_rps"] for s in steps),
                           "sustained_rps": max(kept) if kept else None}
    return out


def goodput(rows: list[dict[str, Any]], target: str) -> dict[str, Any]:
    """Past saturation: at each offered rate above the highest sustained one, the answers/s as a share of the
    peak, the refusals (429/503) and how fast they came, and the p99 of the answered requests."""
    steps = _steps(rows, target)
    if not steps:
        return {}
    peak = max(s["throughput_rps"] for s in steps)
    kept = [s["offered_rps"] for s in steps if sustained(s)]
    sat = max(kept) if kept else None
    over = []
    for s in steps:
        if sat is None or s["offered_rps"] <= sat:
            continue
        rej = s.get("rejected") or {}
        over.append({"offered_rps": s["offered_rps"], "x_saturation": round(s["offered_rps"] / sat, 2),
                     "share_of_peak": round(s["throughput_rps"] / peak, 3) if peak else None,
                     "answers_rps": s["throughput_rps"], "rejected": rejections(s), "failed": failures(s),
                     "rejection_p99_ms": (rej.get("latency_ms") or {}).get("p99"),
                     "retry_after_share": rej.get("retry_after_share"),
                     "answered_p99_ms": (s["latency_ms"] or s["ttft_ms"] or {}).get("p99")})
    return {"peak_rps": peak, "sustained_rps": sat, "past_saturation": over}


def cpu_at(rows: list[dict[str, Any]], target: str, rate: float) -> float | None:
    """CPU ms per answer of ``target``'s processes at offered ``rate`` (None when not measured there)."""
    for r in rows:
        if r["offered_rps"] == rate and target in r["targets"]:
            cpu = r["targets"][target].get("cpu_ms_per_ok") or {}
            return cpu.get("target")
    return None


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b rounded to 2 places; None when either is missing or b is not positive."""
    if a is None or b is None or b <= 0:
        return None
    return round(a / b, 2)


def ratios(result: dict[str, Any], gateways: list[str], peers: list[str], cpu_rate: float = 100.0
           ) -> dict[str, dict[str, Any]]:
    """Each gateway against each peer: peak answers/s (gateway over peer: above 1, the gateway goes further),
    CPU per answer at ``cpu_rate`` (gateway over peer: below 1, the gateway is cheaper), and added p50/p99
    at every rate both were measured at (peer over gateway: above 1, the gateway adds less)."""
    sat, rows = result["saturation"], result["non_streaming"]
    out: dict[str, dict[str, Any]] = {}
    for g in gateways:
        for p in peers:
            if g not in sat or p not in sat:
                continue
            added_by_rate = {}
            for r in rows:
                ga, pa = r.get("added_ms", {}).get(g, {}), r.get("added_ms", {}).get(p, {})
                added_by_rate[f"{r['offered_rps']:g}"] = {q: ratio(pa.get(q), ga.get(q)) for q in ("p50", "p99")}
            out[f"{g} vs {p}"] = {
                "peak_throughput": ratio(sat[g]["max_throughput_rps"], sat[p]["max_throughput_rps"]),
                f"cpu_per_answer_at_{cpu_rate:g}": ratio(cpu_at(rows, g, cpu_rate), cpu_at(rows, p, cpu_rate)),
                "added_latency_peer_over_gateway": added_by_rate}
    return out


def _cell(step: dict[str, Any] | None, add: dict[str, float], key: str) -> list[str]:
    if step is None:
        return ["—"] * 4
    lat_add = f"{add.get('p50', '—')} / {add.get('p99', '—')}" if add else \
        f"({(step[key] or {}).get('p50', '—')} / {(step[key] or {}).get('p99', '—')})"
    errs = f"{failures(step)}" + (f" + {rejections(step)} shed" if rejections(step) else "")
    return [f"{step['throughput_rps']:.1f}", lat_add, errs, f"{(step.get('cpu_ms_per_ok') or {}).get('target', '—')}"]


def table(result: dict[str, Any]) -> str:
    """One row per offered rate, four columns per target: answers/s, added p50 / p99 ms over direct (direct's
    own latency in brackets), failed requests (+ those shed with 429/503), CPU ms per answer."""
    targets = result["targets"]
    labels = result.get("labels", {})
    head = ["offered req/s"] + [f"{labels.get(t, t)}: {c}" for t in targets
                                for c in ("answers/s", "added p50 / p99 ms", "failed", "CPU ms/answer")]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in result["non_streaming"] + result["streaming"]:
        key = "ttft_ms" if row["stream"] else "latency_ms"
        cells = [f"{row['offered_rps']:g}" + (" (stream, TTFT)" if row["stream"] else "")]
        for t in targets:
            cells += _cell(row["targets"].get(t), row.get("added_ms", {}).get(t, {}), key)
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Peak answers/s (highest rate sustained): " + "; ".join(
        f"{labels.get(t, t)} {s['max_throughput_rps']} ({s['sustained_rps']})" for t, s in result["saturation"].items()))
    for pair, r in result.get("ratios", {}).items():
        cpu = next((v for k, v in r.items() if k.startswith("cpu_per_answer_at_")), None)
        lines.append(f"{pair}: peak answers/s x{r['peak_throughput']}, CPU per answer at 100 req/s x{cpu}")
    for t, g in result.get("goodput", {}).items():
        for s in g.get("past_saturation", []):
            lines.append(f"{labels.get(t, t)} at {s['offered_rps']:g} req/s ({s['x_saturation']}x its sustained rate): "
                         f"{s['share_of_peak']} of peak answers/s, {s['rejected']} shed (p99 {s['rejection_p99_ms']} ms), "
                         f"{s['failed']} failed, answered p99 {s['answered_p99_ms']} ms")
    return "\n".join(lines)


COLORS = ("tab:blue", "tab:orange", "tab:purple", "tab:red", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


def plot(result: dict[str, Any], path: Path) -> None:
    """Added latency (p50, p99) and achieved answers/s against offered load, one colour per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, labels = result["non_streaming"], result.get("labels", {})
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    colors = dict(zip([t for t in result["targets"] if t != "direct"], COLORS, strict=False))
    colors["direct"] = "tab:green"
    for target, color in colors.items():
        pts = [(r["offered_rps"], r["added_ms"][target]) for r in rows if target in r.get("added_ms", {})]
        for q, style in (("p50", "-o"), ("p99", "--^")):
            xs = [x for x, a in pts if q in a]
            if xs:
                ax1.plot(xs, [max(a[q], 0.1) for _, a in pts if q in a], style, color=color,
                         label=f"{labels.get(target, target)} {q}")
        tp = [(r["offered_rps"], r["targets"][target]["throughput_rps"]) for r in rows if target in r["targets"]]
        ax2.plot([p[0] for p in tp], [p[1] for p in tp], "-o", color=color, label=labels.get(target, target))
    ax1.set(xscale="log", yscale="log", xlabel="offered load (req/s)", ylabel="latency added over direct (ms)",
            title="Routing overhead (answered requests)")
    ax1.legend(fontsize=7)
    top = max(r["offered_rps"] for r in rows)
    ax2.plot([1, top], [1, top], color="grey", lw=0.8, ls=":", label="offered")
    ax2.set(xscale="log", yscale="log", xlabel="offered load (req/s)", ylabel="answers per second",
            title="Throughput")
    ax2.legend(fontsize=7)
    m = result["machine"]
    fig.suptitle(f"router {result['router']}, {m['cpus']} CPUs, load avg {m['loadavg_before'][0]:.1f} -> "
                 f"{m['loadavg_after'][0]:.1f}; {result['command']}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
