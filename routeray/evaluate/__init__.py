"""Router evaluation: the RouteLLM paper's benchmarks and metrics (``routeray eval``)."""
