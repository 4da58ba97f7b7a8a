"""Domain errors: raised by services with a message a person can act on.

The CLI maps them to exit codes and Rich messages, the API to 4xx JSON. A traceback reaching a
user is a bug, so anything a user can cause must end up as one of these.
"""

from __future__ import annotations


class UrbansecError(Exception):
    """Base of every error a user can cause and fix."""

    exit_code = 1
    http_status = 400
    code = "error"

    def __init__(self, message: str, *, details: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class UsageError(UrbansecError):
    """The request itself is malformed: bad option, unknown preset, bad filter."""

    exit_code = 2
    code = "usage_error"


class NotFoundError(UrbansecError):
    http_status = 404
    code = "not_found"


class InputFormatError(UrbansecError):
    """A file is not of the declared format (missing columns, unreadable, wrong type)."""

    code = "input_format"


class RejectedRowsError(UrbansecError):
    """Rows were rejected while ``--strict`` asked for all or nothing."""

    code = "rejected_rows"


class DatabaseError(UrbansecError):
    """The database cannot be reached or is not at the expected schema version."""

    http_status = 503
    code = "database"


class AuthenticationError(UrbansecError):
    """No credentials, or credentials that are wrong, expired or revoked."""

    http_status = 401
    code = "unauthenticated"


class PermissionDeniedError(UrbansecError):
    """Known caller, not allowed to do this."""

    http_status = 403
    code = "forbidden"


class ConflictError(UrbansecError):
    """The request clashes with the current state (a duplicate, a wrong status)."""

    http_status = 409
    code = "conflict"


class PayloadTooLargeError(UrbansecError):
    http_status = 413
    code = "payload_too_large"


class RateLimitedError(UrbansecError):
    """Too many requests from one client; ``details["retry_after"]`` says when to retry."""

    http_status = 429
    code = "rate_limited"
