"""The one guard for every connection to a user-supplied host (DESIGN.md §6).

Order of decisions, each failing closed with a classified error:

1. parse: only ``postgresql://`` / ``postgres://``, one host, a database name, known options;
2. resolve the host name (the resolver is injectable, so tests decide addresses offline);
3. refuse metadata, multicast, unspecified and reserved addresses always, and loopback,
   private and link-local addresses unless ``BYODB_ALLOW_PRIVATE_HOSTS`` allows them;
4. enforce TLS in production;
5. hand back a :class:`CheckedTarget` that connects only to the checked addresses (libpq
   ``hostaddr``), so a second DNS answer cannot redirect the connection (no rebinding).

Only after a target passed the guard may a caller report detailed connection failures.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from byodb.content.tables import CONTENT_SCHEMA
from byodb.errors import ByodbError
from byodb.vault.secret import Secret

Resolver = Callable[[str, int], Awaitable[list[str]]]

# Options a user may put in the query string; everything else is refused (no sslrootcert
# or sslkey paths on our disk, no `options` that set server parameters, no `host` sockets).
ALLOWED_OPTIONS = frozenset({"sslmode", "channel_binding", "application_name", "connect_timeout"})
_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_TLS_MODES = ("require", "verify-ca", "verify-full")
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)


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
        options.append((key, value))
    return DatabaseUrl(
        user=unquote(parts.username),
        password=Secret(unquote(parts.password or "")),
        host=parts.hostname,
        port=port or 5432,
        database=database,
        options=tuple(options),
    )


async def system_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def classify_address(address: str) -> str:
    """``public``, ``private`` (loopback/private/link-local/shared) or ``forbidden``."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in _METADATA_ADDRESSES or ip.is_multicast or ip.is_unspecified:
        return "forbidden"
    if ip.is_loopback or ip.is_private or ip.is_link_local:
        return "private"
    if ip.is_reserved:
        return "forbidden"
    return "private" if not ip.is_global else "public"


@dataclass(frozen=True)
class SessionLimits:
    """What every connection to a user database sets at startup (its owner cannot override
    startup options with database or role settings): ``search_path`` with ``pg_catalog``
    first, so their functions and operators never shadow built-ins, and server-side time
    limits, so no statement, lock wait or idle transaction of ours outlives its deadline."""

    statement_timeout_s: float = 30.0
    lock_timeout_s: float = 5.0
    idle_in_transaction_timeout_s: float = 60.0

    def options(self) -> str:
        def ms(seconds: float) -> int:
            return max(1, round(seconds * 1000))

        return (f"-c search_path=pg_catalog,{CONTENT_SCHEMA} "
                f"-c statement_timeout={ms(self.statement_timeout_s)} "
                f"-c lock_timeout={ms(self.lock_timeout_s)} "
                f"-c idle_in_transaction_session_timeout="
                f"{ms(self.idle_in_transaction_timeout_s)}")


@dataclass(frozen=True)
class CheckedTarget:
    """A URL that passed the guard, bound to the addresses that were checked."""

    url: DatabaseUrl
    addresses: tuple[str, ...]
    tls_required: bool = False
    connect_timeout_s: float = 5.0
    limits: SessionLimits = field(default_factory=SessionLimits)

    @property
    def sslmode(self) -> str:
        return self.url.option("sslmode") or ("verify-full" if self.tls_required else "prefer")

    def connect_kwargs(self) -> dict[str, Any]:
        """libpq parameters. Unwraps the password: call only where a connection is made."""
        kwargs: dict[str, Any] = {
            "host": ",".join([self.url.host] * len(self.addresses)),  # for TLS checks
            # ...but sockets go only to the checked addresses, tried in order (a name like
            # localhost may resolve to ::1 first while the server listens on 127.0.0.1).
            "hostaddr": ",".join(self.addresses),
            "port": self.url.port,
            "dbname": self.url.database,
            "user": self.url.user,
            "password": self.url.password.reveal(),
            "sslmode": self.sslmode,
            "connect_timeout": max(1, round(self.connect_timeout_s)),
            "application_name": self.url.option("application_name") or "byodb",
            "options": self.limits.options(),
            # A server that vanishes without closing the socket is noticed by the kernel.
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            "tcp_user_timeout": max(10_000, round(self.connect_timeout_s * 2000)),
        }
        if self.sslmode == "verify-full" and not self.url.option("sslmode"):
            kwargs["sslrootcert"] = "system"
        if self.url.option("channel_binding"):
            kwargs["channel_binding"] = self.url.option("channel_binding")
        return kwargs

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
