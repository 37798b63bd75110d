"""The HTTP edge against other sites: a request signed in by a cookie, or a sign-in form
post, is refused with 403 ``cross_site_request`` unless it shows it came from this site —
before its body is read and before anything changes. Cookies byodb sets are HttpOnly,
SameSite=Lax, and Secure over TLS, also behind a trusted TLS-terminating proxy (and only
then: a forwarded scheme from anyone else is not believed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from byodb.errors import ConfigurationError
from byodb.settings import Settings
from byodb.web.app import create_app
from byodb.web.auth import SESSION_COOKIE, issue_dev_token
from tests.conftest import Api, count_rows

SELF = "http://byodb.test"  # the api fixture's base URL: the app's own origin
EVIL = "https://evil.example"
NOTE = {"file": ("planted.txt", b"planted by another site", "text/plain")}


def cookie(api: Api, user: str, name: str = SESSION_COOKIE) -> dict[str, str]:
    return {"Cookie": f"{name}={issue_dev_token(api.settings, user)}"}


async def files_of(api: Api, user: str) -> list[Any]:
    listed = await api.get("/api/files", user)
    assert listed.status_code == 200, listed.text
    items: list[Any] = listed.json()["items"]
    return items


def assert_cross_site(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "cross_site_request"
    assert "set-cookie" not in response.headers


# -- requests signed in by a cookie ----------------------------------------------------------

@pytest.mark.parametrize("cookie_name", [SESSION_COOKIE, "__session"])
async def test_another_origins_upload_with_the_victims_cookie_plants_nothing(
        api: Api, main_url: str, cookie_name: str) -> None:
    response = await api.client.post("/api/files", files=NOTE,
                                     headers={**cookie(api, "vic", cookie_name),
                                              "Origin": EVIL})
    assert_cross_site(response)
    assert "another origin" in response.json()["error"]["message"]
    # Refused before authentication: the victim was not even recorded as a user.
    assert count_rows(main_url, "select count(*) from users where id = 'vic'") == 0
    assert await files_of(api, "vic") == []


async def test_a_refused_request_is_answered_before_its_body_is_read(api: Api) -> None:
    read = False

    async def body() -> AsyncIterator[bytes]:
        nonlocal read
        read = True
        yield b'{"title": "planted"}'

    response = await api.client.post(
        "/api/conversations", content=body(),
        headers={**cookie(api, "vic"), "Origin": EVIL, "Content-Type": "application/json"})
    assert_cross_site(response)
    assert read is False
    assert (await api.get("/api/conversations", "vic")).json()["items"] == []


@pytest.mark.parametrize("evidence", [
    {"Origin": "null"},                                  # sandboxed frame, privacy redirect
    {"Origin": "http://byodb.test:8080"},                # same host, another port
    {"Origin": "https://byodb.test"},                    # same host, another scheme
    {"Origin": "http://app.byodb.test"},                 # a sibling subdomain: same *site*
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Origin": EVIL, "Sec-Fetch-Site": "same-origin"},   # Origin decides when present
    {},                                                  # no evidence at all, with a cookie
])
async def test_unsafe_cookie_requests_without_same_origin_evidence_change_nothing(
        api: Api, evidence: dict[str, str]) -> None:
    for method, path, kwargs in (("POST", "/api/files", {"files": NOTE}),
                                 ("POST", "/api/conversations", {"json": {"title": "x"}}),
                                 ("PUT", "/api/byod", {"json": {"url": "postgresql://h/d"}}),
                                 ("DELETE", "/api/files/00000000-0000-0000-0000-000000000000",
                                  {})):
        response = await api.client.request(method, path, **kwargs,
                                            headers={**cookie(api, "vic"), **evidence})
        assert_cross_site(response)
    assert await files_of(api, "vic") == []
    assert (await api.get("/api/conversations", "vic")).json()["items"] == []
    assert (await api.get("/api/byod", "vic")).json()["connection_status"] == "none"


async def test_a_cookie_request_without_evidence_is_told_to_use_a_bearer_header(
        api: Api) -> None:
    response = await api.client.post("/api/conversations", json={"title": "from curl"},
                                     headers=cookie(api, "vic"))
    assert_cross_site(response)
    assert "Authorization: Bearer" in response.json()["error"]["message"]


@pytest.mark.parametrize("evidence", [
    {"Origin": SELF}, {"Origin": "http://BYODB.test:80"},
    {"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"}])
async def test_the_sites_own_pages_may_post_with_the_cookie(
        api: Api, evidence: dict[str, str]) -> None:
    response = await api.client.post("/api/files", files=NOTE,
                                     headers={**cookie(api, "own"), **evidence})
    assert response.status_code == 201, response.text
    assert len(await files_of(api, "own")) == 1


async def test_bearer_token_requests_are_unaffected_by_where_they_come_from(api: Api) -> None:
    for evidence in ({"Origin": EVIL}, {"Sec-Fetch-Site": "cross-site"}, {}):
        response = await api.client.post(
            "/api/conversations", json={"title": "script"},
            headers={**api.headers("bot"), **cookie(api, "someone-else"), **evidence})
        assert response.status_code == 201, response.text
    assert len((await api.get("/api/conversations", "bot")).json()["items"]) == 3


async def test_safe_methods_with_the_cookie_are_not_checked(api: Api) -> None:
    response = await api.client.get("/api/byod",
                                    headers={**cookie(api, "vic"), "Origin": EVIL})
    assert response.status_code == 200


# -- signing in and out (login CSRF) ---------------------------------------------------------

@pytest.mark.parametrize("evidence", [{"Origin": EVIL}, {"Origin": "null"},
                                      {"Sec-Fetch-Site": "cross-site"}])
async def test_another_site_cannot_sign_a_visitor_in(api: Api, evidence: dict[str, str]) -> None:
    form = await api.client.post("/signin", data={"user_id": "mallory"}, headers=evidence)
    assert_cross_site(form)
    token = issue_dev_token(api.settings, "mallory")
    pasted = await api.client.post("/signin/token", data={"token": token}, headers=evidence)
    assert_cross_site(pasted)
    assert SESSION_COOKIE not in api.client.cookies


async def test_the_sign_in_form_works_from_the_site_itself_and_from_scripts(api: Api) -> None:
    for evidence in ({"Origin": SELF}, {"Sec-Fetch-Site": "same-origin"}, {}):
        response = await api.client.post("/signin", data={"user_id": "ann"}, headers=evidence)
        api.client.cookies.clear()
        assert response.status_code == 303, evidence
        assert SESSION_COOKIE in response.cookies


async def test_another_site_cannot_sign_a_visitor_out(api: Api) -> None:
    response = await api.client.post("/signout", headers={**cookie(api, "vic"),
                                                          "Origin": EVIL})
    assert_cross_site(response)
    own = await api.client.post("/signout", headers={**cookie(api, "vic"), "Origin": SELF})
    assert own.status_code == 303 and "max-age=0" in own.headers["set-cookie"].lower()


# -- cookies and trusted proxies -------------------------------------------------------------

class ClientsByAddress:
    """Clients of one app that connect from different addresses (the proxy, or a stranger)."""

    def __init__(self, app: FastAPI):
        self.app = app
        self._open: list[httpx.AsyncClient] = []

    def from_address(self, address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(address, 40000))
        client = httpx.AsyncClient(transport=transport, base_url=SELF)
        self._open.append(client)
        return client

    async def close(self) -> None:
        for client in self._open:
            await client.aclose()


@pytest.fixture
async def behind_proxy(tmp_path: Path, main_url: str) -> AsyncIterator[ClientsByAddress]:
    settings = Settings(BYODB_DATA_DIR=tmp_path / "data", BYODB_ENV="development",
                        BYODB_TRUSTED_PROXIES="10.0.0.0/8, 192.0.2.7")
    app = create_app(settings, main_url=main_url, migrate=False, run_worker=False)
    async with app.router.lifespan_context(app):
        clients = ClientsByAddress(app)
        try:
            yield clients
        finally:
            await clients.close()


def session_cookie_attributes(response: httpx.Response) -> list[str]:
    assert response.status_code == 303, response.text
    header = next(v for v in response.headers.get_list("set-cookie")
                  if v.startswith(f"{SESSION_COOKIE}="))
    return [part.strip().lower() for part in header.split(";")[1:]]


async def test_the_session_cookie_over_plain_http_is_httponly_lax_and_not_secure(
        api: Api) -> None:
    attributes = session_cookie_attributes(
        await api.client.post("/signin", data={"user_id": "ann"}))
    assert "httponly" in attributes and "samesite=lax" in attributes and "path=/" in attributes
    assert "secure" not in attributes


async def test_the_cookie_is_secure_when_a_trusted_proxy_says_the_request_was_https(
        behind_proxy: ClientsByAddress) -> None:
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.4"}
    for proxy in ("10.1.2.3", "192.0.2.7"):
        client = behind_proxy.from_address(proxy)
        response = await client.post("/signin", data={"user_id": "ann"},
                                     headers={**forwarded, "Origin": "https://byodb.test"})
        attributes = session_cookie_attributes(response)
        assert "secure" in attributes and "httponly" in attributes
        assert "samesite=lax" in attributes
        signed_out = await client.post("/signout", headers={**forwarded,
                                                            "Origin": "https://byodb.test"})
        assert "secure" in signed_out.headers["set-cookie"].lower()


async def test_a_forwarded_scheme_from_an_untrusted_client_is_not_believed(
        behind_proxy: ClientsByAddress) -> None:
    stranger = behind_proxy.from_address("203.0.113.9")
    forwarded = {"X-Forwarded-Proto": "https"}
    plain = await stranger.post("/signin", data={"user_id": "ann"},
                                headers={**forwarded, "Origin": SELF})
    assert "secure" not in session_cookie_attributes(plain)
    # Its own origin stays http://…, so claiming https:// as the Origin is cross-origin.
    refused = await stranger.post("/signin", data={"user_id": "ann"},
                                  headers={**forwarded, "Origin": "https://byodb.test"})
    assert_cross_site(refused)


async def test_behind_a_trusted_proxy_the_same_site_check_uses_the_forwarded_scheme(
        behind_proxy: ClientsByAddress) -> None:
    proxy = behind_proxy.from_address("10.9.9.9")
    settings: Settings = behind_proxy.app.state.runtime.settings
    headers = {"X-Forwarded-Proto": "https",
               "Cookie": f"{SESSION_COOKIE}={issue_dev_token(settings, 'pat')}"}
    ok = await proxy.post("/api/conversations", json={"title": "t"},
                          headers={**headers, "Origin": "https://byodb.test"})
    assert ok.status_code == 201, ok.text
    downgraded = await proxy.post("/api/conversations", json={"title": "t"},
                                  headers={**headers, "Origin": SELF})
    assert_cross_site(downgraded)


def test_a_malformed_trusted_proxy_setting_refuses_to_start(tmp_path: Path) -> None:
    settings = Settings(BYODB_DATA_DIR=tmp_path, BYODB_TRUSTED_PROXIES="10.0.0.0/8, proxy.lan")
    with pytest.raises(ConfigurationError, match=r"proxy\.lan"):
        create_app(settings, main_url="postgresql://unused@127.0.0.1:1/x")
