"""Databases shaped like each provider's go from test to connected, chat, search, the
admin's health check and fleet migration, migrate back and delete — directly and through
PgBouncer with its default settings in transaction and in session mode.

| route | pgvector in | stands for |
|---|---|---|
| direct | ``extensions`` | Supabase's direct URL |
| PgBouncer, transaction mode | ``public`` | Neon's pooled endpoint (and RDS + a pooler) |
| PgBouncer, transaction mode | ``extensions`` | Supabase's transaction pooler (6543) |
| PgBouncer, session mode | ``extensions`` | Supabase's session pooler (5432) |

Direct with pgvector in ``public`` (Neon direct, RDS) is every other test's user database.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from byodb.maindb.embedded import PostgresCluster
from byodb.settings import Settings
from tests.conftest import Api
from tests.lifecycle_support import OLDEST, Connection, chat, connect, rows, whole_lifecycle
from tests.pgbouncer import PgBouncer
from tests.providers import VectorSchema, provider_database


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The suite's settings, with new deploys held at the oldest supported version so the
    admin's fleet migration has a step to run on the user's database."""
    return Settings(BYODB_DATA_DIR=tmp_path / "data", BYODB_ENV="development",
                    BYODB_ALLOW_PRIVATE_HOSTS=True, BYODB_TEST_RATE_LIMIT=1000,
                    BYODB_SCHEMA_TARGET=OLDEST)


@pytest.mark.parametrize(("route", "vector"), [
    ("direct", "extensions"),
    ("transaction_pooler", "public"),
    ("transaction_pooler", "extensions"),
    ("session_pooler", "extensions"),
])
async def test_a_provider_shaped_database_lives_its_whole_life_through_byodb(
        api: Api, main_url: str, user_server: PostgresCluster, route: str,
        vector: VectorSchema, request: pytest.FixtureRequest) -> None:
    database = provider_database(user_server, vector=vector)
    url = database.url if route == "direct" else request.getfixturevalue(route).add(database)
    await whole_lifecycle(api, main_url, f"life-{route}-{vector}",
                          Connection(url=url, direct_url=database.url))


async def test_switching_between_the_direct_and_the_pooled_url_moves_nothing(
        api: Api, main_url: str, user_server: PostgresCluster,
        transaction_pooler: PgBouncer) -> None:
    # Neon and Supabase give one database a direct and a pooled URL: the same database.
    database = provider_database(user_server, vector="public")
    user = "switcher"
    await connect(api, user, Connection(url=database.url, direct_url=database.url))
    conversation_id = await chat(api, user, "Kept where it is")
    await connect(api, user, Connection(url=transaction_pooler.add(database),
                                        direct_url=database.url))
    listed = (await api.get("/api/conversations", user)).json()["items"]
    assert [c["id"] for c in listed] == [conversation_id]
    assert rows(database.url, "messages", user) == 2
    assert rows(main_url, "messages", user) == 0
    state = (await api.get("/api/byod", user)).json()
    assert str(transaction_pooler.port) in state["database"], state
