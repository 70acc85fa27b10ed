"""Domain errors of the serving engine, each tied to the gRPC status code the client sees.

The engine (sessions, batcher, models) raises these without importing grpc; `service.py` maps
`code` (a `grpc.StatusCode` member name) onto the call's status. Messages say what to do next.
"""

from __future__ import annotations


class ServingError(Exception):
    """Base class: `code` is the name of the grpc.StatusCode the client receives."""

    code = "INTERNAL"


class InvalidArgument(ServingError):
    code = "INVALID_ARGUMENT"


class SessionNotFound(ServingError):
    code = "NOT_FOUND"


class ModelNotFound(ServingError):
    code = "NOT_FOUND"


class SessionClosed(ServingError):
    code = "FAILED_PRECONDITION"


class ResourceExhausted(ServingError):
    code = "RESOURCE_EXHAUSTED"


class Unavailable(ServingError):
    code = "UNAVAILABLE"


class DeadlineExceeded(ServingError):
    code = "DEADLINE_EXCEEDED"
