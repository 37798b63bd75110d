"""User databases made the way hosted providers hand them out (shared/PROVIDERS.md).

A superuser of the test server plays the provider: it creates a plain ``LOGIN`` role with a
(SCRAM) password, a database owned by that role, and — as an administrator, never as the
owner — enables pgvector in ``public`` (Neon, RDS), in a schema ``extensions`` (Supabase),
or not at all. byodb only ever gets the owner's URL.

Other shapes: a role that may only connect and read (``read_only_role``), a database whose
sessions start read-only like a hot standby's (``standby_like``), and a LATIN1 database
(``latin1_database``).
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import quote

import psycopg
from psycopg import sql

VectorSchema = Literal["public", "extensions"] | None
"""Where the administrator put pgvector: ``public`` (Neon, RDS), ``extensions`` (Supabase),
or nowhere (``None``)."""


class Server(Protocol):
    """A PostgreSQL server the tests may administer (``PostgresCluster`` and friends)."""

    port: int | None

    def url(self, database: str = "postgres", *, user: str = "postgres",
            password: str | None = None, driver: str = "postgresql") -> str: ...


def owner_url(host: str, port: int, database: str, user: str, password: str,
              query: str = "") -> str:
    """A ``postgresql://`` URL for ``user`` (password quoted) with an optional query."""
    url = (f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/"
           f"{database}")
    return f"{url}?{query}" if query else url


@dataclass(frozen=True)
class ProviderDatabase:
    """One user database handed out by a "provider": owned by a plain login role."""

    server: Server
    name: str
    owner: str
    password: str
    vector_schema: VectorSchema

    @property
    def url(self) -> str:
        """The owner's URL, straight to the server: what the user pastes into byodb."""
        assert self.server.port is not None
        return owner_url("127.0.0.1", self.server.port, self.name, self.owner, self.password)

    @property
    def admin_url(self) -> str:
        """The provider's (superuser's) URL of the same database, for checks and setup."""
        return self.server.url(self.name)

    def url_via(self, port: int, query: str = "") -> str:
        """The owner's URL through something listening on ``port`` (a pooler)."""
        return owner_url("127.0.0.1", port, self.name, self.owner, self.password, query)

    def scram_verifier(self) -> str:
        """The owner's SCRAM verifier as ``pg_authid`` holds it (for a pooler's auth file)."""
        with psycopg.connect(self.server.url(), autocommit=True) as conn:
            row = conn.execute("select rolpassword from pg_authid where rolname = %s",
                               (self.owner,)).fetchone()
        assert row is not None and str(row[0]).startswith("SCRAM-SHA-256$"), \
            "the owner's password is not stored as SCRAM"
        return str(row[0])


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def create_login_role(server: Server, role: str, password: str) -> None:
    """A plain role that may log in: no superuser, no CREATEDB, no CREATEROLE."""
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute("set password_encryption = 'scram-sha-256'")
        conn.execute(sql.SQL("create role {} login nosuperuser nocreatedb nocreaterole "
                             "noreplication password {}").format(
            sql.Identifier(role), sql.Literal(password)))


def enable_vector(server: Server, database: str, schema: VectorSchema) -> None:
    """As the provider's administrator, enable pgvector in ``schema`` of ``database``."""
    if schema is None:
        return
    with psycopg.connect(server.url(database), autocommit=True) as conn:
        if schema == "public":
            conn.execute("create extension vector schema public")
        else:
            # Supabase: a schema of the administrator's that everyone may use.
            conn.execute("create schema if not exists extensions")
            conn.execute("grant usage on schema extensions to public")
            conn.execute("create extension vector schema extensions")


def provider_database(server: Server, *, vector: VectorSchema = "public",
                      encoding: str = "UTF8", prefix: str = "prov") -> ProviderDatabase:
    """A database owned by a fresh plain login role, pgvector placed by an administrator.

    ``encoding`` other than UTF8 makes the database from ``template0`` with locale C (the
    only way PostgreSQL allows another encoding than the template's).
    """
    role = _unique(f"{prefix}_owner")
    password = secrets.token_urlsafe(18)
    name = _unique(prefix)
    create_login_role(server, role, password)
    with psycopg.connect(server.url(), autocommit=True) as conn:
        if encoding.upper() == "UTF8":
            conn.execute(sql.SQL("create database {} owner {}").format(
                sql.Identifier(name), sql.Identifier(role)))
        else:
            conn.execute(sql.SQL("create database {} owner {} template template0 encoding {} "
                                 "lc_collate 'C' lc_ctype 'C'").format(
                sql.Identifier(name), sql.Identifier(role), sql.Literal(encoding)))
    enable_vector(server, name, vector)
    return ProviderDatabase(server, name, role, password, vector)


def read_only_role(database: ProviderDatabase) -> str:
    """The URL of a role that may only connect and read (``CONNECT``, ``USAGE`` and
    ``SELECT`` in ``public``): what a provider's "read-only" credentials give."""
    role = _unique("reader")
    password = secrets.token_urlsafe(18)
    create_login_role(database.server, role, password)
    with psycopg.connect(database.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("revoke all on database {} from public").format(
            sql.Identifier(database.name)))
        conn.execute(sql.SQL("grant connect on database {} to {}").format(
            sql.Identifier(database.name), sql.Identifier(role)))
        conn.execute(sql.SQL("grant connect on database {} to {}").format(
            sql.Identifier(database.name), sql.Identifier(database.owner)))
        conn.execute("revoke create on schema public from public")
        conn.execute(sql.SQL("grant usage on schema public to {}").format(
            sql.Identifier(role)))
        conn.execute(sql.SQL("grant select on all tables in schema public to {}").format(
            sql.Identifier(role)))
    assert database.server.port is not None
    return owner_url("127.0.0.1", database.server.port, database.name, role, password)


def standby_like(server: Server, *, vector: VectorSchema = "public") -> ProviderDatabase:
    """A provider database whose sessions start read-only: a cheap hot-standby stand-in
    (``default_transaction_read_only = on``, set by the administrator)."""
    database = provider_database(server, vector=vector, prefix="standby")
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("alter database {} set default_transaction_read_only = on"
                             ).format(sql.Identifier(database.name)))
    return database


def latin1_database(server: Server, *, vector: VectorSchema = "public") -> ProviderDatabase:
    """A provider database whose server_encoding is LATIN1 (locale C)."""
    return provider_database(server, vector=vector, encoding="LATIN1", prefix="latin1")


def byodb_schema_exists(url: str) -> bool:
    """Whether a ``byodb`` schema exists in the database at ``url`` (nothing deployed?)."""
    with psycopg.connect(url) as conn:
        row = conn.execute("select count(*) from pg_namespace where nspname = 'byodb'"
                           ).fetchone()
    return bool(row and row[0])
