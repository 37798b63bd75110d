"""The one guard for every connection to a user-supplied host (DESIGN.md §6).

Order of decisions, each failing closed with a classified error:

1. parse: only ``postgresql://`` / ``postgres://``, one host, a database name, known options;
2. resolve the host name (the resolver is injectable, so tests decide addresses offline);
3. refuse cloud metadata/platform, multicast, unspecified and reserved addresses always, and
   loopback, private, site-local and link-local addresses unless ``BYODB_ALLOW_PRIVATE_HOSTS``
   allows them; an IPv6 address that embeds an IPv4 address (6to4, Teredo, NAT64,
   IPv4-compatible/-mapped/-translated) is judged by the IPv4 address it reaches;
4. enforce TLS in production;
5. hand back a :class:`CheckedTarget` that connects only to the checked addresses (libpq
   ``hostaddr``), so a second DNS answer cannot redirect the connection (no rebinding), and
   whose connection is built from the URL alone: nothing of this host's libpq configuration
   (``PG*`` variables, ``~/.pgpass``, service files, client certificates) reaches it.

Only after a target passed the guard may a caller report detailed connection failures.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import psycopg

from byodb.errors import ByodbError, ConfigurationError
from byodb.instances.connection.addresses import Resolver, classify_address, system_resolver
from byodb.instances.connection.hostenv import (
    MIN_LIBPQ_VERSION,
    NO_FILE,
    URL_AUTH_METHODS,
    system_ca_file,
)
from byodb.instances.connection.session import SessionLimits
from byodb.vault.secret import Secret

log = logging.getLogger(__name__)

# Options a user may put in the query string; everything else is refused (no sslkey or
# sslrootcert paths on our disk — a CA certificate is pasted instead —, no `options` that
# set server parameters, no `host` sockets).
ALLOWED_OPTIONS = frozenset({"sslmode", "channel_binding", "application_name", "connect_timeout",
                             "sslrootcert"})
_CHANNEL_BINDING = ("disable", "prefer", "require")
_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_TLS_MODES = ("require", "verify-ca", "verify-full")
class ConnectionCheckError(ByodbError):
    """A classified failure of a user database URL or connection (codes of DESIGN.md §5)."""

    status = 422


@dataclass(frozen=True)
class DatabaseUrl:
    """A parsed user database URL. The password is a :class:`Secret`."""

    user: str
    password: Secret[str]
    host: str
    port: int
    database: str
    options: tuple[tuple[str, str], ...] = ()

    def option(self, name: str) -> str | None:
        return dict(self.options).get(name)

    def redacted(self) -> str:
        """The URL as we show it: everything but the password."""
        query = "&".join(f"{k}={v}" for k, v in self.options if k != "connect_timeout")
        host = f"[{self.host}]" if ":" in self.host else self.host
        shown = f"postgresql://{self.user}:****@{host}:{self.port}/{self.database}"
        return f"{shown}?{query}" if query else shown

    def __repr__(self) -> str:
        return f"DatabaseUrl({self.redacted()!r})"


def _invalid(message: str, hint: str) -> ConnectionCheckError:
    return ConnectionCheckError(message, hint=hint, code="invalid_url")


def parse_database_url(raw: str) -> DatabaseUrl:
    """Parse and validate the shape of a URL; nothing is contacted."""
    if not isinstance(raw, str) or not raw.strip():
        raise _invalid("The database URL is empty.", "Paste the full connection URL.")
    raw = raw.strip()
    if len(raw) > 2048:
        raise _invalid("The database URL is too long.", "Paste the connection URL only.")
    example = "postgresql://user:password@host:5432/database"
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise _invalid("The database URL is malformed.", f"Use the form {example}.") from None
    if parts.scheme.lower() not in ("postgresql", "postgres"):
        raise _invalid(
            "Only postgresql:// URLs are supported.",
            f"Use the form {example}; other databases cannot hold byodb content.",
        )
    if "," in parts.netloc:
        raise _invalid("URLs with several hosts are not supported.", "Give one host.")
    if not parts.hostname:
        raise _invalid("The database URL has no host.", f"Use the form {example}.")
    if not parts.username:
        raise _invalid("The database URL has no user name.", f"Use the form {example}.")
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise _invalid("The database URL names no database.", f"Use the form {example}.")
    if parts.fragment:
        raise _invalid("The database URL is malformed.", f"Use the form {example}.")
    options: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in ALLOWED_OPTIONS:
            raise _invalid(
                f"The connection option {key!r} is not supported.",
                "Allowed options: " + ", ".join(sorted(ALLOWED_OPTIONS)) + ".",
            )
        if key == "sslmode" and value not in _SSL_MODES:
            raise _invalid(f"Unknown sslmode {value!r}.", "Use sslmode=require or verify-full.")
        if key == "channel_binding" and value not in _CHANNEL_BINDING:
            raise _invalid(f"Unknown channel_binding {value!r}.",
                           "Use channel_binding=require, prefer or disable.")
        if key == "sslrootcert" and value != "system":
            raise _invalid("sslrootcert may only be 'system' (the trusted CAs of this server).",
                           "To trust your provider's CA, remove sslrootcert from the URL and "
                           "paste the CA certificate in the field next to it.")
        options.append((key, value))
    given = dict(options)
    if given.get("sslrootcert") == "system" and \
            given.get("sslmode", "verify-full") != "verify-full":
        raise _invalid("sslrootcert=system needs sslmode=verify-full.",
                       "Use sslmode=verify-full, or leave sslmode out.")
    return DatabaseUrl(
        user=unquote(parts.username),
        password=Secret(unquote(parts.password or "")),
        host=parts.hostname,
        port=port or 5432,
        database=database,
        options=tuple(options),
    )


def client_auth_refusal(exc: BaseException, target: CheckedTarget) -> ConnectionCheckError | None:
    """libpq's own refusal to authenticate (the URL has no password but the server asks for
    one, or the server asks for a method we do not use) as ``auth_failed``; None otherwise.
    These errors come from libpq, not the server, so they carry no SQLSTATE."""
    text = str(exc)
    if "authentication method requirement" not in text and "no password supplied" not in text:
        return None
    if not target.url.password.reveal():
        return ConnectionCheckError(
            "The database asks for a password and the URL has none.",
            hint="Put the password in the URL: postgresql://user:password@host/database.",
            code="auth_failed")
    return ConnectionCheckError(
        "The database asks for an authentication method byodb does not support.",
        hint="Use password (SCRAM) authentication for this database user.",
        code="auth_failed")


@dataclass(frozen=True)
class CheckedTarget:
    """A URL that passed the guard, bound to the addresses that were checked."""

    url: DatabaseUrl
    addresses: tuple[str, ...]
    tls_required: bool = False
    connect_timeout_s: float = 5.0
    limits: SessionLimits = field(default_factory=SessionLimits)
    ca_file: str | None = None  # the user's pasted CA certificate, as written by us

    @property
    def sslmode(self) -> str:
        verify = self.tls_required or self.ca_file or self.url.option("sslrootcert")
        default = "verify-full" if verify else "prefer"
        return self.url.option("sslmode") or default

    def connect_kwargs(self) -> dict[str, Any]:
        """libpq parameters. Unwraps the password: call only where a connection is made.

        Built from the URL alone: every parameter libpq would otherwise take from this
        host (a ``PG*`` variable, ``~/.pgpass``, ``~/.postgresql/*``) is set here, to the
        URL's value or a safe fixed one. Two cannot be set to "nothing": an empty password
        counts as none given (libpq then reads the passfile and, depending on how the
        parameters reach it, ``PGPASSWORD`` or a service file's), so a URL without a
        password also gets ``require_auth=none`` — libpq refuses a server that asks for a
        password before sending any, whatever it found; and ``service``, which
        :func:`forget_host_libpq_environment` handles (``PGSERVICE``).
        """
        if psycopg.pq.version() < MIN_LIBPQ_VERSION:
            raise ConfigurationError(
                f"libpq {psycopg.pq.version()} is too old: byodb needs libpq 16 or newer "
                "(require_auth, sslcertmode) to keep this host's credentials away from users' "
                "databases. Install psycopg[binary].")
        password = self.url.password.reveal()
        kwargs: dict[str, Any] = {
            "host": ",".join([self.url.host] * len(self.addresses)),  # for TLS checks
            # ...but sockets go only to the checked addresses, tried in order (a name like
            # localhost may resolve to ::1 first while the server listens on 127.0.0.1).
            "hostaddr": ",".join(self.addresses),
            "port": self.url.port,
            "dbname": self.url.database,
            "user": self.url.user,
            "password": password,
            "require_auth": URL_AUTH_METHODS if password else "none",
            "passfile": NO_FILE,  # never ~/.pgpass or PGPASSFILE of this host
            "sslmode": self.sslmode,
            # Never present a client certificate: this host's (~/.postgresql/postgresql.crt,
            # PGSSLCERT/PGSSLKEY) identifies the operator, not the user.
            "sslcertmode": "disable",
            "sslcert": NO_FILE,
            "sslkey": NO_FILE,
            "sslrootcert": self._sslrootcert(),
            "sslcrl": NO_FILE,
            "sslcrldir": NO_FILE,
            "sslnegotiation": "postgres",
            "ssl_min_protocol_version": "TLSv1.2",
            "sslsni": 1,
            "sslcompression": 0,
            "channel_binding": self.url.option("channel_binding") or "prefer",
            "gssencmode": "disable",  # no GSSAPI with this host's Kerberos credentials
            "gssdelegation": 0,
            "client_encoding": "UTF8",
            "target_session_attrs": "any",
            "load_balance_hosts": "disable",
            "connect_timeout": max(1, round(self.connect_timeout_s)),
            "application_name": self.url.option("application_name") or "byodb",
            # Empty: never sent (poolers refuse the `options` startup parameter; our settings
            # go per transaction), and PGOPTIONS of this host cannot fill it either.
            "options": "",
            # A server that vanishes without closing the socket is noticed by the kernel.
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            "tcp_user_timeout": max(10_000, round(self.connect_timeout_s * 2000)),
        }
        return kwargs

    def _sslrootcert(self) -> str:
        """The user's pasted CA certificate, else trust anchors from the system — never this
        host's ``~/.postgresql/root.crt`` (with ``sslmode=require`` its mere presence would
        turn on verification against it). With a CA certificate, libpq verifies the chain
        even for ``sslmode=require``, as it documents."""
        if self.ca_file is not None and self.sslmode != "disable":
            return self.ca_file
        if self.sslmode == "verify-full":
            return "system"
        if self.sslmode == "verify-ca":
            return system_ca_file()
        return NO_FILE  # no verification, as the mode says

    def redacted(self) -> str:
        return self.url.redacted()

    def __repr__(self) -> str:
        return f"CheckedTarget({self.redacted()!r}, addresses={self.addresses!r})"


@dataclass(frozen=True)
class GuardPolicy:
    """How the guard decides for this deployment (from settings), plus the resolver."""

    allow_private: bool
    tls_required: bool
    resolver: Resolver = system_resolver
    connect_timeout_s: float = 5.0
    limits: SessionLimits = field(default_factory=SessionLimits)
    # Where users' CA certificates are written for libpq (private to this deployment).
    # The default is a fresh private (0700) folder of this process.
    ca_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="byodb-tls-")))

    async def check(self, raw: str | DatabaseUrl) -> CheckedTarget:
        return await check_url(raw, allow_private=self.allow_private,
                               tls_required=self.tls_required, resolver=self.resolver,
                               connect_timeout_s=self.connect_timeout_s, limits=self.limits)


async def check_url(
    raw: str | DatabaseUrl,
    *,
    allow_private: bool,
    tls_required: bool,
    resolver: Resolver = system_resolver,
    connect_timeout_s: float = 5.0,
    limits: SessionLimits | None = None,
) -> CheckedTarget:
    """Run the guard's decisions in order and return a target safe to connect to."""
    url = raw if isinstance(raw, DatabaseUrl) else parse_database_url(raw)
    if tls_required and (url.option("sslmode") or "verify-full") not in _TLS_MODES:
        raise ConnectionCheckError(
            "This server requires an encrypted (TLS) connection to your database.",
            hint="Use sslmode=require or sslmode=verify-full.",
            code="tls_failed",
        )
    try:
        addresses = [str(ipaddress.ip_address(url.host))]
    except ValueError:
        try:
            addresses = await asyncio.wait_for(resolver(url.host, url.port), connect_timeout_s)
        except (OSError, TimeoutError, UnicodeError):
            addresses = []
        if not addresses:
            raise ConnectionCheckError(
                f"The host name {url.host!r} could not be found.",
                hint="Check the host name for typos; copy it again from your provider.",
                code="dns_failure",
            ) from None
    for address in addresses:
        kind = classify_address(address)
        if kind == "forbidden" or (kind == "private" and not allow_private):
            raise ConnectionCheckError(
                "This address is not allowed for a user database.",
                hint="Use your database's public host name. Local and private network "
                "addresses are refused on this server.",
                code="blocked_address",
            )
    return CheckedTarget(
        url=url,
        addresses=tuple(addresses),
        tls_required=tls_required,
        connect_timeout_s=connect_timeout_s,
        limits=limits or SessionLimits(),
    )
