"""JWT bearer auth.

Development: tokens are HS256-signed with a key kept in the data dir (``byodb token``).
Production: tokens are verified against the issuer's JWKS (Clerk-compatible), issuer and
optional audience. The admin role comes from a claim (``byodb_admin`` by default, or
``role: admin``) or from ``BYODB_ADMIN_USERS``; it is always checked on the server.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import jwt

from byodb.errors import Forbidden, Unauthenticated
from byodb.settings import Settings

DEV_ISSUER = "byodb-dev"
DEV_AUDIENCE = "byodb"
SESSION_COOKIE = "byodb_session"


@dataclass(frozen=True)
class Principal:
    user_id: str
    is_admin: bool = False

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("this needs the admin role")


def _dev_secret(settings: Settings) -> bytes:
    path = settings.data_dir / "jwt-dev.secret"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def issue_dev_token(settings: Settings, user_id: str, *, admin: bool = False,
                    ttl_s: int = 7 * 24 * 3600) -> str:
    """A development token (refused in production: there the issuer signs tokens)."""
    if settings.is_production:
        raise Forbidden("development tokens are disabled in production")
    if not user_id or len(user_id) > 200:
        raise ValueError("user id must be 1-200 characters")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user_id, "iss": DEV_ISSUER, "aud": DEV_AUDIENCE,
                              "iat": now, "exp": now + ttl_s}
    if admin:
        claims["byodb_admin"] = True
    return jwt.encode(claims, _dev_secret(settings), algorithm="HS256")


class Authenticator:
    def __init__(self, settings: Settings):
        self._settings = settings
        self._jwks = jwt.PyJWKClient(settings.jwks_url, cache_keys=True) \
            if settings.is_production and settings.jwks_url else None
        # PyJWKClient blocks on HTTP; it gets threads of its own, so signing in never waits
        # behind other work on the default pool.
        self._jwks_threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="jwks")

    async def verify(self, token: str | None) -> Principal:
        if not token:
            raise Unauthenticated("sign in first: no bearer token")
        try:
            if self._jwks is None:
                claims = jwt.decode(token, _dev_secret(self._settings), algorithms=["HS256"],
                                    issuer=DEV_ISSUER, audience=DEV_AUDIENCE,
                                    options={"require": ["exp", "sub"]})
            else:
                key = await asyncio.get_running_loop().run_in_executor(
                    self._jwks_threads, self._jwks.get_signing_key_from_jwt, token)
                audience = self._settings.jwt_audience
                claims = jwt.decode(token, key.key, algorithms=["RS256", "ES256"],
                                    issuer=self._settings.jwt_issuer, audience=audience,
                                    options={"require": ["exp", "sub"],
                                             "verify_aud": audience is not None})
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("your session has expired; sign in again") from None
        except (jwt.InvalidTokenError, jwt.PyJWKClientError):
            raise Unauthenticated("the token is not valid") from None
        user_id = str(claims["sub"])
        is_admin = (claims.get(self._settings.admin_claim) is True
                    or claims.get("role") == "admin"
                    or (claims.get("metadata") or {}).get("role") == "admin"
                    or user_id in self._settings.admin_user_ids)
        return Principal(user_id, is_admin)
