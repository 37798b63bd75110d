"""Another site's page cannot act for a signed-in visitor: in a real chromium, a page served
from another origin on loopback auto-submits a form to byodb — a file upload with the
visitor's session cookie, a sign-in as the attacker — and byodb refuses it with 403
``cross_site_request``; no file exists afterwards and the visitor is still themselves.

The attacker's page is on ``127.0.0.1`` at another port: the same *site* as the app (ports
do not separate sites or cookies), so the browser sends the ``SameSite=Lax`` cookie along —
as it would from a sibling subdomain — and only the Origin check stands in the way. A page
on ``localhost`` is another site, where the cookie stays home, and is refused all the same.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from byodb.web.auth import SESSION_COOKIE
from tests.browser.conftest import Server
from tests.browser.test_web_app import TIMEOUT_MS, sign_in

pytestmark = pytest.mark.browser

# Builds a real file in the form (as a user picking one would) and submits it on load.
UPLOAD_PAGE = """<!doctype html><title>Free prizes</title>
<form id="f" method="post" enctype="multipart/form-data" action="{target}/api/files">
  <input type="file" name="file">
</form>
<script>
  const planted = new File(["planted by another site"], "planted.txt", {{type: "text/plain"}});
  const files = new DataTransfer();
  files.items.add(planted);
  document.querySelector("input").files = files.files;
  document.getElementById("f").submit();
</script>"""

SIGN_IN_PAGE = """<!doctype html><title>Free prizes</title>
<form id="f" method="post" action="{target}/signin">
  <input name="user_id" value="mallory"><input name="next" value="/">
</form>
<script>document.getElementById("f").submit();</script>"""


class AttackerSite:
    """A tiny web server on a loopback port of its own, serving the attacker's pages."""

    def __init__(self, target: str):
        pages = {"/upload": UPLOAD_PAGE.format(target=target),
                 "/signin": SIGN_IN_PAGE.format(target=target)}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path, "").encode()
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, host: str, path: str) -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture
def attacker(server: Server) -> Iterator[AttackerSite]:
    site = AttackerSite(server.base_url)
    yield site
    site.server.shutdown()
    site.server.server_close()


async def test_another_origins_auto_submitted_upload_is_refused_and_plants_nothing(
        server: Server, attacker: AttackerSite, browser: Any) -> None:
    context = await browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    await sign_in(page, server, "victim")

    for host in ("127.0.0.1", "localhost"):
        async with page.expect_response(server.url("/api/files")) as caught:
            await page.goto(attacker.url(host, "/upload"))
        response = await caught.value
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "cross_site_request"
        sent = await response.request.all_headers()
        assert sent["origin"] == f"http://{host}:{attacker.port}"
        if host == "127.0.0.1":  # same site: the victim's cookie really went along
            assert f"{SESSION_COOKIE}=" in sent.get("cookie", "")

    # Nothing was planted: the victim's own session lists no file.
    files = await context.request.get(server.url("/api/files"))
    assert files.status == 200 and (await files.json())["items"] == []
    await context.close()


async def test_another_origin_cannot_sign_the_visitor_in_as_the_attacker(
        server: Server, attacker: AttackerSite, browser: Any) -> None:
    context = await browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    await sign_in(page, server, "victim")
    before = [c for c in await context.cookies(server.base_url) if c["name"] == SESSION_COOKIE]
    assert before and before[0]["httpOnly"] and before[0]["sameSite"] == "Lax"
    assert before[0]["secure"] is False  # plain HTTP on loopback

    for host in ("127.0.0.1", "localhost"):
        async with page.expect_response(server.url("/signin")) as caught:
            await page.goto(attacker.url(host, "/signin"))
        response = await caught.value
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "cross_site_request"

    after = [c for c in await context.cookies(server.base_url) if c["name"] == SESSION_COOKIE]
    assert after == before  # still the victim's own session
    await page.goto(server.url("/"))
    await page.wait_for_url(server.url("/"))
    assert "victim" in await page.content()
    await context.close()
