"""The web app's pages through the real app: signing in and out, every page renders for a
signed-in user, the connection blocker replaces the app for an unreachable database, and the
live BYOD state stream that drives the deployment progress."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import psycopg
import pytest

from byodb.settings import Settings
from byodb.web.app import create_app
from byodb.web.auth import SESSION_COOKIE, Authenticator
from tests.conftest import Api


async def sign_in(api: Api, user_id: str, *, admin: bool = False) -> httpx.Response:
    """Sign in through the form (the client's cookie jar is left empty: each request below
    says explicitly whose session it carries)."""
    data = {"user_id": user_id, "next": "/"}
    if admin:
        data["admin"] = "true"
    response = await api.client.post("/signin", data=data)
    api.client.cookies.clear()
    return response


def session(response: httpx.Response) -> dict[str, str]:
    """Request headers carrying the session cookie a sign-in response set."""
    return {"Cookie": f"{SESSION_COOKIE}={response.cookies[SESSION_COOKIE]}"}


async def page(api: Api, path: str, user_id: str, *, admin: bool = False) -> httpx.Response:
    signed_in = await sign_in(api, user_id, admin=admin)
    return await api.client.get(path, headers=session(signed_in))


def set_state(main_url: str, user_id: str, **values: Any) -> None:
    """Put a user's BYOD record into a given state directly on main."""
    columns = ", ".join(["user_id", *values])
    marks = ", ".join(["%s"] * (len(values) + 1))
    with psycopg.connect(main_url) as conn:
        conn.execute(f"insert into user_database_config ({columns}) values ({marks})",
                     [user_id, *values.values()])


# -- signing in and out ------------------------------------------------------------------

async def test_sign_in_page_has_the_dev_form(api: Api) -> None:
    response = await api.client.get("/signin")
    assert response.status_code == 200
    html = response.text
    assert '<label for="user_id">User ID</label>' in html
    assert '<label for="admin">Admin</label>' in html and 'type="checkbox"' in html
    assert ">Sign in</button>" in html


async def test_signing_in_sets_the_session_cookie_to_a_valid_token(api: Api) -> None:
    response = await sign_in(api, "ann", admin=True)
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    principal = await Authenticator(api.settings).verify(response.cookies[SESSION_COOKIE])
    assert principal.user_id == "ann" and principal.is_admin
    # The cookie works for the JSON API too.
    state = await api.client.get("/api/byod", headers=session(response))
    assert state.status_code == 200 and state.json()["connection_status"] == "none"


async def test_sign_in_returns_to_the_page_asked_for_but_never_off_site(api: Api) -> None:
    local = await api.client.post("/signin", data={"user_id": "bo", "next": "/notes"})
    api.client.cookies.clear()
    assert local.headers["location"] == "/notes"
    for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        response = await api.client.post("/signin", data={"user_id": "bo", "next": evil})
        api.client.cookies.clear()
        assert response.headers["location"] == "/", evil


async def test_signing_in_without_a_user_id_is_refused(api: Api) -> None:
    response = await api.client.post("/signin", data={"user_id": "   "})
    assert response.status_code == 422
    assert SESSION_COOKIE not in response.cookies
    assert "Enter a user ID" in response.text


async def test_pages_send_a_signed_out_visitor_to_sign_in(api: Api) -> None:
    for path in ("/", "/notes", "/settings/database", "/admin/byod"):
        response = await api.client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/signin?next=" + path), path


async def test_signing_out_clears_the_cookie(api: Api) -> None:
    signed_in = await sign_in(api, "cy")
    response = await api.client.post("/signout", headers={**session(signed_in),
                                                           "Origin": "http://byodb.test"})
    assert response.status_code == 303 and response.headers["location"] == "/signin"
    assert f'{SESSION_COOKIE}=""' in response.headers["set-cookie"]
    assert "max-age=0" in response.headers["set-cookie"].lower()


async def test_development_sign_in_is_refused_in_production(tmp_path: Any, main_url: str) -> None:
    settings = Settings(BYODB_DATA_DIR=tmp_path / "prod", BYODB_ENV="production",
                        BYOD_ENCRYPTION_KEY="ab" * 32, BYODB_JWT_ISSUER="https://issuer.test",
                        BYODB_JWKS_URL="https://issuer.test/.well-known/jwks.json",
                        BYODB_JWT_AUDIENCE="byodb")
    app = create_app(settings, main_url=main_url, migrate=False, run_worker=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://byodb.test") as client:
            form = await client.get("/signin")
            assert form.status_code == 200
            assert 'name="user_id"' not in form.text and 'name="token"' in form.text
            response = await client.post("/signin", data={"user_id": "mallory", "admin": "true"})
            assert response.status_code == 403
            assert SESSION_COOKIE not in response.cookies
            bad = await client.post("/signin/token", data={"token": "not-a-jwt"})
            assert bad.status_code == 401 and SESSION_COOKIE not in bad.cookies


# -- the pages ----------------------------------------------------------------------------

async def test_every_page_renders_for_a_signed_in_user(api: Api) -> None:
    expectations = {
        "/": ['<label for="composer-input" class="visually-hidden">Message</label>',
              ">Send</button>", "Search your content", "New chat"],
        "/notes": ["<h1>Notes</h1>", "/static/js/collection.js"],
        "/tasks": ["<h1>Tasks</h1>", "Due date"],
        "/memories": ["<h1>Memories</h1>"],
        "/settings/database": ['<label for="database-url">Database URL</label>',
                               'type="password"', ">Test connection</button>",
                               "Save &amp; deploy</button>", "Your database</th>",
                               "Disconnect", "If this URL leads to another database",
                               'name="old_database" value="keep" checked',
                               'name="old_database" value="delete"'],
        "/help/database": ["Using your own database"],
    }
    for path, needles in expectations.items():
        response = await page(api, path, "dee")
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
        for needle in needles:
            assert needle in response.text, (path, needle)
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert "<script>" not in response.text  # no inline script: the CSP forbids it


async def test_user_content_is_escaped_in_pages(api: Api) -> None:
    response = await page(api, "/", '<img src=x onerror="alert(1)">')
    assert response.status_code == 200
    assert "<img src=x" not in response.text
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in response.text


async def test_static_files_are_served(api: Api) -> None:
    for path in ("/static/css/app.css", "/static/js/api.js", "/static/js/blocker.js",
                 "/static/js/workspace.js", "/static/js/settings-database.js",
                 "/static/js/admin.js", "/static/js/collection.js", "/static/favicon.svg"):
        response = await api.client.get(path)
        assert response.status_code == 200, path
        assert response.headers["cache-control"] == "no-cache"


async def test_settings_page_never_shows_a_password(api: Api, main_url: str) -> None:
    set_state(main_url, "eve", encrypted_url="v1.k1.c2VjcmV0LWNpcGhlcnRleHQ",
              redacted_url="postgresql://eve:****@db.example.com:5432/eve",
              host="db.example.com", connection_status="connected",
              deployment_status="deployed", schema_version=1, credential_version=1)
    response = await page(api, "/settings/database", "eve")
    assert "postgresql://eve:****@db.example.com:5432/eve" in response.text
    assert "v1.k1.c2VjcmV0LWNpcGhlcnRleHQ" not in response.text


# -- the connection blocker -----------------------------------------------------------------

async def test_a_connected_user_with_an_unreachable_database_sees_the_blocker(
        api: Api, main_url: str) -> None:
    set_state(main_url, "fin", encrypted_url="v1.k1.x", credential_version=1,
              redacted_url="postgresql://fin:****@db.example.com/fin", host="db.example.com",
              connection_status="error", deployment_status="deployed", schema_version=1,
              content_placement="user", connection_error="Your database stopped answering.",
              connection_error_code="unreachable")
    for path in ("/", "/notes", "/tasks", "/memories"):
        html = (await page(api, path, "fin")).text
        assert 'id="blocker" class="blocker" hidden' not in html, path
        assert "reach your database</h1>" in html
        assert "Your database stopped answering." in html
        assert "Retry connection" in html and 'href="/settings/database"' in html
        assert '<main id="main" class="' in html and "hidden inert" in html, path
    # Settings → Database is where the fix happens: never blocked.
    settings_html = (await page(api, "/settings/database", "fin")).text
    assert "Retry connection" not in settings_html and "hidden inert" not in settings_html


async def test_users_without_byod_and_failed_first_deploys_are_never_blocked(
        api: Api, main_url: str) -> None:
    set_state(main_url, "gus", encrypted_url="v1.k1.x", credential_version=1,
              connection_status="error", deployment_status="failed",
              connection_error="The database user lacks a privilege the deployment needs.")
    for user in ("hal", "gus"):
        html = (await page(api, "/", user)).text
        assert 'id="blocker" class="blocker" hidden' in html, user
        assert "hidden inert" not in html, user


# -- live BYOD state (server-sent events) -----------------------------------------------------

async def read_events(api: Api, user_id: str, query: str = "") -> list[tuple[str, Any]]:
    events: list[tuple[str, Any]] = []
    async with api.client.stream("GET", f"/api/byod/events{query}",
                                 headers=api.headers(user_id)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        name = None
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:") and name:
                events.append((name, json.loads(line[5:])))
                if name == "end":
                    break
    return events


async def test_state_stream_ends_at_once_for_a_settled_state(api: Api) -> None:
    events = await read_events(api, "ivy")
    assert [name for name, _ in events] == ["state", "end"]
    assert events[0][1]["connection_status"] == "none"
    assert events[1][1] == {"reason": "settled"}


async def test_state_stream_follows_a_deployment_until_connected(api: Api,
                                                                 user_db_url: str) -> None:
    saved = await api.put("/api/byod", "jo", json={"url": user_db_url})
    assert saved.status_code == 202
    events = await read_events(api, "jo")
    states = [data for name, data in events if name == "state"]
    assert events[-1] == ("end", {"reason": "settled"})
    assert states[-1]["connection_status"] == "connected"
    assert states[-1]["deployment_status"] == "deployed"
    assert len(states) >= 2  # it was in flight when the stream opened
    password = user_db_url.split(":")[2].split("@")[0]
    assert all(password not in json.dumps(s) for s in states)


async def test_state_stream_needs_a_signed_in_user(api: Api) -> None:
    response = await api.client.get("/api/byod/events")
    assert response.status_code == 401


async def test_state_stream_waits_past_a_known_settled_state(api: Api) -> None:
    """``since`` keeps the stream open across the settled state the client already has."""
    state = (await api.get("/api/byod", "kim")).json()
    assert state["updated_at"] is None
    events = await read_events(api, "kim", "?since=x&max_seconds=1")
    assert events[-1] == ("end", {"reason": "settled"})  # updated_at None != "x"


@pytest.mark.parametrize("path", ["/admin/byod", "/admin"])
async def test_admin_page_is_admins_only(api: Api, path: str) -> None:
    denied = await page(api, path, "lee")
    if path == "/admin":
        assert denied.status_code == 303
        denied = await page(api, "/admin/byod", "lee")
    assert denied.status_code == 403
    assert "Admins only" in denied.text
    allowed = await page(api, "/admin/byod", "root", admin=True)
    assert allowed.status_code == 200
    assert "Fleet actions" in allowed.text
    # "Check all connections now" has its backend (the health sweep): offered, not disabled.
    health_button = re.search(r'<button[^>]*data-fleet-action="health_check"[^>]*>',
                              allowed.text)
    assert health_button is not None and "disabled" not in health_button.group(0)
    assert "Check all connections now" in allowed.text
