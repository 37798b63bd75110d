"""Typed errors. Each carries a stable ``code`` for programs and a sentence for people.

The web layer maps every :class:`ByodbError` to ``{"error": {"code", "message"}}`` in one
place (``byodb.web.errors``). Messages never contain secrets or user content.
"""

from __future__ import annotations


class ByodbError(Exception):
    """Base of all errors the product reports to a caller."""

    code: str = "error"
    status: int = 500

    def __init__(self, message: str, *, hint: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code is not None:
            self.code = code


class ConfigurationError(ByodbError):
    code = "configuration_error"


class InvalidInput(ByodbError):
    code = "invalid_input"
    status = 422


class NotFound(ByodbError):
    code = "not_found"
    status = 404


class Conflict(ByodbError):
    code = "conflict"
    status = 409


class Unauthenticated(ByodbError):
    code = "unauthenticated"
    status = 401


class Forbidden(ByodbError):
    code = "forbidden"
    status = 403


class RateLimited(ByodbError):
    code = "rate_limited"
    status = 429


class ByodUnavailable(ByodbError):
    """The user's own database cannot be used right now; the app blocks instead of falling
    back to main (DESIGN.md §1.2)."""

    code = "byod_unavailable"
    status = 503


class ByodTimeout(ByodbError):
    """The user's database answers but did not finish this request in its deadline (a
    statement or lock limit fired, e.g. a table the owner holds locked): the request gets
    503 with ``Retry-After`` and the user stays connected — slow is not down."""

    code = "byod_timeout"
    status = 503


class UnknownTable(ByodbError):
    """A table the placement map does not know: a programming error, never routed to main."""

    code = "unknown_table"
    status = 500


class DecryptionError(ByodbError):
    """A ciphertext that does not open: tampered, copied to another row, or unknown key."""

    code = "decryption_failed"
    status = 500


class ByodDisabled(ByodbError):
    """``BYOD_ENABLED=false``: the operator's kill switch refuses new connections (users
    already connected keep working, retrying, disconnecting and exporting)."""

    code = "byod_disabled"
    status = 403


class PremiumRequired(ByodbError):
    """``BYOD_REQUIRES_PREMIUM=true`` and the token lacks the premium claim."""

    code = "premium_required"
    status = 402


class FileStorageDisabled(ByodbError):
    """``BYOD_FILE_STORAGE=false``: file bytes of a user whose content is on their own
    database are refused (they are never kept on main instead)."""

    code = "file_storage_disabled"
    status = 403


class ByodUpdating(ByodbError):
    """The user's database is below the oldest schema version this code works with and its
    migration did not finish in the moment the request waited: retry shortly (503 with
    ``Retry-After``)."""

    code = "byod_updating"
    status = 503
