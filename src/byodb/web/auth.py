"""JWT bearer auth.

Development: tokens are HS256-signed with a key kept in the data dir (``byodb token``).
Production: tokens are verified against the issuer's JWKS (Clerk-compatible), issuer and
audience (both required: ``Settings.check_production``).

Who is an admin, checked on the server for every request (docs/operations.md, "Admins"):
the claim named by ``BYODB_ADMIN_CLAIM`` (``byodb_admin``) is ``true``, or ``role`` is
``"admin"``, or ``metadata.role`` is ``"admin"``, or the subject is listed in
``BYODB_ADMIN_USERS``. Who is premium (docs/byod.md, "Feature flags"): the claim named by
``BYODB_PREMIUM_CLAIM`` (``byodb_premium``) is ``true``. The identity provider must fill
these claims only from data users cannot write themselves.

Claims are type-checked after the signature (:func:`principal_from_claims`): a token the
issuer signed can still carry any JSON, and a wrong type must be a 401, never a 500.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import jwt

from byodb.errors import Forbidden, Unauthenticated
from byodb.safetext import has_unsafe
from byodb.settings import Settings

DEV_ISSUER = "byodb-dev"
DEV_AUDIENCE = "byodb"
SESSION_COOKIE = "byodb_session"
# Clerk ids are ~32 characters, Auth0's "provider|id" rarely over 100; 255 leaves room for
# any issuer while keeping ids sane in keys, logs and URLs (user ids are path segments).
MAX_SUBJECT_CHARS = 255

_T = TypeVar("_T")


@dataclass(frozen=True)
class Principal:
    user_id: str
    is_admin: bool = False
    is_premium: bool = False

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("this needs the admin role")


def subject_problem(subject: object) -> str | None:
    """Why ``subject`` cannot be a user id, or None. The one rule for user ids, whether they
    come from a token's ``sub`` or from the development sign-in."""
    if not isinstance(subject, str) or not subject:
        return "the user id (sub) must be a non-empty string"
    if len(subject) > MAX_SUBJECT_CHARS:
        return f"the user id (sub) must be at most {MAX_SUBJECT_CHARS} characters"
    # Control characters (NUL above all) break PostgreSQL text and forge log lines; format
    # characters (bidirectional overrides, zero-width ones) disguise one id as another; line
    # and paragraph separators break email headers and log viewers (byodb.safetext).
    if has_unsafe(subject):
        return ("the user id (sub) must not contain control, format or line-separator "
                "characters")
    return None


def _optional_claim(claims: Mapping[str, Any], name: str, kind: type[_T], what: str,
                    where: str = "") -> _T | None:
    """A claim that may be absent (or null), else must be of ``kind``."""
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, kind):
        raise Unauthenticated(f"the token's {where}{name} claim must be {what}")
    return value


def principal_from_claims(claims: Mapping[str, Any], settings: Settings) -> Principal:
    """The principal a verified token names, after checking every claim we read."""
    problem = subject_problem(claims.get("sub"))
    if problem is not None:
        raise Unauthenticated(f"the token is not valid: {problem}")
    user_id: str = claims["sub"]
    metadata = _optional_claim(claims, "metadata", dict, "an object") or {}
    admin_flag = _optional_claim(claims, settings.admin_claim, bool, "true or false")
    role = _optional_claim(claims, "role", str, "a string")
    metadata_role = _optional_claim(metadata, "role", str, "a string", where="metadata.")
    is_admin = (admin_flag is True or role == "admin" or metadata_role == "admin"
                or user_id in settings.admin_user_ids)
    premium_flag = _optional_claim(claims, settings.premium_claim, bool, "true or false")
    return Principal(user_id, is_admin, is_premium=premium_flag is True)


DEV_SECRET_FILE = "jwt-dev.secret"  # noqa: S105 - a file name, not a secret


def dev_secret_path(settings: Settings) -> Path:
    """Where development tokens' signing secret is kept (made by ``serve`` or ``init``)."""
    return settings.data_dir / DEV_SECRET_FILE


def _dev_secret(settings: Settings) -> bytes:
    path = dev_secret_path(settings)
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def ensure_dev_secret(settings: Settings) -> None:
    """Make the development signing secret now (``serve``/``init``), not at the first token."""
    if not settings.is_production:
        _dev_secret(settings)


def issue_dev_token(settings: Settings, user_id: str, *, admin: bool = False,
                    premium: bool = False, ttl_s: int = 7 * 24 * 3600) -> str:
    """A development token (refused in production: there the issuer signs tokens)."""
    if settings.is_production:
        raise Forbidden("development tokens are disabled in production")
    problem = subject_problem(user_id)
    if problem is not None:
        raise ValueError(problem)
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user_id, "iss": DEV_ISSUER, "aud": DEV_AUDIENCE,
                              "iat": now, "exp": now + ttl_s}
    if admin:
        claims["byodb_admin"] = True
    if premium:
        claims[settings.premium_claim] = True
    return jwt.encode(claims, _dev_secret(settings), algorithm="HS256")


class Authenticator:
    def __init__(self, settings: Settings):
        # Fail closed: an Authenticator built without create_app's start-up check would
        # otherwise accept production tokens for any audience.
        settings.check_production()
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
                                    options={"require": ["exp", "sub", "aud"]})
            else:
                key = await asyncio.get_running_loop().run_in_executor(
                    self._jwks_threads, self._jwks.get_signing_key_from_jwt, token)
                claims = jwt.decode(token, key.key, algorithms=["RS256", "ES256"],
                                    issuer=self._settings.jwt_issuer,
                                    audience=self._settings.jwt_audience,
                                    options={"require": ["exp", "sub", "iss", "aud"],
                                             "verify_aud": True})
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("your session has expired; sign in again") from None
        except (jwt.InvalidAudienceError, jwt.MissingRequiredClaimError) as exc:
            # Said plainly: a token for another application is the usual cause, and the
            # operator fixes it at the identity provider.
            if isinstance(exc, jwt.MissingRequiredClaimError) and exc.claim != "aud":
                raise Unauthenticated(f"the token is not valid: it has no {exc.claim} "
                                      "claim") from None
            raise Unauthenticated("the token was issued for another audience "
                                  "(application)") from None
        except (jwt.InvalidTokenError, jwt.PyJWKClientError):
            raise Unauthenticated("the token is not valid") from None
        return principal_from_claims(claims, self._settings)
