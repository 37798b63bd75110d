"""Production auth verifies the issuer's tokens against its JWKS (as Clerk publishes them).

The JWKS document is served by a real HTTP server on loopback, standing in for the
identity provider, which cannot run here."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from byodb.errors import Unauthenticated
from byodb.settings import Settings
from byodb.web.auth import Authenticator

ISSUER = "https://clerk.example.test"


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def jwks_url(signing_key: rsa.RSAPrivateKey) -> Iterator[str]:
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing_key.public_key()))
    body = json.dumps({"keys": [{**public, "kid": "key-1", "use": "sig", "alg": "RS256"}]})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json"
    server.shutdown()


def _token(key: rsa.RSAPrivateKey, **claims: Any) -> str:
    now = int(time.time())
    base = {"sub": "user_2abc", "iss": ISSUER, "iat": now, "exp": now + 60}
    return jwt.encode({**base, **claims}, key, algorithm="RS256", headers={"kid": "key-1"})


@pytest.fixture
def authenticator(jwks_url: str) -> Authenticator:
    return Authenticator(Settings(BYODB_ENV="production", BYODB_JWKS_URL=jwks_url,
                                  BYODB_JWT_ISSUER=ISSUER, BYOD_ENCRYPTION_KEY="ab" * 32,
                                  BYODB_ADMIN_USERS="user_ops"))


async def test_issuer_token_is_accepted(authenticator: Authenticator,
                                        signing_key: rsa.RSAPrivateKey) -> None:
    principal = await authenticator.verify(_token(signing_key))
    assert principal.user_id == "user_2abc" and principal.is_admin is False


@pytest.mark.parametrize("claims", [{"byodb_admin": True}, {"role": "admin"},
                                    {"metadata": {"role": "admin"}}, {"sub": "user_ops"}])
async def test_admin_role_from_claims_or_configuration(
        authenticator: Authenticator, signing_key: rsa.RSAPrivateKey,
        claims: dict[str, Any]) -> None:
    assert (await authenticator.verify(_token(signing_key, **claims))).is_admin is True


async def test_wrong_issuer_expired_and_foreign_keys_are_refused(
        authenticator: Authenticator, signing_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(Unauthenticated):
        await authenticator.verify(_token(signing_key, iss="https://evil.example"))
    with pytest.raises(Unauthenticated, match="expired"):
        await authenticator.verify(_token(signing_key, exp=int(time.time()) - 5))
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(Unauthenticated):
        await authenticator.verify(_token(stranger))
    # A development (HS256) token is worthless in production.
    dev = jwt.encode({"sub": "x", "iss": ISSUER, "exp": int(time.time()) + 60}, "k" * 32,
                     algorithm="HS256")
    with pytest.raises(Unauthenticated):
        await authenticator.verify(dev)


async def test_production_app_accepts_the_issuers_token_from_header_or_clerk_cookie(
        jwks_url: str, signing_key: rsa.RSAPrivateKey, main_url: str, tmp_path: object) -> None:
    import httpx

    from byodb.web.app import create_app

    settings = Settings(BYODB_ENV="production", BYODB_JWKS_URL=jwks_url,
                        BYODB_JWT_ISSUER=ISSUER, BYOD_ENCRYPTION_KEY="cd" * 32,
                        BYODB_DATA_DIR=tmp_path)
    app = create_app(settings, main_url=main_url, migrate=False, run_worker=False)
    token = _token(signing_key)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://byodb.test") as c:
            by_header = await c.get("/api/byod", headers={"Authorization": f"Bearer {token}"})
            assert by_header.status_code == 200
            c.cookies.set("__session", token)
            assert (await c.get("/api/conversations")).status_code == 200
            c.cookies.clear()
            dev_form = await c.post("/signin", data={"user_id": "anyone"})
            assert dev_form.status_code == 403  # no development sign-in in production
            assert (await c.get("/api/conversations")).status_code == 401
