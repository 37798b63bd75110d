"""POST /api/byod/test answers every failure with a classified code, a plain message and a
hint — and changes nothing, on main or on the tested database."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from byodb.maindb.embedded import PostgresCluster
from byodb.web.ratelimit import RateLimiter
from tests.conftest import Api, count_rows
from tests.instances_support import connection_test
from tests.providers import ProviderDatabase, create_login_role, provider_database


def _swap(url: str, **parts: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    split = urlsplit(url)
    user = parts.get("user", split.username or "")
    password = parts.get("password", split.password or "")
    port = parts.get("port", str(split.port))
    netloc = f"{user}:{password}@127.0.0.1:{port}"
    path = "/" + parts.get("database", split.path.lstrip("/"))
    return urlunsplit((split.scheme, netloc, path, parts.get("query", split.query), ""))


def _byodb_schema_exists(url: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("select count(*) from pg_namespace where nspname = 'byodb'"
                           ).fetchone()
    return bool(row and row[0])


async def _test(api: Api, user: str, url: str) -> dict[str, object]:
    response = await api.post("/api/byod/test", user, json={"url": url})
    assert response.status_code == 200
    body: dict[str, object] = response.json()
    if not body["ok"]:
        assert body["message"] and body["hint"], body
    state = (await api.get("/api/byod", user)).json()
    assert state["connection_status"] == "none"  # testing changes nothing on main
    return body


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback listener that accepts connections and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_good_database_passes_without_changing_it(api: Api, user_db_url: str) -> None:
    body = await _test(api, "u1", user_db_url)
    assert body["ok"] is True and body["code"] == "ok"
    assert "Ready to deploy" in str(body["message"])
    assert not _byodb_schema_exists(user_db_url)


@pytest.mark.parametrize(("url", "code"), [
    ("postgresql://nonsense", "invalid_url"),
    ("mysql://u:p@127.0.0.1/db", "invalid_url"),
    ("postgresql://u:p@nowhere.invalid/db", "dns_failure"),
])
async def test_bad_urls_are_classified(api: Api, url: str, code: str) -> None:
    assert (await _test(api, "u2", url))["code"] == code


async def test_wrong_password_is_auth_failed(api: Api, user_db_url: str) -> None:
    body = await _test(api, "u3", _swap(user_db_url, password="wrong"))
    assert body["code"] == "auth_failed"
    assert "password" in str(body["message"])


async def test_missing_database(api: Api, user_db_url: str) -> None:
    body = await _test(api, "u4", _swap(user_db_url, database="no_such_db"))
    assert body["code"] == "database_missing"
    assert "no_such_db" in str(body["message"])


async def test_closed_port_is_unreachable(api: Api, user_db_url: str) -> None:
    assert (await _test(api, "u5", _swap(user_db_url, port=str(_closed_port()))))["code"] == \
        "unreachable"


async def test_listener_that_never_answers_times_out(api: Api, user_db_url: str,
                                                     silent_port: int) -> None:
    body = await _test(api, "u6", _swap(user_db_url, port=str(silent_port)))
    assert body["code"] == "timeout"


async def test_tls_required_by_url_but_not_offered(api: Api, user_db_url: str) -> None:
    body = await _test(api, "u7", _swap(user_db_url, query="sslmode=require"))
    assert body["code"] == "tls_failed"


async def test_no_privilege_to_create_the_schema(api: Api,
                                                 user_database: ProviderDatabase) -> None:
    # An application role that may write (tables in public) but not create schemas: not
    # read-only, yet it can't hold byodb's schema.
    role = f"app_{uuid.uuid4().hex[:8]}"
    create_login_role(user_database.server, role, "apppw")
    with psycopg.connect(user_database.admin_url, autocommit=True) as conn:
        conn.execute(f"grant usage, create on schema public to {role}")
    url = _swap(user_database.url, user=role, password="apppw")
    body = await _test(api, "u8", url)
    assert body["code"] == "insufficient_privileges"
    assert not _byodb_schema_exists(user_database.url)


async def test_pgvector_not_installable_by_this_user(api: Api, user_server: PostgresCluster
                                                     ) -> None:
    # The owner of a database whose provider has not enabled pgvector (a plain owner may
    # not create it: it is not a trusted extension).
    database = provider_database(user_server, vector=None)
    body = await _test(api, "u9", database.url)
    assert body["code"] == "pgvector_missing"
    assert "CREATE EXTENSION vector" in str(body["hint"])
    assert not _byodb_schema_exists(database.admin_url)


async def test_conflicting_byodb_schema(api: Api, user_db_url: str) -> None:
    with psycopg.connect(user_db_url, autocommit=True) as conn:
        conn.execute("create schema byodb")
        conn.execute("create table byodb.invoices (id int)")
    body = await _test(api, "u10", user_db_url)
    assert body["code"] == "schema_conflict"
    assert count_rows(user_db_url, "select count(*) from pg_tables where schemaname = 'byodb'"
                      ) == 1


async def test_loopback_refused_by_the_guard_when_private_hosts_are_not_allowed(
        user_db_url: str) -> None:
    verdict = await connection_test(user_db_url, allow_private=False)
    assert verdict.code == "blocked_address"
    # The guard answers before any connection: no detail about what listens there.
    closed = _swap(user_db_url, port=str(_closed_port()))
    again = await connection_test(closed, allow_private=False)
    assert again.code == "blocked_address" and again.message == verdict.message


async def test_test_endpoint_needs_a_signed_in_user_and_is_rate_limited(
        api: Api, user_db_url: str) -> None:
    anonymous = await api.client.post("/api/byod/test", json={"url": user_db_url})
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthenticated"
    api.app.state.test_limiter = RateLimiter(2)
    for _ in range(2):
        assert (await api.post("/api/byod/test", "u11", json={"url": "postgresql://x"})
                ).status_code == 200
    limited = await api.post("/api/byod/test", "u11", json={"url": "postgresql://x"})
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    # Another user has their own allowance.
    assert (await api.post("/api/byod/test", "u12", json={"url": "postgresql://x"})
            ).status_code == 200
