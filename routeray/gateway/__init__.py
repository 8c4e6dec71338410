"""The gateway core, without Ray: the OpenAI protocol and HTTP glue, model-name parsing and decisions, the
routing service (score -> decide -> call -> fall back -> metrics), backends (timeouts, retries, rate-limit
cool-downs, circuit breaker), readiness, request ids, access keys and rate limits, spend, overload
shedding, continuous batching and in-process scorers. ``routeray.deployments`` serves it on Ray Serve;
``routeray.sdk`` uses it in-process. Nothing here imports Ray (tests/unit/test_layers.py checks it).
"""
