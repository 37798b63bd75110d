"""The byodb command and the settings a newcomer and an operator rely on."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import jwt
import pytest

from byodb.errors import ConfigurationError
from byodb.jobs.queue import WORKER_CONCURRENCY
from byodb.settings import Settings
from byodb.web.auth import Authenticator, ensure_dev_secret
from tests.cli_support import run_cli

BYODB = [sys.executable, "-m", "byodb.cli.main"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``serve`` as an operator starts it: a process of its own (it is about the process)."""
    return subprocess.run([*BYODB, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_keygen_prints_a_fresh_64_hex_key() -> None:
    first, second = run_cli("keygen").stdout.strip(), run_cli("keygen").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", first) and first != second


async def test_token_is_accepted_by_the_app_and_admin_flag_maps(tmp_path: Path) -> None:
    env = {"BYODB_DATA_DIR": str(tmp_path)}
    ensure_dev_secret(Settings(BYODB_DATA_DIR=tmp_path))  # as `byodb serve` / `init` do
    user_token = run_cli("token", "alice", env=env).stdout.strip()
    admin_token = run_cli("token", "root", "--admin", env=env).stdout.strip()
    auth = Authenticator(Settings(BYODB_DATA_DIR=tmp_path))
    user = await auth.verify(user_token)
    admin = await auth.verify(admin_token)
    assert (user.user_id, user.is_admin) == ("alice", False)
    assert (admin.user_id, admin.is_admin) == ("root", True)
    assert jwt.get_unverified_header(user_token)["alg"] == "HS256"


def test_token_is_refused_in_production(tmp_path: Path) -> None:
    result = run_cli("token", "alice", env={"BYODB_ENV": "production",
                                            "BYODB_DATA_DIR": str(tmp_path)})
    assert result.exit_code != 0 and "production" in result.stderr


def test_production_refuses_to_start_without_key_and_issuer(tmp_path: Path) -> None:
    result = run("serve", "--port", "1", env={"BYODB_ENV": "production",
                                              "BYODB_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert "BYOD_ENCRYPTION_KEY" in result.stderr
    assert not (tmp_path / "postgres").exists()  # nothing was started or created


def test_production_settings_refuse_private_hosts_and_require_tls() -> None:
    settings = Settings(BYODB_ENV="production", BYOD_ENCRYPTION_KEY="ab" * 32,
                        BYODB_JWKS_URL="https://issuer.example/.well-known/jwks.json",
                        BYODB_JWT_ISSUER="https://issuer.example",
                        BYODB_JWT_AUDIENCE="byodb")
    settings.check_production()
    assert settings.private_hosts_allowed is False and settings.tls_required is True
    allowed = Settings(BYODB_ENV="production", BYODB_ALLOW_PRIVATE_HOSTS=True)
    assert allowed.private_hosts_allowed is True
    with pytest.raises(ConfigurationError):
        Settings(BYODB_ENV="production").check_production()


def test_development_is_the_default_and_says_so(tmp_path: Path) -> None:
    assert Settings().is_production is False
    with _listening_socket() as taken:  # serve says so first, then stops at the taken port
        result = run("serve", "--port", str(taken.getsockname()[1]),
                     env={"BYODB_DATABASE_URL": "postgresql://x:y@127.0.0.1:1/none",
                          "BYODB_DATA_DIR": str(tmp_path)})
    assert "DEVELOPMENT MODE" in result.stderr


def test_schema_sql_prints_the_full_ddl() -> None:
    result = run_cli("schema", "sql")
    assert result.exit_code == 0
    assert "CREATE TABLE byodb.conversations" in result.stdout
    assert "USING hnsw" in result.stdout


def test_rotate_key_reencrypts_stored_credentials(tmp_path: Path, main_url: str) -> None:
    import asyncio

    import psycopg
    from sqlalchemy.ext.asyncio import create_async_engine

    from byodb.instances.connection.guard import parse_database_url
    from byodb.instances.lifecycle.config_store import save_credentials
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
    result = run_cli("rotate-key", env=env)
    assert result.exit_code == 0, result.stderr
    assert "re-encrypted 1" in result.stdout
    with psycopg.connect(main_url) as conn:
        stored = conn.execute("select encrypted_url from user_database_config").fetchone()
    assert stored is not None
    assert Vault(KeyRing.from_hex(new)).decrypt(stored[0], user_id="ann",
                                                field="database_url").reveal() == url
    assert "re-encrypted 0" in run_cli("rotate-key", env=env).stdout  # idempotent


def _listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_serve_checks_its_port_before_starting_anything(tmp_path: Path) -> None:
    with _listening_socket() as taken:
        port = taken.getsockname()[1]
        started = time.monotonic()
        env = {"BYODB_DATA_DIR": str(tmp_path), "BYODB_DATABASE_URL": ""}
        result = run("serve", "--port", str(port), env=env)
    assert result.returncode == 2
    assert time.monotonic() - started < 30  # no embedded start-up, no migrations
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert errors == [f"error: port {port} on 127.0.0.1 is already in use; "
                      f"pick another with --port (e.g. --port {port + 1})"]
    assert "Traceback" not in result.stderr and "startup complete" not in result.stderr
    assert not (tmp_path / "postgres").exists()  # no embedded server was started


def test_development_banner_fits_80_columns_without_breaking_a_sentence(
        tmp_path: Path) -> None:
    with _listening_socket() as taken:  # serve prints the banner, then stops at the port
        result = run("serve", "--port", str(taken.getsockname()[1]),
                     env={"BYODB_DATA_DIR": str(tmp_path), "COLUMNS": "80"})
    lines = result.stderr.splitlines()
    banner = [line.strip("│ ") for line in lines if line.startswith("│")]
    assert banner[0] == "DEVELOPMENT MODE"
    assert all(len(line) <= 80 for line in lines if not line.startswith("error:"))
    sentences = ["Anyone can sign in as any user.",
                 f"Tokens and the encryption key are generated and kept in {tmp_path}/.",
                 "Private and loopback database hosts are allowed.",
                 "For real use: BYODB_ENV=production, BYOD_ENCRYPTION_KEY and a JWT issuer."]
    joined = " ".join(banner[1:])
    for sentence in sentences:
        assert sentence in joined
    # Every line of the banner ends a sentence, or (a long data dir) leads to its path.
    for line in banner[1:]:
        assert line.endswith(".") or line.endswith(" kept in"), line


def test_export_into_a_missing_folder_is_a_one_line_error(tmp_path: Path) -> None:
    out = tmp_path / "missing-dir" / "x.zip"
    result = run_cli("project", "export", str(out))
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: cannot write {out}: the folder {out.parent} does not exist"]
    assert not out.parent.exists()
    written = run_cli("project", "export", str(tmp_path / "x.zip"))
    assert written.exit_code == 0 and (tmp_path / "x.zip").stat().st_size > 0


def test_devdb_stop_of_an_unknown_sandbox_says_so(tmp_path: Path) -> None:
    env = {"BYODB_DATA_DIR": str(tmp_path)}
    result = run_cli("devdb", "stop", "nosuch", env=env)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: no sandbox database named 'nosuch'")
    assert "byodb devdb start nosuch" in result.stderr
    assert "stopped" not in result.stdout
    escape = run_cli("devdb", "stop", "../../etc", env=env)
    assert escape.exit_code == 2 and "invalid sandbox name" in escape.stderr


def test_worker_says_what_it_serves_and_from_where_without_the_password(
        tmp_path: Path, main_url: str) -> None:
    password = urlsplit(main_url).password
    assert password
    process = subprocess.Popen([*BYODB, "worker"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "BYODB_DATABASE_URL": main_url,
                                    "BYODB_DATA_DIR": str(tmp_path),
                                    "BYOD_ENCRYPTION_KEY": "ab" * 32})
    try:
        assert process.stderr is not None
        line = process.stderr.readline().strip()  # the first line it prints
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
    where = urlsplit(main_url)
    queues = ", ".join(f"{queue} ({n} at a time)" for queue, n in WORKER_CONCURRENCY.items())
    assert queues.startswith("byod_connect (16 at a time), byod_move (2 at a time), ")
    assert "byod_migrate (20 at a time)" in queues
    assert line == (f"byodb worker: serving queues {queues} from "
                    f"postgresql://postgres:****@127.0.0.1:{where.port}{where.path}")
    assert password not in line
