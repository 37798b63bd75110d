"""Databases byodb cannot use get a truthful code, a plain message and a hint when the user
tests them — and saving them is refused the same way, with nothing deployed on the database
and nothing saved on main. Each is made the way a provider would hand it out."""

from __future__ import annotations

from urllib.parse import urlsplit

from byodb.maindb.embedded import PostgresCluster
from tests.conftest import Api, count_rows
from tests.providers import (
    ProviderDatabase,
    byodb_schema_exists,
    latin1_database,
    provider_database,
    read_only_role,
    standby_like,
)


async def refused_everywhere(api: Api, main_url: str, user: str, url: str,
                             *codes: str) -> dict[str, object]:
    """Test and save ``url``: both refused with one of ``codes``; nothing saved or made."""
    tested = await api.post("/api/byod/test", user, json={"url": url})
    assert tested.status_code == 200, tested.text
    verdict = tested.json()
    assert verdict["ok"] is False and verdict["code"] in codes, verdict
    assert verdict["message"] and verdict["hint"], verdict
    assert urlsplit(url).password not in str(verdict)
    saved = await api.put("/api/byod", user, json={"url": url})
    assert saved.status_code == 422, saved.text
    assert saved.json()["error"]["code"] == verdict["code"]
    state = (await api.get("/api/byod", user)).json()
    assert state["connection_status"] == "none", state
    assert count_rows(main_url, "select count(*) from user_database_config where user_id = %s "
                      "and encrypted_url is not null", user) == 0
    result: dict[str, object] = verdict
    return result


async def test_a_read_only_role_is_read_only(api: Api, main_url: str,
                                             user_server: PostgresCluster) -> None:
    database = provider_database(user_server)
    verdict = await refused_everywhere(api, main_url, "ro1", read_only_role(database),
                                       "read_only")
    assert "read" in str(verdict["message"]).lower()
    assert not byodb_schema_exists(database.admin_url)


async def test_a_hot_standby_is_read_only(api: Api, main_url: str,
                                          user_server: PostgresCluster) -> None:
    database = standby_like(user_server)
    await refused_everywhere(api, main_url, "ro2", database.url, "read_only")
    assert not byodb_schema_exists(database.admin_url)


async def test_a_latin1_database_is_refused_before_any_emoji_is_lost(
        api: Api, main_url: str, user_server: PostgresCluster) -> None:
    database = latin1_database(user_server)
    verdict = await refused_everywhere(api, main_url, "enc1", database.url,
                                       "unsupported_encoding")
    assert "LATIN1" in str(verdict["message"]) and "UTF8" in str(verdict["hint"])
    assert not byodb_schema_exists(database.admin_url)


async def test_no_pgvector_and_no_right_to_enable_it(api: Api, main_url: str,
                                                    user_server: PostgresCluster) -> None:
    database = provider_database(user_server, vector=None)
    verdict = await refused_everywhere(api, main_url, "vec1", database.url, "pgvector_missing")
    hint = str(verdict["hint"])
    # The provider's own way: Supabase's dashboard, CREATE EXTENSION elsewhere.
    assert "Supabase" in hint and "CREATE EXTENSION vector" in hint, hint
    assert not byodb_schema_exists(database.admin_url)
    assert count_rows(database.admin_url, "select count(*) from pg_extension where "
                      "extname = 'vector'") == 0


async def test_channel_binding_required_where_the_server_cannot_bind(
        api: Api, main_url: str, user_database: ProviderDatabase) -> None:
    # The suite's user server has no TLS: SCRAM channel binding is impossible there.
    url = f"{user_database.url}?sslmode=prefer&channel_binding=require"
    verdict = await refused_everywhere(api, main_url, "cb1", url, "auth_failed", "tls_failed")
    assert "channel binding" in str(verdict["message"]).lower(), verdict
    assert not byodb_schema_exists(user_database.admin_url)
