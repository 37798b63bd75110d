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
from tests.lifecycle_support import OLDEST, Connection, whole_lifecycle
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
