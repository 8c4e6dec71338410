"""Every Prometheus metric of the gateway, declared once: names, help, fixed buckets, fixed tag keys.

The metrics live in the ingress replica's own registry (one :class:`GatewayMetrics` per replica) and are
served in Prometheus' text format at ``GET /metrics`` on the gateway (``http://127.0.0.1:8000/metrics``
locally). Scoring time and batch sizes are measured in the ingress too (a scorer deployment answers a call
carrying many prompts with their scores only), so everything is recorded here, in one process. With several ingress replicas each one holds its own counts; Prometheus sums them when it scrapes
every replica (k8s: scrape the pods), and a scrape through Serve's proxy reaches one replica.

Names are a contract (dashboards and alerts use them): change them only with ``k8s/``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

PREFIX = "routeray_"

# Seconds. Scoring and overhead are milliseconds; upstream calls are seconds.
FAST_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
UPSTREAM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class GatewayMetrics:
    """The gateway's metrics in one registry. Tag keys: router, tier, reason, to_tier, kind, status, key, action.

    ``tier`` (and ``to_tier``) is the backend: ``strong``/``weak``, or with a pool (``Config.pool``) the pool
    model's name, so decisions, upstream latency and errors, tokens and spend are per pool model; the
    strong-call share is then the share of traffic to models other than the cheapest."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            f"{PREFIX}requests", "Chat completion requests by the model kind asked for and outcome.",
            ["kind", "status"], registry=r)  # kind: router|tier ; status: ok|client_error|upstream_error|overloaded
        self.decisions = Counter(
            f"{PREFIX}routing_decisions", "Routing decisions by router and chosen tier.",
            ["router", "tier"], registry=r)
        self.scoring_latency = Histogram(
            f"{PREFIX}scoring_latency_seconds", "Time scoring the batch that held a request: the router's own batch "
            "when it is scored in the ingress, else the ingress's call to its scorer deployment (queueing there "
            "included).",
            ["router"], buckets=FAST_BUCKETS, registry=r)
        self.scorer_batch_size = Histogram(
            f"{PREFIX}scorer_batch_size", "Prompts scored together with a request: the router's batch when it is "
            "scored in the ingress, else the prompts in the ingress's call to its scorer deployment.",
            ["router"], buckets=BATCH_BUCKETS, registry=r)
        self.routing_overhead = Histogram(
            f"{PREFIX}routing_overhead_seconds",
            "Gateway time before the backend call starts: parsing, scoring (with queueing), deciding.",
            ["router"], buckets=FAST_BUCKETS, registry=r)
        self.upstream_latency = Histogram(
            f"{PREFIX}upstream_latency_seconds",
            "Backend call time: to the full answer (non-streaming) or to the first chunk (streaming).",
            ["tier"], buckets=UPSTREAM_BUCKETS, registry=r)
        self.upstream_errors = Counter(
            f"{PREFIX}upstream_errors", "Failed backend calls by tier and reason.",
            ["tier", "reason"], registry=r)  # reason: connect|timeout|status_4xx|status_5xx|rate_limited|cooling_down|
        # bad_response|stream|circuit_open
        self.fallbacks = Counter(
            f"{PREFIX}fallbacks", "Fallbacks by cause and the tier used instead.",
            ["reason", "to_tier"], registry=r)  # reason: <tier>_error (strong_error, weak_error, <pool model>_error)|scorer_error
        self.guard_demotions = Counter(
            f"{PREFIX}guard_demotions", "Requests the rerouting guard sent to the weak tier although the prompt's "
            "own score would have sent them strong (a view of the prompt scored lower).",
            ["router"], registry=r)
        self.prefilter_settled = Counter(
            f"{PREFIX}prefilter_settled", "Requests routed on the prefilter's cheap estimate, without the router's "
            "full score (the estimate lay outside the band around the threshold), by tier.",
            ["router", "tier"], registry=r)
        self.loop_lag = Gauge(
            f"{PREFIX}event_loop_lag_seconds", "How far behind this replica's event loop runs (decaying peak); "
            "above ingress.shed_loop_lag_ms new requests are shed.", registry=r)
        self.strong_share = Gauge(
            f"{PREFIX}strong_call_share", "Share of strong decisions over the recent decision window.",
            ["router"], registry=r)
        self.strong_share_target = Gauge(
            f"{PREFIX}strong_call_share_target", "Target strong share of the last percentage-routed request.",
            ["router"], registry=r)
        self.threshold = Gauge(
            f"{PREFIX}percent_threshold",
            "Threshold the last percentage-routed request of a router got from the live score window.",
            ["router"], registry=r)  # no target tag: percentages come from clients (unbounded values)
        self.tokens = Counter(
            f"{PREFIX}tokens", "Tokens reported by the backends, by tier and kind (prompt|completion).",
            ["tier", "kind"], registry=r)
        self.tokens_estimated = Counter(
            f"{PREFIX}tokens_estimated", "Tokens estimated from text length for answers whose backend reported "
            "no usage, by tier and kind.", ["tier", "kind"], registry=r)
        self.spend = Counter(
            f"{PREFIX}spend_dollars", "Estimated spend in USD at the configured per-token prices, by tier.",
            ["tier"], registry=r)
        self.spend_all_strong = Counter(
            f"{PREFIX}spend_all_strong_dollars",
            "USD the same tokens would have cost at the strong tier's (a pool's priciest model's) prices "
            "(savings = this - spend).", registry=r)

        # Per client key (its key id, a digest prefix: as many series as configured keys; "anonymous" without keys)
        self.key_spend = Counter(
            f"{PREFIX}key_spend_dollars", "Estimated spend in USD per client key, at the tiers' prices.",
            ["key"], registry=r)
        self.key_budget = Gauge(
            f"{PREFIX}key_budget_dollars", "A key's budget in USD for the current period.", ["key"], registry=r)
        self.key_budget_remaining = Gauge(
            f"{PREFIX}key_budget_remaining_dollars", "USD left of a key's budget this period, less what requests "
            "in flight hold (as this replica last saw it; shared across replicas with the Redis store).",
            ["key"], registry=r)
        self.budget_refusals = Counter(
            f"{PREFIX}budget_refusals", "Requests of a key over its budget, by what happened (rejected: 429; "
            "downgraded: sent to the cheapest tier or pool model).", ["key", "action"], registry=r)

    def render(self) -> tuple[bytes, str]:
        """The registry in Prometheus' text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


METRIC_NAMES = [
    "routeray_requests_total", "routeray_routing_decisions_total", "routeray_scoring_latency_seconds",
    "routeray_scorer_batch_size", "routeray_routing_overhead_seconds", "routeray_upstream_latency_seconds",
    "routeray_upstream_errors_total", "routeray_fallbacks_total", "routeray_strong_call_share",
    "routeray_strong_call_share_target", "routeray_percent_threshold", "routeray_tokens_total",
    "routeray_tokens_estimated_total", "routeray_spend_dollars_total", "routeray_spend_all_strong_dollars_total",
    "routeray_event_loop_lag_seconds", "routeray_key_spend_dollars_total", "routeray_key_budget_dollars",
    "routeray_key_budget_remaining_dollars", "routeray_budget_refusals_total", "routeray_guard_demotions_total",
    "routeray_prefilter_settled_total",
]
