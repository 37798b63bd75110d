"""Production auth verifies the issuer's tokens against its JWKS (as Clerk publishes them),
for this app's audience only, and type-checks their claims.

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

from byodb.errors import ConfigurationError, Unauthenticated
from byodb.settings import Settings
from byodb.web.auth import Authenticator

ISSUER = "https://clerk.example.test"
AUDIENCE = "byodb-prod"


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


OMIT = object()  # a claim left out of the token


def _token(key: rsa.RSAPrivateKey, **claims: Any) -> str:
    now = int(time.time())
    base = {"sub": "user_2abc", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 60}
    payload = {name: value for name, value in {**base, **claims}.items() if value is not OMIT}
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": "key-1"})


def production(jwks_url: str, tmp_path: object = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"BYODB_ENV": "production", "BYODB_JWKS_URL": jwks_url,
                              "BYODB_JWT_ISSUER": ISSUER, "BYODB_JWT_AUDIENCE": AUDIENCE,
                              "BYOD_ENCRYPTION_KEY": "ab" * 32}
    if tmp_path is not None:
        values["BYODB_DATA_DIR"] = tmp_path
    return Settings(**{**values, **overrides})


@pytest.fixture
def authenticator(jwks_url: str) -> Authenticator:
    return Authenticator(production(jwks_url, BYODB_ADMIN_USERS="user_ops"))


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

    settings = production(jwks_url, tmp_path)
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


# -- the audience ---------------------------------------------------------------------------

def test_production_refuses_to_start_without_an_audience(jwks_url: str, tmp_path: Any) -> None:
    settings = production(jwks_url, BYODB_JWT_AUDIENCE=None)
    with pytest.raises(ConfigurationError, match="BYODB_JWT_AUDIENCE"):
        settings.check_production()
    with pytest.raises(ConfigurationError, match="BYODB_JWT_AUDIENCE"):
        Authenticator(settings)  # fails closed even when built without create_app
    from byodb.web.app import create_app

    with pytest.raises(ConfigurationError, match="BYODB_JWT_AUDIENCE"):
        create_app(settings, main_url="postgresql://unused@127.0.0.1:1/x")
    production(jwks_url).check_production()  # with it, production starts


@pytest.mark.parametrize("audience", ["another-app", ["another-app", "third-app"], OMIT])
async def test_a_token_for_another_audience_is_refused(
        authenticator: Authenticator, signing_key: rsa.RSAPrivateKey, audience: Any) -> None:
    with pytest.raises(Unauthenticated, match="another audience"):
        await authenticator.verify(_token(signing_key, aud=audience))
    # A token listing this app among its audiences is fine.
    both = _token(signing_key, aud=["another-app", AUDIENCE])
    assert (await authenticator.verify(both)).user_id == "user_2abc"


async def test_a_token_without_an_issuer_is_refused(
        authenticator: Authenticator, signing_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(Unauthenticated, match="iss"):
        await authenticator.verify(_token(signing_key, iss=OMIT))


# -- claims ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("claims", "said"), [
    ({"metadata": "str"}, "metadata claim must be an object"),
    ({"metadata": {"role": 7}}, "metadata.role claim must be a string"),
    ({"byodb_admin": "yes"}, "byodb_admin claim must be true or false"),
    ({"role": ["admin"]}, "role claim must be a string"),
    ({"sub": ""}, "non-empty string"),
    ({"sub": "u" * 5000}, "at most 255 characters"),
])
async def test_an_issuer_token_with_a_wrongly_typed_claim_is_a_401_not_a_500(
        jwks_url: str, signing_key: rsa.RSAPrivateKey, main_url: str, tmp_path: Any,
        claims: dict[str, Any], said: str) -> None:
    import httpx

    from byodb.web.app import create_app

    app = create_app(production(jwks_url, tmp_path), main_url=main_url, migrate=False,
                     run_worker=False)
    token = _token(signing_key, **claims)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://byodb.test") as c:
            response = await c.post("/api/conversations", json={"title": "x"},
                                    headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 401, response.text
            error = response.json()["error"]
            assert error["code"] == "unauthenticated" and said in error["message"]
            listed = await c.get("/api/conversations",
                                 headers={"Authorization": f"Bearer {_token(signing_key)}"})
            assert listed.json()["items"] == []


async def test_a_configured_admin_claim_must_be_a_boolean(
        jwks_url: str, signing_key: rsa.RSAPrivateKey) -> None:
    authenticator = Authenticator(production(jwks_url, BYODB_ADMIN_CLAIM="is_staff"))
    assert (await authenticator.verify(_token(signing_key, is_staff=True))).is_admin
    assert not (await authenticator.verify(_token(signing_key, byodb_admin=True))).is_admin
    with pytest.raises(Unauthenticated, match="is_staff claim must be true or false"):
        await authenticator.verify(_token(signing_key, is_staff="true"))
