"""The byodb command and the settings a newcomer and an operator rely on."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from byodb.errors import ConfigurationError
from byodb.settings import Settings
from byodb.web.auth import Authenticator

BYODB = [sys.executable, "-m", "byodb.cli.main"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BYODB, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_keygen_prints_a_fresh_64_hex_key() -> None:
    first, second = run("keygen").stdout.strip(), run("keygen").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", first) and first != second


async def test_token_is_accepted_by_the_app_and_admin_flag_maps(tmp_path: Path) -> None:
    env = {"BYODB_DATA_DIR": str(tmp_path)}
    user_token = run("token", "alice", env=env).stdout.strip()
    admin_token = run("token", "root", "--admin", env=env).stdout.strip()
    auth = Authenticator(Settings(BYODB_DATA_DIR=tmp_path))
    user = await auth.verify(user_token)
    admin = await auth.verify(admin_token)
    assert (user.user_id, user.is_admin) == ("alice", False)
    assert (admin.user_id, admin.is_admin) == ("root", True)
    assert jwt.get_unverified_header(user_token)["alg"] == "HS256"


def test_token_is_refused_in_production(tmp_path: Path) -> None:
    result = run("token", "alice", env={"BYODB_ENV": "production",
                                        "BYODB_DATA_DIR": str(tmp_path)})
    assert result.returncode != 0 and "production" in result.stderr


def test_production_refuses_to_start_without_key_and_issuer(tmp_path: Path) -> None:
    result = run("serve", "--port", "1", env={"BYODB_ENV": "production",
                                              "BYODB_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert "BYOD_ENCRYPTION_KEY" in result.stderr
    assert not (tmp_path / "postgres").exists()  # nothing was started or created


def test_production_settings_refuse_private_hosts_and_require_tls() -> None:
    settings = Settings(BYODB_ENV="production", BYOD_ENCRYPTION_KEY="ab" * 32,
                        BYODB_JWKS_URL="https://issuer.example/.well-known/jwks.json",
                        BYODB_JWT_ISSUER="https://issuer.example")
    settings.check_production()
    assert settings.private_hosts_allowed is False and settings.tls_required is True
    allowed = Settings(BYODB_ENV="production", BYODB_ALLOW_PRIVATE_HOSTS=True)
    assert allowed.private_hosts_allowed is True
    with pytest.raises(ConfigurationError):
        Settings(BYODB_ENV="production").check_production()


def test_development_is_the_default_and_says_so(tmp_path: Path) -> None:
    assert Settings().is_production is False
    result = run("serve", "--port", "1", env={"BYODB_DATABASE_URL": "postgresql://x:y@"
                                              "127.0.0.1:1/none",
                                              "BYODB_DATA_DIR": str(tmp_path)})
    assert "DEVELOPMENT MODE" in result.stderr


def test_schema_sql_prints_the_full_ddl() -> None:
    result = run("schema", "sql")
    assert result.returncode == 0
    assert "CREATE TABLE byodb.conversations" in result.stdout
    assert "USING hnsw" in result.stdout


def test_rotate_key_reencrypts_stored_credentials(tmp_path: Path, main_url: str) -> None:
    import asyncio

    import psycopg
    from sqlalchemy.ext.asyncio import create_async_engine

    from byodb.instances.config_store import save_credentials
    from byodb.instances.guard import parse_database_url
    from byodb.maindb.urls import async_url
    from byodb.vault import KeyRing, Secret, Vault, generate_key_hex

    old, new = generate_key_hex(), generate_key_hex()
    url = "postgresql://ann:pw@db.example.com/app"

    async def save() -> None:
        engine = create_async_engine(async_url(main_url))
        await save_credentials(engine, Vault(KeyRing.from_hex(old)), "ann",
                               parse_database_url(url), Secret(url))
        await engine.dispose()

    asyncio.run(save())
    env = {"BYODB_DATABASE_URL": main_url, "BYOD_ENCRYPTION_KEY": new,
           "BYOD_PREVIOUS_ENCRYPTION_KEYS": old, "BYODB_DATA_DIR": str(tmp_path)}
    result = run("rotate-key", env=env)
    assert result.returncode == 0, result.stderr
    assert "re-encrypted 1" in result.stdout
    with psycopg.connect(main_url) as conn:
        stored = conn.execute("select encrypted_url from user_database_config").fetchone()
    assert stored is not None
    assert Vault(KeyRing.from_hex(new)).decrypt(stored[0], user_id="ann",
                                                field="database_url").reveal() == url
    assert "re-encrypted 0" in run("rotate-key", env=env).stdout  # idempotent
