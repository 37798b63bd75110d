"""The suite's user databases are shaped as providers hand them out (shared/PROVIDERS.md),
and its PgBouncer behaves as Neon's and Supabase's poolers do with default settings. If one
of these stops holding, the end-to-end tests would prove less than they claim."""

from __future__ import annotations

import psycopg
import pytest

from byodb.maindb.embedded import PostgresCluster
from tests.pgbouncer import PgBouncer
from tests.providers import (
    ProviderDatabase,
    latin1_database,
    provider_database,
    read_only_role,
    standby_like,
)


def _one(url: str, query: str) -> object:
    with psycopg.connect(url, prepare_threshold=None) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def test_the_owner_is_a_plain_role_and_pgvector_is_the_administrators(
        user_database: ProviderDatabase) -> None:
    url = user_database.url
    assert _one(url, "select rolsuper or rolcreaterole or rolcreatedb from pg_roles "
                     "where rolname = current_user") is False
    assert _one(url, "select pg_get_userbyid(datdba) = current_user from pg_database "
                     "where datname = current_database()") is True
    assert _one(url, "select n.nspname from pg_extension e join pg_namespace n "
                     "on n.oid = e.extnamespace where e.extname = 'vector'") == "public"
    assert _one(url, "select pg_get_userbyid(extowner) <> current_user from pg_extension "
                     "where extname = 'vector'") is True
    with psycopg.connect(url, autocommit=True) as conn, pytest.raises(
            psycopg.errors.InsufficientPrivilege):
        conn.execute("alter system set work_mem = '8MB'")


def test_supabase_shape_puts_pgvector_in_extensions(user_server: PostgresCluster) -> None:
    database = provider_database(user_server, vector="extensions")
    assert _one(database.url, "select n.nspname from pg_extension e join pg_namespace n "
                              "on n.oid = e.extnamespace where e.extname = 'vector'") == \
        "extensions"
    # Not on the owner's default path: only a client that looks it up finds the type.
    assert _one(database.url, "select to_regtype('vector') is null") is True
    assert _one(database.url, "select to_regtype('extensions.vector') is not null") is True


def test_the_bad_shapes_are_what_they_claim(user_server: PostgresCluster) -> None:
    reader = read_only_role(provider_database(user_server))
    assert _one(reader, "select has_database_privilege(current_database(), 'CREATE') or "
                        "has_schema_privilege('public', 'CREATE')") is False
    standby = standby_like(user_server)
    assert _one(standby.url, "show transaction_read_only") == "on"
    latin1 = latin1_database(user_server)
    assert _one(latin1.url, "show server_encoding") == "LATIN1"
    bare = provider_database(user_server, vector=None)
    with psycopg.connect(bare.url, autocommit=True) as conn, pytest.raises(
            psycopg.errors.InsufficientPrivilege):
        conn.execute("create extension vector")


@pytest.mark.parametrize("pooler", ["transaction_pooler", "session_pooler"])
def test_pgbouncer_refuses_options_and_passes_transaction_settings(
        user_database: ProviderDatabase, pooler: str, request: pytest.FixtureRequest) -> None:
    bouncer: PgBouncer = request.getfixturevalue(pooler)
    url = bouncer.add(user_database)
    with pytest.raises(psycopg.OperationalError, match="unsupported startup parameter"):
        psycopg.connect(url, options="-c search_path=pg_catalog", connect_timeout=5)
    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
        assert conn.execute("select current_user").fetchone() == (user_database.owner,)
        with conn.transaction():
            conn.execute("select set_config('statement_timeout', '1234ms', true)")
            assert conn.execute("show statement_timeout").fetchone() == ("1234ms",)
        assert conn.execute("show statement_timeout").fetchone() == ("0",)
