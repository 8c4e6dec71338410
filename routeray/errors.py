"""Exceptions users see. Each says what went wrong and where, in words a person understands."""

from __future__ import annotations


class RouterayError(Exception):
    """Base class for every error routeray raises on purpose."""


class DataError(RouterayError, ValueError):
    """Bad input data: a missing column, an unknown label, an empty file. Names the file and row."""

    def __init__(self, message: str, path: object = None, row: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}"
            if row is not None:
                where += f", row {row}"
            where += ": "
        super().__init__(where + message)
        self.path = path
        self.row = row


class ArtifactError(RouterayError):
    """An artifact that is missing, of another version, or does not match what it is used with."""


class UnknownRouterError(RouterayError, KeyError):
    """A router name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class UnknownModelError(RouterayError, KeyError):
    """A model a router was not trained on and that no alias maps to a model it knows."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])
