"""The schema applied by hand: ``byodb schema sql`` and the manual package's ``schema.sql``,
run with Debian's psql by the database's owner on a database shaped like a provider's
(pgvector enabled by an administrator in ``public`` or in ``extensions``), leave a database
the connection test calls ``ok`` and that then connects, chats and finds by meaning."""

from __future__ import annotations

import io
import subprocess
import zipfile
from pathlib import Path

import psycopg
import pytest

from byodb.content import CONTENT_SCHEMA_VERSION, content_table_names
from byodb.maindb.embedded import PostgresCluster
from tests.cli_support import run_cli
from tests.conftest import Api, count_rows
from tests.lifecycle_support import CHAT, Connection, chat, connect, search
from tests.providers import ProviderDatabase, VectorSchema, provider_database

DEBIAN_PSQL = Path("/usr/bin/psql")


def psql(url: str, script: str) -> subprocess.CompletedProcess[str]:
    """Apply ``script`` as the URL's role, the way the docs say (stop at the first error)."""
    if not DEBIAN_PSQL.exists():
        pytest.skip("Debian's psql is missing (apt-get install postgresql-client)")
    return subprocess.run([str(DEBIAN_PSQL), url, "-X", "-q", "-v", "ON_ERROR_STOP=1",
                           "-f", "-"], input=script, capture_output=True, text=True,
                          timeout=120)


def printed_schema() -> str:
    result = run_cli("schema", "sql")
    assert result.exit_code == 0, result.stderr
    return result.stdout


def byodb_tables(url: str) -> int:
    return count_rows(url, "select count(*) from pg_tables where schemaname = 'byodb'")


async def connects_and_finds_by_meaning(api: Api, user: str, db: ProviderDatabase) -> None:
    tested = (await api.post("/api/byod/test", user, json={"url": db.url})).json()
    assert tested["ok"] is True and tested["code"] == "ok", tested
    assert tested["deployed_version"] == CONTENT_SCHEMA_VERSION, tested
    state = await connect(api, user, Connection(db.url, db.url))
    assert state["schema_version"] == CONTENT_SCHEMA_VERSION
    await chat(api, user, *CHAT[:2])
    assert count_rows(db.url, "select count(*) from byodb.messages where user_id = %s "
                      "and embedding is not null", user) == 4
    assert await search(api, user, "bicycle repairs", "semantic")


@pytest.mark.parametrize("vector", ["public", "extensions"])
async def test_schema_sql_applied_with_psql_by_the_owner_tests_ok_and_connects(
        api: Api, user_server: PostgresCluster, vector: VectorSchema) -> None:
    db = provider_database(user_server, vector=vector, prefix="byhand")
    applied = psql(db.url, printed_schema())
    assert applied.returncode == 0, applied.stderr
    assert byodb_tables(db.url) == len(content_table_names()) + 1
    # The database made its own instance id: one record, recognised as deployed.
    assert count_rows(db.url, "select count(*) from byodb.byodb_meta "
                      "where instance_id is not null") == 1
    # pgvector stayed where the administrator put it.
    assert count_rows(db.url, "select count(*) from pg_extension e join pg_namespace n on "
                      "n.oid = e.extnamespace where extname = 'vector' and nspname = %s",
                      vector) == 1
    await connects_and_finds_by_meaning(api, f"byhand-{vector}", db)


def test_two_databases_applied_by_hand_get_different_instance_ids(
        user_server: PostgresCluster) -> None:
    script = printed_schema()
    ids = set()
    for _ in range(2):
        db = provider_database(user_server, vector="public", prefix="byhand")
        assert psql(db.url, script).returncode == 0
        with psycopg.connect(db.url) as conn:
            row = conn.execute("select instance_id::text from byodb.byodb_meta").fetchone()
        assert row is not None
        ids.add(row[0])
    assert len(ids) == 2


async def test_the_downloaded_package_applies_where_pgvector_is_in_extensions(
        api: Api, user_server: PostgresCluster, tmp_path: Path) -> None:
    db = provider_database(user_server, vector="extensions", prefix="package")
    response = await api.get("/api/byod/project.zip", "pkg")
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    schema = archive.read(f"byodb-schema-v{CONTENT_SCHEMA_VERSION}/schema.sql").decode()
    applied = psql(db.url, schema)
    assert applied.returncode == 0, applied.stderr
    await connects_and_finds_by_meaning(api, "pkg", db)


def test_without_pgvector_and_no_right_to_create_it_nothing_is_made(
        user_server: PostgresCluster) -> None:
    # The owner of a database where no administrator enabled pgvector may not create it
    # (it is not a trusted extension): the script stops at once and leaves nothing behind.
    db = provider_database(user_server, vector=None, prefix="byhand")
    applied = psql(db.url, printed_schema())
    assert applied.returncode != 0
    assert "vector" in applied.stderr and "permission denied" in applied.stderr, \
        applied.stderr
    assert count_rows(db.url, "select count(*) from pg_namespace where nspname = 'byodb'") == 0
    assert count_rows(db.url, "select count(*) from pg_extension where extname = 'vector'") \
        == 0
