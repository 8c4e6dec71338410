"""The package version: read by pyproject.toml (setuptools), artifacts and ``routeray --version``."""

__version__ = "0.1.0"
