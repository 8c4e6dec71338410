"""Ray Serve glue only: application builders (``app``), the ingress deployment (``ingress``) and scorer
deployments (``scorer``) over :mod:`routeray.gateway`, and ``routeray serve`` (``cli``)."""
