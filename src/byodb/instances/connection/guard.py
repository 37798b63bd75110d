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
import functools
import ipaddress
import logging
import os
import socket
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

import psycopg

from byodb import executors
from byodb.errors import ByodbError, ConfigurationError
from byodb.instances.connection.session import SessionLimits
from byodb.vault.secret import Secret

log = logging.getLogger(__name__)

Resolver = Callable[[str, int], Awaitable[list[str]]]
AddressClass = Literal["public", "private", "forbidden"]

# Options a user may put in the query string; everything else is refused (no sslkey or
# sslrootcert paths on our disk — a CA certificate is pasted instead —, no `options` that
# set server parameters, no `host` sockets).
ALLOWED_OPTIONS = frozenset({"sslmode", "channel_binding", "application_name", "connect_timeout",
                             "sslrootcert"})
_CHANNEL_BINDING = ("disable", "prefer", "require")
_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_TLS_MODES = ("require", "verify-ca", "verify-full")
# Cloud metadata and platform endpoints: they hand out credentials, instance identity or
# host configuration to whoever asks from inside the VM, so they are refused even where
# private hosts are allowed (self-hosting on a cloud VM still must not reach them).
_METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    # AWS EC2, GCP (metadata.google.internal), Azure IMDS, Oracle Cloud, DigitalOcean,
    # Hetzner, OpenStack, IBM Cloud, Linode, Vultr, Huawei Cloud: the common IMDS address.
    "169.254.169.254",
    "fd00:ec2::254",                      # AWS EC2 IMDS over IPv6 (Nitro)
    "169.254.170.2",                      # AWS ECS task metadata and credentials
    "169.254.170.23", "fd00:ec2::23",     # AWS EKS Pod Identity agent (credentials)
    "169.254.169.253", "fd00:ec2::253",   # AWS VPC DNS resolver
    "169.254.169.123", "fd00:ec2::123",   # AWS time sync service
    "fd20:ce::254",                       # GCP metadata server over IPv6
    "168.63.129.16",                      # Azure platform / WireServer (agent, DNS, probes)
    "192.0.0.192",                        # Oracle Cloud (OCI) legacy metadata
    "100.100.100.200",                    # Alibaba Cloud metadata
    "169.254.0.23",                       # Tencent Cloud metadata (metadata.tencentyun.com)
    "169.254.42.42", "fd00:42::42",       # Scaleway metadata
    "fe80::a9fe:a9fe",                    # OpenStack metadata over IPv6 link-local
))
_ADDRESS_RANK: dict[AddressClass, int] = {"public": 0, "private": 1, "forbidden": 2}
# NAT64 (RFC 6052 / RFC 8215): the translator sends packets to the embedded IPv4 address.
_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")        # deprecated ::a.b.c.d
_IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # SIIT (RFC 2765)


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


async def system_resolver(host: str, port: int) -> list[str]:
    # On the DNS pool of its own (byodb.executors), never the default thread pool.
    infos = await executors.resolve(host, port, kind=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _strictest(*kinds: AddressClass) -> AddressClass:
    return max(kinds, key=_ADDRESS_RANK.__getitem__)


def _ipv4_at(ip: ipaddress.IPv6Address, *bit_ranges: tuple[int, int]) -> ipaddress.IPv4Address:
    """The IPv4 address stored in ``bit_ranges`` (first bit, last bit + 1, counted from the
    left) of ``ip`` — RFC 6052 splits it around the reserved bits 64..71 for some prefixes."""
    value = 0
    for start, end in bit_ranges:
        width = end - start
        value = (value << width) | ((int(ip) >> (128 - end)) & ((1 << width) - 1))
    return ipaddress.IPv4Address(value)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """Every IPv4 address a packet to ``ip`` may be delivered to by a relay or translator
    on our side of the network (empty when ``ip`` is plain IPv6)."""
    if ip.ipv4_mapped is not None:                        # ::ffff:a.b.c.d
        return (ip.ipv4_mapped,)
    if ip.sixtofour is not None:                          # 6to4 2002:AABB:CCDD::/48
        return (ip.sixtofour,)
    if ip.teredo is not None:                             # Teredo 2001::/32
        # (server, client); Python already undoes the bitwise NOT of the client address.
        # The client is where packets go; the server is judged too, to be safe.
        server, client = ip.teredo
        return (client, server)
    if ip in _NAT64_WELL_KNOWN or ip in _IPV4_TRANSLATED:  # 64:ff9b::a.b.c.d, SIIT
        return (_ipv4_at(ip, (96, 128)),)
    if ip in _NAT64_LOCAL_USE:
        # The local translator's prefix length is unknown (/48 to /96 fit in this block):
        # every RFC 6052 position is a candidate, and the strictest verdict wins. A position
        # holding only zero bits is the unused part of a longer prefix, not 0.0.0.0.
        candidates = (_ipv4_at(ip, (48, 64), (72, 88)), _ipv4_at(ip, (56, 64), (72, 96)),
                      _ipv4_at(ip, (72, 104)), _ipv4_at(ip, (96, 128)))
        return tuple(v4 for v4 in candidates if int(v4)) or (ipaddress.IPv4Address(0),)
    if ip in _IPV4_COMPATIBLE and int(ip) > 1:            # ::a.b.c.d, but not :: or ::1
        return (_ipv4_at(ip, (96, 128)),)
    return ()


def _classify_plain(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> AddressClass:
    if ip in _METADATA_ADDRESSES or ip.is_multicast or ip.is_unspecified:
        return "forbidden"
    if ip.is_loopback or ip.is_private or ip.is_link_local:
        return "private"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:  # fec0::/10, deprecated
        return "private"
    if ip.is_reserved:
        return "forbidden"
    return "private" if not ip.is_global else "public"


def classify_address(address: str) -> AddressClass:
    """``public``, ``private`` (loopback/private/site-local/link-local/shared) or
    ``forbidden`` (metadata/platform, multicast, unspecified, reserved).

    An IPv6 address that embeds an IPv4 address is judged by the IPv4 address it reaches
    (the strictest, when several are possible): ``2002:a9fe:a9fe::1`` is the metadata
    service, ``64:ff9b::a00:1`` is 10.0.0.1. An embedded *public* IPv4 address is public —
    the packet reaches the same host as the plain address would — so a user on a NAT64
    network can still use their IPv4-only provider. Local-use NAT64 (``64:ff9b:1::/48``)
    is at least private: that translator is on our own network.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip in _METADATA_ADDRESSES:
        return "forbidden"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded:
            kinds = [_classify_plain(v4) for v4 in embedded]
            if ip in _NAT64_LOCAL_USE:
                kinds.append("private")
            return _strictest(*kinds)
    return _classify_plain(ip)


# libpq reads a file or an environment variable for every parameter a connection does not
# set, so a connection to a user's server could carry this host's secrets (PGPASSWORD,
# ~/.pgpass, a service file's password, ~/.postgresql/postgresql.key). Two layers keep them
# out: CheckedTarget.connect_kwargs() sets every such parameter itself, and
# forget_host_libpq_environment() removes the PG* variables libpq would still read (PGSERVICE
# fills parameters left unset, PGTZ/PGDATESTYLE have no parameter at all).

# A path that can never name a file: /dev/null is a device, never a directory, so stat() of
# anything below it fails and libpq treats the file as absent — silently, whereas /dev/null
# itself would be read (and warned about as "not a plain file" when used as passfile).
NO_FILE = os.path.join(os.devnull, "byodb-no-file")
# Methods whose secret comes from the URL; "none" lets a server that asks for nothing in.
# Excluded: gss/sspi (this host's Kerberos tickets) and oauth (a flow run on this host).
_URL_AUTH_METHODS = "password,md5,scram-sha-256,none"
MIN_LIBPQ_VERSION = 160000  # require_auth and sslcertmode


@functools.cache
def _system_ca_file() -> str:
    """The system CA bundle for ``sslmode=verify-ca`` (libpq's ``sslrootcert=system`` is
    allowed with ``verify-full`` only); :data:`NO_FILE` when there is none, so libpq fails
    the connection instead of reading ``~/.postgresql/root.crt`` of this host."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and os.path.isfile(candidate):
            return candidate
    return NO_FILE


def forget_host_libpq_environment() -> tuple[str, ...]:
    """Remove every ``PG*`` variable from this process's environment; return their names.

    byodb never reads them (main is configured by ``BYODB_DATABASE_URL``), and libpq would
    apply them to connections to users' servers: ``PGSERVICE`` names a service file whose
    values fill every parameter a connection leaves unset, ``PGTZ``/``PGDATESTYLE``/
    ``PGGEQO`` are sent with no parameter to override them, and a future libpq may add more.
    Cheap when the environment is clean (one scan, nothing changed), so it runs before
    every user connection — which also covers a variable set after startup.
    """
    names = tuple(sorted(name for name in os.environ if name.startswith("PG")))
    for name in names:
        os.environ.pop(name, None)
    if names:
        log.warning("removed libpq environment variables %s: byodb does not use them, and "
                    "they must not reach users' databases", ", ".join(names))
    return names


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
            "require_auth": _URL_AUTH_METHODS if password else "none",
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
            return _system_ca_file()
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
