"""The routeray Grafana dashboard, as data: every panel and its PromQL in one place.

``scripts/gen_k8s.py`` turns :func:`dashboard` into ``k8s/grafana/routeray-dashboard.json`` and its
ConfigMap. Metric names are those of ``routeray/metrics.py`` (gateway, ``/metrics`` on port 8000) and Ray
Serve's own (``ray_serve_*``, Ray's metrics export port 8080). Grafana variables used in queries:
``$router`` (multi-select), ``$__rate_interval`` and ``$__range``; tests substitute them before asking
Prometheus (see :data:`SUBSTITUTIONS`).
"""

from __future__ import annotations

from typing import Any

UID = "routeray-gateway"
TITLE = "routeray: LLM routing gateway"

# What tests put in place of Grafana's variables to evaluate a query against a real Prometheus.
SUBSTITUTIONS = {"$__rate_interval": "1m", "$__range": "5m", "$router": ".*", "${datasource}": "prometheus"}

R = 'router=~"$router"'
RATE = "[$__rate_interval]"


def _q(expr: str, legend: str) -> dict[str, str]:
    return {"expr": expr, "legend": legend}


def _quantiles(metric: str, by: str, selector: str = "") -> list[dict[str, str]]:
    sel = "{" + selector + "}" if selector else ""
    return [_q(f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{sel}{RATE})))",
               f"{{{{{by}}}}} p{int(q * 100)}") for q in (0.5, 0.99)]


# (section title, [panel]); a panel: title, kind (timeseries|stat), unit, queries, description, routing flag.
# Panels flagged routing=True must return data once routed traffic has been scraped (checked by the
# integration test against a real Prometheus).
SECTIONS: list[tuple[str, list[dict[str, Any]]]] = [
    ("Routing", [
        {"title": "Routed requests per second, by router", "unit": "reqps", "routing": True,
         "description": "Routing decisions per second (requests that named router-<router>-<threshold|p%>).",
         "queries": [_q(f"sum by (router) (rate(routeray_routing_decisions_total{{{R}}}{RATE}))", "{{router}}")]},
        {"title": "Strong-call share, by router (and target)", "unit": "percentunit", "routing": True,
         "description": "Share of routed requests sent to the strong model (with a pool: past the cheapest model; "
         "the interval line counts the two tiers only): from decision counts over the "
         "interval, the gateway's live window, and the target of percentage routing (router-<r>-<p>%).",
         "queries": [
             _q(f'sum by (router) (rate(routeray_routing_decisions_total{{{R},tier="strong"}}{RATE})) / '
                f"sum by (router) (rate(routeray_routing_decisions_total{{{R}}}{RATE}))", "{{router}} (interval)"),
             _q(f"avg by (router) (routeray_strong_call_share{{{R}}})", "{{router}} (live window)"),
             _q(f"max by (router) (routeray_strong_call_share_target{{{R}}})", "{{router}} target")]},
        {"title": "Routing share, by router and model", "unit": "percentunit", "routing": True,
         "description": "Share of each router's routed requests sent to each backend: strong/weak, or each model "
         "of a pool (Config.pool; the tier tag then names the pool model).",
         "queries": [_q(f"sum by (router, tier) (rate(routeray_routing_decisions_total{{{R}}}{RATE})) / ignoring (tier) "
                        f"group_left sum by (router) (rate(routeray_routing_decisions_total{{{R}}}{RATE}))",
                        "{{router}} -> {{tier}}")]},
        {"title": "Requests per second, by outcome", "unit": "reqps", "routing": True,
         "description": "Every chat completion, by what the model name asked for (router|tier) and outcome.",
         "queries": [_q(f"sum by (kind, status) (rate(routeray_requests_total{RATE}))", "{{kind}} {{status}}")]},
        {"title": "Percentage routing: live threshold", "unit": "none",
         "description": "Threshold that the last percentage-routed request got from the live score window.",
         "queries": [_q(f"avg by (router) (routeray_percent_threshold{{{R}}})", "{{router}}")]},
        {"title": "Rerouting guard: demotions per second", "unit": "reqps",
         "description": "Requests the rerouting guard sent weak although the prompt's own score would have sent "
                        "them strong (a part of the prompt scored lower: the mark of an appended or prepended "
                        "gadget). Only routers configured with guard.",
         "queries": [_q(f"sum by (router) (rate(routeray_guard_demotions_total{{{R}}}{RATE}))", "{{router}}")]},
        {"title": "Prefilter: share of routes settled without the router", "unit": "percentunit",
         "description": "Routed requests decided on the prefilter's cheap estimate (it lay outside the band around "
                        "the threshold), as a share of all routed requests, by tier. Only routers configured "
                        "with prefilter.",
         "queries": [_q(f"sum by (router, tier) (rate(routeray_prefilter_settled_total{{{R}}}{RATE})) / ignoring(tier) "
                        f"group_left sum by (router) (rate(routeray_routing_decisions_total{{{R}}}{RATE}))",
                        "{{router}} -> {{tier}}")]},
    ]),
    ("Router latency and batching", [
        {"title": "Routing overhead p50 / p99", "unit": "s", "routing": True,
         "description": "Gateway time before the backend call starts: parsing, queueing, scoring, deciding.",
         "queries": _quantiles("routeray_routing_overhead_seconds", "router", R)},
        {"title": "Scoring latency p50 / p99", "unit": "s", "routing": True,
         "description": "Time scoring the batch that held a request (with a scorer deployment: the "
                        "ingress's call to it, queueing included).",
         "queries": _quantiles("routeray_scoring_latency_seconds", "router", R)},
        {"title": "Scorer batch size", "unit": "none", "routing": True,
         "description": "Prompts scored together with a request (with a scorer deployment: per call from "
                        "the ingress): mean, and the p90 of the batch each request rode in.",
         "queries": [
             _q(f"sum by (router) (rate(routeray_scorer_batch_size_sum{{{R}}}{RATE})) / "
                f"sum by (router) (rate(routeray_scorer_batch_size_count{{{R}}}{RATE}))", "{{router}} mean"),
             _q(f"histogram_quantile(0.9, sum by (router, le) (rate(routeray_scorer_batch_size_bucket{{{R}}}{RATE})))",
                "{{router}} p90")]},
        {"title": "Scorer queue (Ray Serve)", "unit": "none",
         "description": "Requests waiting for a scorer replica at the callers, and in flight at the replicas.",
         "queries": [
             _q('sum by (deployment) (ray_serve_deployment_queued_queries{deployment=~"Scorer_.*"})',
                "{{deployment}} queued"),
             _q('sum by (deployment) (ray_serve_num_ongoing_requests_at_replicas{deployment=~"Scorer_.*"})',
                "{{deployment}} in flight")]},
    ]),
    ("Backends", [
        {"title": "Upstream latency p50 / p99, by tier or pool model", "unit": "s",
         "description": "Backend call time: to the full answer (non-streaming) or to the first chunk.",
         "queries": _quantiles("routeray_upstream_latency_seconds", "tier")},
        {"title": "Upstream error rate, by tier", "unit": "percentunit",
         "description": "Failed backend calls over all backend calls, per tier.",
         "queries": [_q(f"sum by (tier) (rate(routeray_upstream_errors_total{RATE})) / (sum by (tier) "
                        f"(rate(routeray_upstream_errors_total{RATE})) + (sum by (tier) "
                        f"(rate(routeray_upstream_latency_seconds_count{RATE})) or 0 * sum by (tier) "
                        f"(rate(routeray_upstream_errors_total{RATE}))))", "{{tier}}")]},
        {"title": "Upstream errors per second, by reason", "unit": "reqps",
         "description": "connect, timeout, status_4xx, status_5xx, rate_limited, bad_response, stream; skipped calls: cooling_down, circuit_open.",
         "queries": [_q(f"sum by (tier, reason) (rate(routeray_upstream_errors_total{RATE}))",
                        "{{tier}} {{reason}}")]},
        {"title": "Fallbacks per second", "unit": "reqps",
         "description": "Requests answered by another tier than decided, by cause.",
         "queries": [_q(f"sum by (reason, to_tier) (rate(routeray_fallbacks_total{RATE}))",
                        "{{reason}} -> {{to_tier}}")]},
    ]),
    ("Replicas", [
        {"title": "Healthy replicas, by deployment", "unit": "none",
         "description": "Ray Serve's replica health (1 per healthy replica), summed per deployment.",
         "queries": [_q("sum by (application, deployment) (ray_serve_deployment_replica_healthy)",
                        "{{application}}/{{deployment}}")]},
        {"title": "Ongoing requests at replicas, by deployment", "unit": "none",
         "description": "What Serve's autoscaler compares with target_ongoing_requests.",
         "queries": [_q("sum by (application, deployment) (ray_serve_num_ongoing_requests_at_replicas)",
                        "{{application}}/{{deployment}}")]},
        {"title": "Ingress event-loop lag (load shedding)", "unit": "s",
         "description": "How far behind the ingress replicas' event loops run: near zero until a replica is "
         "CPU-saturated. Above ingress.shed_loop_lag_ms new requests are shed with 503 (status=\"overloaded\" "
         "in Requests per second, by outcome).",
         "queries": [_q("max(routeray_event_loop_lag_seconds)", "worst replica"),
                     _q("avg(routeray_event_loop_lag_seconds)", "mean")]},
    ]),
    ("Money", [
        {"title": "Estimated spend per hour, by tier or pool model", "unit": "currencyUSD",
         "description": "Tokens times the per-million-token prices in the config (strong.price_*, weak.price_*), "
         "from the usage the backends report (estimated from text length when a backend reports none).",
         "queries": [_q(f"sum by (tier) (rate(routeray_spend_dollars_total{RATE})) * 3600", "{{tier}}")]},
        {"title": "Savings per hour vs all-strong", "unit": "currencyUSD",
         "description": "What the same tokens would have cost at the strong tier's prices, minus the spend.",
         "queries": [
             _q(f"(sum(rate(routeray_spend_all_strong_dollars_total{RATE})) - "
                f"sum(rate(routeray_spend_dollars_total{RATE}))) * 3600", "savings"),
             _q(f"sum(rate(routeray_spend_all_strong_dollars_total{RATE})) * 3600", "all-strong estimate")]},
        {"title": "Spend over the time range", "unit": "currencyUSD", "kind": "stat",
         "description": "Estimated spend over the dashboard's time range.",
         "queries": [_q("sum(increase(routeray_spend_dollars_total[$__range]))", "spend")]},
        {"title": "Saved over the time range", "unit": "percentunit", "kind": "stat",
         "description": "Share of the all-strong cost saved by routing, over the dashboard's time range.",
         "queries": [_q("1 - sum(increase(routeray_spend_dollars_total[$__range])) / "
                        "sum(increase(routeray_spend_all_strong_dollars_total[$__range]))", "saved")]},
        {"title": "Tokens per second, by tier and kind", "unit": "short",
         "description": "Prompt and completion tokens reported by the backends, and those estimated from "
         "text length for answers that came without usage.",
         "queries": [_q(f"sum by (tier, kind) (rate(routeray_tokens_total{RATE}))", "{{tier}} {{kind}}"),
                     _q(f"sum by (tier, kind) (rate(routeray_tokens_estimated_total{RATE}))",
                        "{{tier}} {{kind}} (estimated)")]},
    ]),
    ("Budgets per client key", [
        {"title": "Spend per hour, by client key", "unit": "currencyUSD", "budget": True,
         "description": "Estimated spend per client key (its key id, a digest prefix; \"anonymous\" without keys).",
         "queries": [_q(f"sum by (key) (rate(routeray_key_spend_dollars_total{RATE})) * 3600", "{{key}}")]},
        {"title": "Budget left this period, by client key", "unit": "currencyUSD", "budget": True,
         "description": "USD left of each key's budget this period (less what requests in flight hold), and the "
         "budget. Replicas agree with the Redis store; with the memory store each replica counts its own share.",
         "queries": [_q("min by (key) (routeray_key_budget_remaining_dollars)", "{{key}} left"),
                     _q("max by (key) (routeray_key_budget_dollars)", "{{key}} budget")]},
        {"title": "Budget used, by client key", "unit": "percentunit", "kind": "stat", "budget": True,
         "description": "Share of each key's budget used or held this period.",
         "queries": [_q("1 - min by (key) (routeray_key_budget_remaining_dollars) / "
                        "max by (key) (routeray_key_budget_dollars)", "{{key}}")]},
        {"title": "Over-budget requests per second, by key", "unit": "reqps",
         "description": "Requests of keys past their budget: rejected (429 insufficient_quota) or downgraded "
         "(sent to the cheapest tier or pool model, budgets.over_budget: cheapest).",
         "queries": [_q(f"sum by (key, action) (rate(routeray_budget_refusals_total{RATE}))",
                        "{{key}} {{action}}")]},
    ]),
]


def _panel(pid: int, spec: dict[str, Any], x: int, y: int, w: int, h: int) -> dict[str, Any]:
    kind = spec.get("kind", "timeseries")
    ds = {"type": "prometheus", "uid": "${datasource}"}
    targets = [{"datasource": ds, "expr": q["expr"], "legendFormat": q["legend"], "refId": chr(ord("A") + i),
                "range": kind == "timeseries", "instant": kind == "stat"} for i, q in enumerate(spec["queries"])]
    panel: dict[str, Any] = {
        "id": pid, "type": kind, "title": spec["title"], "description": spec["description"], "datasource": ds,
        "gridPos": {"x": x, "y": y, "w": w, "h": h}, "targets": targets,
        "fieldConfig": {"defaults": {"unit": spec["unit"]}, "overrides": []},
    }
    if kind == "timeseries":
        panel["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                            "tooltip": {"mode": "multi", "sort": "desc"}}
    else:
        panel["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                            "colorMode": "value", "graphMode": "none"}
    return panel


def routing_panel_titles() -> list[str]:
    """Titles of the panels that must show data once routed traffic was scraped."""
    return [p["title"] for _, panels in SECTIONS for p in panels if p.get("routing")]


def budget_panel_titles() -> list[str]:
    """Titles of the panels that must show data once traffic with a budget was scraped."""
    return [p["title"] for _, panels in SECTIONS for p in panels if p.get("budget")]


def dashboard() -> dict[str, Any]:
    """The whole Grafana dashboard model (schema 39), rows of panels laid out two or three per row."""
    panels: list[dict[str, Any]] = []
    pid, y = 1, 0
    for title, specs in SECTIONS:
        panels.append({"id": pid, "type": "row", "title": title, "collapsed": False,
                       "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []})
        pid, y = pid + 1, y + 1
        per_row = 3 if len(specs) % 3 == 0 or len(specs) > 4 else 2
        w = 24 // per_row
        for i, spec in enumerate(specs):
            h = 5 if spec.get("kind") == "stat" else 8
            panels.append(_panel(pid, spec, (i % per_row) * w, y + (i // per_row) * 8, w, h))
            pid += 1
        y += 8 * ((len(specs) + per_row - 1) // per_row)
    return {
        "uid": UID, "title": TITLE, "tags": ["routeray", "ray-serve", "llm"], "timezone": "browser",
        "schemaVersion": 39, "version": 1, "editable": True, "refresh": "30s", "graphTooltip": 1,
        "time": {"from": "now-1h", "to": "now"},
        "annotations": {"list": []},
        "templating": {"list": [
            {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1},
            {"name": "router", "label": "Router", "type": "query",
             "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": {"query": "label_values(routeray_routing_decisions_total, router)", "refId": "router"},
             "definition": "label_values(routeray_routing_decisions_total, router)",
             "includeAll": True, "multi": True, "allValue": ".*", "current": {}, "refresh": 2, "sort": 1,
             "hide": 0},
        ]},
        "panels": panels,
    }


def queries(model: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query in a dashboard model (as generated or as read from JSON)."""
    return [(p["title"], t["expr"]) for p in model["panels"] if p.get("type") != "row" for t in p["targets"]]


def substitute(expr: str) -> str:
    """A dashboard query with Grafana's variables replaced, ready for Prometheus' HTTP API or promtool."""
    for var, value in SUBSTITUTIONS.items():
        expr = expr.replace(var, value)
    return expr
