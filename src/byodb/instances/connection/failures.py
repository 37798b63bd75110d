"""Every failure of a user's database as one of the codes of DESIGN.md §5: a stable code for
programs, a plain sentence and a fix hint for people (Airbyte's codes, Metabase's sentences).

The one classifier of user-database errors. ``unreachable`` means no server answered —
nothing else: a server that answered with an error gets the code of that error, and one this
module does not know is ``server_error`` with its SQLSTATE and its (redacted, bounded) words.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata

import psycopg

from byodb.instances.connection.guard import ConnectionCheckError, DatabaseUrl

MAX_SERVER_TEXT = 300
"""Characters of a server's own message kept in an error shown to people."""

# Errors that mean "the server did not do it in time" rather than "the server is gone":
# a statement or lock timeout, a lock not available, a deadlock, a serialization failure.
SLOW_SQLSTATES = frozenset({"57014", "55P03", "40P01", "40001"})
# A failure of these classes says nothing about the database being gone: the server answered.
_READ_ONLY_SQLSTATES = frozenset({"25006"})
_UNREACHABLE_WORDS = ("connection refused", "no route to host", "network is unreachable",
                      "could not connect", "connection reset", "host is down",
                      "server closed the connection", "connection to server",
                      "could not receive data", "could not send data", "broken pipe",
                      "the connection is closed", "connection timed out")


def fail(code: str, message: str, hint: str) -> ConnectionCheckError:
    return ConnectionCheckError(message, hint=hint, code=code)


def server_words(exc: BaseException, url: DatabaseUrl | None = None) -> str:
    """A server's message as we may show it: the first line, the password and control
    characters removed, at most :data:`MAX_SERVER_TEXT` characters."""
    diag = getattr(exc, "diag", None)
    text = (getattr(diag, "message_primary", None) if diag is not None else None) or str(exc)
    text = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    said = re.search(r"(?:FATAL|ERROR):\s+(.*)", text)
    if said is not None:  # libpq's "connection to server at … failed: FATAL:  …"
        text = said.group(1)
    if url is not None:
        secret = url.password.reveal()
        if secret:
            text = text.replace(secret, "****")
    text = re.sub(r"(?i)(password\s*[=:]\s*)\S+", r"\1****", text)
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    return text[:MAX_SERVER_TEXT]


def sqlstate_of(exc: BaseException) -> str | None:
    state = getattr(exc, "sqlstate", None)
    return state if isinstance(state, str) else None


def is_slow(exc: BaseException) -> bool:
    """The server answered, just not in time (its statement or lock limit fired)."""
    return sqlstate_of(exc) in SLOW_SQLSTATES


def classify(exc: BaseException, url: DatabaseUrl) -> ConnectionCheckError:
    """Map a failed connection or statement to a code, a sentence and a hint."""
    if isinstance(exc, ConnectionCheckError):
        return exc
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return fail("timeout", "The database did not answer in time.",
                    "Check that the server is running and not paused, then retry.")
    sqlstate = sqlstate_of(exc)
    text = str(exc).lower()
    if sqlstate is not None:
        return _server_answer(exc, sqlstate, text, url)
    return _client_side(exc, text, url)


def _server_answer(exc: BaseException, sqlstate: str, text: str,
                   url: DatabaseUrl) -> ConnectionCheckError:
    if sqlstate in ("28P01", "28000"):
        # A server that takes only TLS (RDS with rds.force_ssl) says "no pg_hba.conf entry
        # for host …, no encryption" ("SSL off" before PostgreSQL 14).
        if "no encryption" in text or "ssl off" in text or \
                ("ssl" in text and "no pg_hba.conf entry" not in text):
            return fail("tls_failed", "The database only accepts encrypted (TLS) connections.",
                        "Use sslmode=require or sslmode=verify-full.")
        if "no pg_hba.conf entry" in text:
            return fail("auth_failed", "The database refused connections from this server.",
                        "Allow this server's address in your database's access settings.")
        return fail("auth_failed", "The user name or password was not accepted.",
                    "Copy the password again or reset it at your provider.")
    if sqlstate == "3D000":
        return fail("database_missing", f"The database {url.database!r} does not exist.",
                    "Create it first, or fix the database name at the end of the URL.")
    if sqlstate == "08P01" and "unsupported startup parameter" in text:
        parameter = text.split("unsupported startup parameter", 1)[1].strip(" :")
        return fail("pooler_unsupported",
                    "The connection pooler in front of this database refused a setting "
                    f"byodb needs ({server_words(exc, url)}).",
                    f"byodb cannot work around the pooler's refusal of {parameter[:60]!r}: "
                    "use the provider's direct (unpooled) URL, or configure the pooler to "
                    "accept it.")
    if sqlstate in _READ_ONLY_SQLSTATES or (sqlstate == "57P03" and "standby" in text):
        return read_only()
    if sqlstate == "42501":
        return fail("insufficient_privileges",
                    "This user may not do what byodb needs in this database.",
                    f"The server said: {server_words(exc, url)}. Use the database owner, "
                    "or grant the missing privilege.")
    if sqlstate == "53300":
        return fail("server_error", "The database has no free connection slots "
                    f"(SQLSTATE 53300: {server_words(exc, url)}).",
                    "Close idle connections, raise the limit, or use the provider's pooled URL.")
    return fail("server_error", f"The database answered with an error (SQLSTATE {sqlstate}: "
                f"{server_words(exc, url)}).",
                "Fix the cause on your database, then test the connection again.")


# What a server says while refusing a connection reaches us as libpq's text (no SQLSTATE):
# "connection to server at … failed: FATAL:  <message>". These are the refusals we know.
_CONNECT_REFUSALS = (
    ("password authentication failed", "28P01"),
    ("no pg_hba.conf entry", "28000"),
    ("does not exist", "3D000"),
    ("unsupported startup parameter", "08P01"),
    ("too many clients", "53300"),
    ("too many connections", "53300"),
    ("no more connections allowed", "53300"),
    ("hot standby", "57P03"),
)


def _client_side(exc: BaseException, text: str,
                 url: DatabaseUrl) -> ConnectionCheckError:
    said = re.search(r"(?:fatal|error):\s+(.*)", text)
    if said is not None:
        words = said.group(1)
        if "role" in words and "does not exist" in words:
            return fail("auth_failed", "The user name or password was not accepted.",
                        "Check the user name in the URL.")
        for phrase, sqlstate in _CONNECT_REFUSALS:
            if phrase in words:
                return _server_answer(exc, sqlstate, words, url)
    if "channel binding" in text:
        return fail("auth_failed", "Channel binding was required but the server cannot do it "
                    f"({server_words(exc, url)}).",
                    "Channel binding needs TLS and SCRAM authentication: use sslmode=require "
                    "(or stronger), or set channel_binding=prefer.")
    if "certificate" in text or ("verify" in text and "ssl" in text):
        return fail("tls_failed", "The server's TLS certificate could not be verified "
                    f"({server_words(exc, url)}).",
                    "Paste your provider's CA certificate, or check that the host name in the "
                    "URL is the one the certificate was issued for.")
    if "ssl" in text or "tls" in text:
        return fail("tls_failed", "A secure (TLS) connection could not be set up "
                    f"({server_words(exc, url)}).",
                    "Check that the server supports TLS and that sslmode matches it.")
    if "timeout" in text or "timed out" in text:
        return fail("timeout", "The database did not answer in time.",
                    "Check that the server is running and not paused, then retry.")
    if "role" in text and "does not exist" in text:
        return fail("auth_failed", "The user name or password was not accepted.",
                    "Check the user name in the URL.")
    if isinstance(exc, OSError) or any(word in text for word in _UNREACHABLE_WORDS) or \
            (isinstance(exc, psycopg.OperationalError) and "error:" not in text):
        return fail("unreachable", "The database server could not be reached.",
                    "Check the host and port, and that the server accepts outside "
                    "connections.")
    return fail("server_error", "The database answered with an error "
                f"({server_words(exc, url)}).",
                "Fix the cause on your database, then test the connection again.")


def read_only() -> ConnectionCheckError:
    return fail("read_only", "This database only accepts reads (a read-only user, a replica "
                "or a hot standby).",
                "Use the primary database's URL with a user that may create tables, such as "
                "the database owner.")


def unsupported_encoding(encoding: str) -> ConnectionCheckError:
    return fail("unsupported_encoding",
                f"The database stores text as {encoding[:40]}, which cannot hold every "
                "character of a chat (emoji, most scripts).",
                "Create the database with ENCODING 'UTF8' (the default at every hosted "
                "provider) and use that one.")
