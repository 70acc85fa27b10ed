"""Typed exceptions for the gRPC status codes a Polyskill server answers with.

Every exception keeps the status `code` (a `grpc.StatusCode`) and the server's `message`, which
says what to do next (policy.proto lists what each code means). Catch `PolyskillError` for all of
them, or one class for one case:

    try:
        action = session.step(obs)
    except InvalidArgument as e:      # the observation does not match the model's spec
        print(e.message)
"""

from __future__ import annotations

import grpc


class PolyskillError(Exception):
    """Base class: a failed call, with its gRPC status code and the server's message."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


class InvalidArgument(PolyskillError):
    """The request (usually the observation) does not match the model; the session is unchanged."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(PolyskillError):
    """Unknown or expired session, or a model alias/version the server has not loaded."""

    code = grpc.StatusCode.NOT_FOUND


class SessionLost(NotFound):
    """The server no longer knows this session (it expired, or the server restarted) and its
    context is gone. Open a new session, or create the session with `reopen=True` to let the
    client do that itself (the agent then starts adapting from scratch)."""


class FailedPrecondition(PolyskillError):
    """The session was closed."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(PolyskillError):
    """The server holds its maximum number of sessions: close some or retry later."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(PolyskillError):
    """The server cannot be reached, has no model loaded yet, or is draining. Retried with
    backoff by the client (see `RetryPolicy`) before it is raised."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(PolyskillError):
    """The step did not finish within its deadline; on the server it did not count."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unauthenticated(PolyskillError):
    """Missing or wrong bearer token (`token=` on the client)."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(PolyskillError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Cancelled(PolyskillError):
    code = grpc.StatusCode.CANCELLED


class Unimplemented(PolyskillError):
    """The server does not offer this method (an older or different server)."""

    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(PolyskillError):
    code = grpc.StatusCode.INTERNAL


class SpecMismatch(ValueError):
    """A gymnasium env (or an observation) does not fit the served model's ModelInfo; raised by
    the client before the first step, with every difference listed."""


_BY_CODE: dict[grpc.StatusCode, type[PolyskillError]] = {
    cls.code: cls
    for cls in (InvalidArgument, NotFound, FailedPrecondition, ResourceExhausted, Unavailable,
                DeadlineExceeded, Unauthenticated, PermissionDenied, Cancelled, Unimplemented,
                Internal)
}


def error_for(code: grpc.StatusCode, message: str) -> PolyskillError:
    """The typed exception for `code` (the base class, carrying the code, for any other)."""
    cls = _BY_CODE.get(code)
    return cls(message) if cls is not None else PolyskillError(message, code)


def from_rpc_error(error: grpc.RpcError) -> PolyskillError:
    """Convert a grpc.RpcError (sync or aio) into its typed exception, keeping the message."""
    code = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
    details = error.details() if callable(getattr(error, "details", None)) else None
    return error_for(code or grpc.StatusCode.UNKNOWN, details or str(error))
