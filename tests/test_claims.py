"""A signed token can still carry any JSON: every claim byodb reads is type-checked, and a
wrong type is a 401 ``unauthenticated`` with a sentence saying which claim — never a 500,
and nothing is recorded for the token's subject. (Production tokens: test_production_auth.)"""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from byodb.web.auth import DEV_AUDIENCE, DEV_ISSUER, MAX_SUBJECT_CHARS, _dev_secret
from tests.conftest import Api, count_rows


def dev_token(api: Api, **claims: Any) -> str:
    """A development token signed with the real key, carrying whatever claims we like."""
    now = int(time.time())
    base = {"sub": "cla", "iss": DEV_ISSUER, "aud": DEV_AUDIENCE, "iat": now, "exp": now + 60}
    return jwt.encode({**base, **claims}, _dev_secret(api.settings), algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


UNSAFE = "must not contain control, format or line-separator characters"
BAD_CLAIMS = [
    ({"metadata": "str"}, "metadata claim must be an object"),
    ({"metadata": ["role", "admin"]}, "metadata claim must be an object"),
    ({"metadata": {"role": ["admin"]}}, "metadata.role claim must be a string"),
    ({"byodb_admin": "true"}, "byodb_admin claim must be true or false"),
    ({"byodb_admin": 1}, "byodb_admin claim must be true or false"),
    ({"role": {"name": "admin"}}, "role claim must be a string"),
    ({"sub": ""}, "non-empty string"),
    ({"sub": "x" * (MAX_SUBJECT_CHARS + 1)}, f"at most {MAX_SUBJECT_CHARS} characters"),
    ({"sub": "ann\x00admin"}, UNSAFE),
    ({"sub": "ann\nINFO forged log line"}, UNSAFE),
    # The alert-forging ids of issue 17: a line separator, and format characters.
    ({"sub": "ann\u2028X-Injected: yes"}, UNSAFE),
    ({"sub": "ann\u2029"}, UNSAFE),
    ({"sub": "ann\u202eadmin"}, UNSAFE),
    ({"sub": "ad\u200bmin"}, UNSAFE),
]


@pytest.mark.parametrize(("claims", "said"), BAD_CLAIMS)
async def test_a_claim_of_the_wrong_type_is_a_clear_401_and_records_nothing(
        api: Api, main_url: str, claims: dict[str, Any], said: str) -> None:
    before = count_rows(main_url, "select count(*) from users")
    response = await api.client.post("/api/conversations", json={"title": "x"},
                                     headers=bearer(dev_token(api, **claims)))
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["code"] == "unauthenticated" and said in error["message"]
    assert count_rows(main_url, "select count(*) from users") == before
    assert count_rows(main_url, "select count(*) from byodb.conversations") == 0


async def test_a_subject_that_is_not_a_string_is_refused(api: Api) -> None:
    response = await api.client.get("/api/byod", headers=bearer(dev_token(api, sub=12345)))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


@pytest.mark.parametrize(("claims", "said"), BAD_CLAIMS[:3])
async def test_pages_and_the_token_form_treat_a_bad_claim_as_signed_out(
        api: Api, claims: dict[str, Any], said: str) -> None:
    token = dev_token(api, **claims)
    page = await api.client.get("/", headers={"Cookie": f"byodb_session={token}"})
    assert page.status_code == 303 and page.headers["location"].startswith("/signin")
    form = await api.client.post("/signin/token", data={"token": token})
    assert form.status_code == 401 and said in form.text
    assert "byodb_session" not in form.cookies


async def test_a_subject_of_the_longest_allowed_length_signs_in(api: Api) -> None:
    longest = "u" * MAX_SUBJECT_CHARS
    response = await api.client.get("/api/byod", headers=bearer(dev_token(api, sub=longest)))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(("claims", "admin"), [
    ({"byodb_admin": True}, True), ({"role": "admin"}, True),
    ({"metadata": {"role": "admin"}}, True),
    ({"byodb_admin": False}, False), ({"role": "member"}, False),
    ({"metadata": {"role": "member", "plan": 3}}, False),
    ({"metadata": None, "role": None, "byodb_admin": None}, False),  # null counts as absent
    ({"metadata": {}}, False), ({"unsafe_metadata": {"role": "admin"}}, False),
])
async def test_exactly_the_documented_claims_make_an_admin(
        api: Api, claims: dict[str, Any], admin: bool) -> None:
    response = await api.client.get("/api/admin/byod", headers=bearer(dev_token(api, **claims)))
    assert response.status_code == (200 if admin else 403), response.text


async def test_a_development_sign_in_with_a_control_character_is_refused(api: Api) -> None:
    response = await api.client.post("/signin", data={"user_id": "ann\x07"})
    assert response.status_code == 422 and "Enter a user ID" in response.text
    assert "byodb_session" not in response.cookies
