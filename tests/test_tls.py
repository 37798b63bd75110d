"""TLS as providers document it, against a private CA made here: PgBouncer serves a
certificate for 127.0.0.1 signed by that CA and refuses plain connections (Supabase's pooler
with its downloadable CA, RDS with ``rds.force_ssl``). ``sslmode=verify-full`` works with
the CA pasted as ``ca_certificate`` — test, save, and every connection byodb makes later —
and fails as ``tls_failed`` without it; ``sslrootcert=system`` is accepted, a path is not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from byodb.maindb.embedded import PostgresCluster
from byodb.settings import Settings
from tests.conftest import Api, _pgbouncer_or_skip, count_rows
from tests.lifecycle_support import OLDEST, Connection, whole_lifecycle
from tests.pgbouncer import PgBouncer, running_pgbouncer
from tests.providers import ProviderDatabase, byodb_schema_exists, provider_database
from tests.tls import CertificateAuthority, make_ca


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """New deploys held at the oldest supported version: the fleet run has work to do."""
    return Settings(BYODB_DATA_DIR=tmp_path / "data", BYODB_ENV="development",
                    BYODB_ALLOW_PRIVATE_HOSTS=True, BYODB_TEST_RATE_LIMIT=1000,
                    BYODB_SCHEMA_TARGET=OLDEST)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return make_ca("provider root CA")


@pytest.fixture(scope="module")
def tls_pooler(user_server: PostgresCluster, ca: CertificateAuthority) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode that only takes TLS connections, with a certificate for
    127.0.0.1 from ``ca``."""
    _pgbouncer_or_skip()
    assert user_server.port is not None
    with running_pgbouncer(user_server.port, "transaction", tls=ca,
                           client_tls_sslmode="require") as bouncer:
        yield bouncer


@pytest.fixture
def supabase_like(user_server: PostgresCluster, tls_pooler: PgBouncer
                  ) -> tuple[ProviderDatabase, str]:
    """A database with pgvector in ``extensions`` and its pooled owner URL (no query)."""
    database = provider_database(user_server, vector="extensions")
    return database, tls_pooler.add(database)


async def _tested(api: Api, user: str, **body: Any) -> dict[str, Any]:
    response = await api.post("/api/byod/test", user, json=body)
    assert response.status_code == 200, response.text
    verdict: dict[str, Any] = response.json()
    return verdict


async def _refused_to_save(api: Api, main_url: str, user: str, code: str,
                           database: ProviderDatabase, **body: Any) -> httpx.Response:
    saved = await api.put("/api/byod", user, json=body)
    assert saved.status_code == 422, saved.text
    assert saved.json()["error"]["code"] == code, saved.text
    assert (await api.get("/api/byod", user)).json()["connection_status"] == "none"
    assert count_rows(main_url, "select count(*) from user_database_config where "
                      "user_id = %s and encrypted_url is not null", user) == 0
    assert not byodb_schema_exists(database.admin_url)
    return saved


def _pem_body_line(pem: str) -> str:
    return next(line for line in pem.splitlines() if line and not line.startswith("-----"))


async def test_verify_full_with_the_pasted_ca_goes_the_whole_way(
        api: Api, main_url: str, ca: CertificateAuthority,
        supabase_like: tuple[ProviderDatabase, str]) -> None:
    database, pooled = supabase_like
    # Routed requests, the health sweep, the fleet run and the moves all connect later with
    # the CA saved with the connection.
    await whole_lifecycle(api, main_url, "tls-sue", Connection(
        url=f"{pooled}?sslmode=verify-full", direct_url=database.url,
        ca_certificate=ca.ca_pem))
    # Kept encrypted with the connection record, never as plain text on main.
    assert count_rows(main_url, "select count(*) from user_database_config u where "
                      "strpos(row_to_json(u)::text, %s) > 0", _pem_body_line(ca.ca_pem)) == 0


async def test_verify_full_without_the_ca_is_tls_failed_and_nothing_is_saved(
        api: Api, main_url: str, supabase_like: tuple[ProviderDatabase, str]) -> None:
    database, pooled = supabase_like
    url = f"{pooled}?sslmode=verify-full"
    verdict = await _tested(api, "tls-tom", url=url)
    assert verdict["ok"] is False and verdict["code"] == "tls_failed", verdict
    assert "certificate" in verdict["message"].lower() + verdict["hint"].lower()
    await _refused_to_save(api, main_url, "tls-tom", "tls_failed", database, url=url)


async def test_another_ca_than_the_servers_is_tls_failed(
        api: Api, main_url: str, supabase_like: tuple[ProviderDatabase, str]) -> None:
    database, pooled = supabase_like
    body = {"url": f"{pooled}?sslmode=verify-full", "ca_certificate": make_ca().ca_pem}
    verdict = await _tested(api, "tls-ann", **body)
    assert verdict["code"] == "tls_failed", verdict
    await _refused_to_save(api, main_url, "tls-ann", "tls_failed", database, **body)


async def test_a_bundle_of_many_certificates_like_rds_global_bundle_works(
        api: Api, ca: CertificateAuthority, supabase_like: tuple[ProviderDatabase, str]
        ) -> None:
    _, pooled = supabase_like
    bundle = "".join([make_ca("region one").ca_pem, ca.ca_pem, make_ca("region two").ca_pem])
    verdict = await _tested(api, "tls-rds", url=f"{pooled}?sslmode=verify-full",
                            ca_certificate=bundle)
    assert verdict["ok"] is True and verdict["code"] == "ok", verdict


async def test_verify_ca_with_the_pasted_ca_and_plain_require_pass(
        api: Api, ca: CertificateAuthority, supabase_like: tuple[ProviderDatabase, str]
        ) -> None:
    _, pooled = supabase_like
    verified = await _tested(api, "tls-vca", url=f"{pooled}?sslmode=verify-ca",
                             ca_certificate=ca.ca_pem)
    assert verified["ok"] is True, verified
    # sslmode=require encrypts without checking whose certificate it is (Neon's usual URL).
    required = await _tested(api, "tls-req", url=f"{pooled}?sslmode=require")
    assert required["ok"] is True, required


async def test_a_server_that_requires_tls_refuses_a_plain_connection_as_tls_failed(
        api: Api, main_url: str, supabase_like: tuple[ProviderDatabase, str]) -> None:
    database, pooled = supabase_like
    url = f"{pooled}?sslmode=disable"
    verdict = await _tested(api, "tls-plain", url=url)
    assert verdict["code"] == "tls_failed", verdict
    await _refused_to_save(api, main_url, "tls-plain", "tls_failed", database, url=url)


async def test_channel_binding_required_where_the_pooler_cannot_bind_says_so(
        api: Api, main_url: str, ca: CertificateAuthority,
        supabase_like: tuple[ProviderDatabase, str]) -> None:
    # TLS works, but PgBouncer 1.18 offers SCRAM without channel binding (no -PLUS).
    database, pooled = supabase_like
    body = {"url": f"{pooled}?sslmode=verify-full&channel_binding=require",
            "ca_certificate": ca.ca_pem}
    verdict = await _tested(api, "tls-cb", **body)
    assert verdict["code"] in ("auth_failed", "tls_failed"), verdict
    assert "channel binding" in verdict["message"].lower(), verdict
    await _refused_to_save(api, main_url, "tls-cb", verdict["code"], database, **body)


async def test_sslrootcert_system_is_accepted_and_checks_the_system_store(
        api: Api, supabase_like: tuple[ProviderDatabase, str]) -> None:
    _, pooled = supabase_like
    # Accepted (not invalid_url); the private CA is not in the system store, so the check
    # that really ran fails — as it should.
    verdict = await _tested(api, "tls-sys", url=f"{pooled}?sslmode=verify-full"
                                                f"&sslrootcert=system")
    assert verdict["code"] == "tls_failed", verdict


async def test_a_path_in_sslrootcert_is_refused_with_a_hint_to_paste_the_certificate(
        api: Api, main_url: str, ca: CertificateAuthority,
        supabase_like: tuple[ProviderDatabase, str], tmp_path: Path) -> None:
    database, pooled = supabase_like
    path = tmp_path / "root.crt"
    path.write_text(ca.ca_pem)  # even a file that exists and holds the right CA
    url = f"{pooled}?sslmode=verify-full&sslrootcert={path}"
    verdict = await _tested(api, "tls-path", url=url)
    assert verdict["code"] == "invalid_url", verdict
    assert "paste" in verdict["hint"].lower(), verdict
    await _refused_to_save(api, main_url, "tls-path", "invalid_url", database, url=url)


@pytest.mark.parametrize("bad", [
    "not a certificate",
    "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
])
async def test_a_ca_certificate_that_is_not_one_is_refused_and_nothing_is_saved(
        api: Api, main_url: str, bad: str, supabase_like: tuple[ProviderDatabase, str]
        ) -> None:
    database, pooled = supabase_like
    body = {"url": f"{pooled}?sslmode=verify-full", "ca_certificate": bad}
    tested = await api.post("/api/byod/test", "tls-bad", json=body)
    if tested.status_code == 200:  # refused as a verdict
        code, message = tested.json()["code"], tested.json()["message"]
        assert tested.json()["ok"] is False
    else:  # or as a bad request
        assert tested.status_code == 422, tested.text
        code, message = tested.json()["error"]["code"], tested.json()["error"]["message"]
    assert code != "ok" and "certificate" in message.lower(), tested.text
    saved = await api.put("/api/byod", "tls-bad", json=body)
    assert saved.status_code == 422 and saved.json()["error"]["code"] == code, saved.text
    assert (await api.get("/api/byod", "tls-bad")).json()["connection_status"] == "none"
    assert not byodb_schema_exists(database.admin_url)


async def test_an_oversized_ca_certificate_is_refused(
        api: Api, ca: CertificateAuthority, supabase_like: tuple[ProviderDatabase, str]
        ) -> None:
    database, pooled = supabase_like
    huge = ca.ca_pem * 2000  # ~1.3 MB: far more than any provider's bundle
    for method in ("POST", "PUT"):
        path = "/api/byod/test" if method == "POST" else "/api/byod"
        response = await api.request(method, path, "tls-huge", json={
            "url": f"{pooled}?sslmode=verify-full", "ca_certificate": huge})
        assert response.status_code in (413, 422), response.text
    assert (await api.get("/api/byod", "tls-huge")).json()["connection_status"] == "none"
    assert not byodb_schema_exists(database.admin_url)
