"""The operator's own libpq secrets never reach a user's server (DESIGN.md §6).

libpq fills every connection parameter not given explicitly from this host: ``PG*``
variables, ``~/.pgpass``, a service file, ``~/.postgresql/postgresql.key``. A user URL without
a password once made it send the operator's stored password to the server the user chose.
These tests set all of that up in the test process (restored by ``monkeypatch``) and connect
to a real PostgreSQL the test owns, whose pg_hba requires a password, with a role whose
password *is* the operator's secret: any leak would let the connection in.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from byodb.instances.connection.guard import (
    ConnectionCheckError,
    GuardPolicy,
    check_url,
    parse_database_url,
)
from byodb.instances.connection.handle import UserDatabase
from byodb.instances.connection.hostenv import NO_FILE, forget_host_libpq_environment
from byodb.maindb.embedded import PostgresCluster
from tests.clusters import started_copy
from tests.conftest import Api, count_rows
from tests.test_guard import resolver_to

SECRET = "operator-secret"
ROLE = "victim_role"


@pytest.fixture(scope="module")
def victim(tmp_path_factory: pytest.TempPathFactory,
           cluster_template: Path) -> Iterator[PostgresCluster]:
    """A server of our own: password (SCRAM) auth for TCP, every connection logged.

    byodb only gets a plain login role's URL (with CREATE on the database, pgvector in
    ``public`` as an administrator enables it); the superuser is needed here to turn on
    ``log_connections`` (ALTER SYSTEM), which is how the test sees every connection."""
    cluster = started_copy(cluster_template, tmp_path_factory.mktemp("victim"))
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(f"create role {ROLE} login password '{SECRET}'")
        # What the connection test's preflight needs, so a good URL tests ok.
        conn.execute("create extension if not exists vector")
        conn.execute(f"grant create on database postgres to {ROLE}")
        conn.execute("alter system set log_connections = 'on'")
        conn.execute("select pg_reload_conf()")
    yield cluster
    cluster.stop("immediate")


def log_offset(cluster: PostgresCluster) -> int:
    return (cluster.root / "server.log").stat().st_size


def log_since(cluster: PostgresCluster, offset: int) -> str:
    with (cluster.root / "server.log").open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")


def no_password_url(cluster: PostgresCluster) -> str:
    return f"postgresql://{ROLE}@127.0.0.1:{cluster.port}/postgres"


def own_password_url(cluster: PostgresCluster) -> str:
    return cluster.url("postgres", user=ROLE, password=SECRET)


def set_operator_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                             cluster: PostgresCluster, *, hostile: bool) -> None:
    """What an operator's host may hold. ``hostile`` adds variables that would break or
    redirect a connection that honoured them (they also break main's connections, so only
    tests that never touch main use them)."""
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"*:*:*:*:{SECRET}\n")
    passfile.chmod(0o600)
    services = tmp_path / "pg_service.conf"
    services.write_text(f"[operator]\nhost=127.0.0.1\nport={cluster.port}\nuser={ROLE}\n"
                        f"dbname=postgres\npassword={SECRET}\n")
    key, cert = tmp_path / "operator.key", tmp_path / "operator.crt"
    key.write_text("operator private key\n")
    key.chmod(0o600)
    cert.write_text("operator certificate\n")
    env = {
        "PGPASSWORD": SECRET,
        "PGPASSFILE": str(passfile),
        "PGSERVICE": "operator",
        "PGSERVICEFILE": str(services),
        "PGOPTIONS": "-c work_mem=77MB",
        "PGSSLKEY": str(key),
        "PGSSLCERT": str(cert),
        "PGAPPNAME": "operator-app",
        "PGTZ": "Asia/Tokyo",
    }
    if hostile:
        env |= {
            "PGUSER": "postgres", "PGDATABASE": "operator_db", "PGHOST": "192.0.2.1",
            "PGPORT": "1", "PGSSLMODE": "require", "PGCHANNELBINDING": "require",
            "PGREQUIREAUTH": "scram-sha-256", "PGTARGETSESSIONATTRS": "standby",
            "PGCLIENTENCODING": "LATIN1", "PGCONNECT_TIMEOUT": "1",
            "PGSSLNEGOTIATION": "direct", "PGDATESTYLE": "SQL, DMY",
        }
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def user_database(url: str) -> UserDatabase:
    return UserDatabase(parse_database_url(url),
                        GuardPolicy(allow_private=True, tls_required=False))


async def session(db: UserDatabase) -> dict[str, Any]:
    conn = await db.connect()
    try:
        cur = await conn.execute(
            "select current_user, current_database(), current_setting('application_name'), "
            "current_setting('work_mem'), current_setting('client_encoding'), "
            "current_setting('TimeZone'), current_setting('DateStyle'), "
            "coalesce((select ssl from pg_stat_ssl where pid = pg_backend_pid()), false)")
        row = await cur.fetchone()
    finally:
        await conn.close()
    assert row is not None
    keys = ("user", "database", "application_name", "work_mem", "client_encoding",
            "timezone", "datestyle", "ssl")
    return dict(zip(keys, row, strict=True))


def assert_never_authenticated(cluster: PostgresCluster, offset: int) -> None:
    """No session for the role started, and no password was even offered (a wrong one
    would be logged as a failed password authentication)."""
    log = log_since(cluster, offset)
    assert "connection received" in log  # the attempt reached the server and was logged
    assert f"connection authorized: user={ROLE}" not in log
    assert f'identity="{ROLE}"' not in log
    assert f'password authentication failed for user "{ROLE}"' not in log


# --- the per-connection layer, on its own -------------------------------------------------

async def test_connection_parameters_ignore_the_hosts_libpq_configuration(
        victim: PostgresCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the environment left in place (the second layer switched off), what
    connect_kwargs() sets keeps every secret and redirect of this host out."""
    monkeypatch.setattr("byodb.instances.connection.handle.forget_host_libpq_environment",
                        lambda: ())
    set_operator_environment(monkeypatch, tmp_path, victim, hostile=True)

    offset = log_offset(victim)
    with pytest.raises(ConnectionCheckError) as info:
        await user_database(no_password_url(victim)).connect()
    assert info.value.code == "auth_failed"
    assert "has none" in info.value.message
    assert_never_authenticated(victim, offset)

    seen = await session(user_database(own_password_url(victim)))
    assert seen["user"] == ROLE and seen["database"] == "postgres"
    assert seen["application_name"] == "byodb" and seen["work_mem"] != "77MB"
    assert seen["client_encoding"] == "UTF8" and seen["ssl"] is False
    # Why the second layer exists: PGTZ/PGDATESTYLE have no parameter to pin, and libpq
    # sends them. (If a libpq stops doing so, this canary may go.)
    assert seen["timezone"] == "Asia/Tokyo"
    assert os.environ["PGPASSWORD"] == SECRET  # the layer under test did not touch it


async def test_files_in_the_home_directory_are_not_read(
        victim: PostgresCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """~/.pgpass and ~/.postgresql/ hold no PG* variable: only connect_kwargs() keeps them
    out (libpq finds the home directory through HOME)."""
    home = tmp_path / "home"
    (home / ".postgresql").mkdir(parents=True)
    (home / ".pgpass").write_text(f"*:*:*:*:{SECRET}\n")
    (home / ".pgpass").chmod(0o600)
    for name in ("postgresql.key", "postgresql.crt", "root.crt"):
        (home / ".postgresql" / name).write_text("operator material\n")
    (home / ".postgresql" / "postgresql.key").chmod(0o600)
    monkeypatch.setenv("HOME", str(home))

    offset = log_offset(victim)
    with pytest.raises(ConnectionCheckError) as info:
        await user_database(no_password_url(victim)).connect()
    assert info.value.code == "auth_failed"
    assert_never_authenticated(victim, offset)
    # A garbage root.crt would fail the handshake if it were read; TLS is off here, so this
    # shows the certificate files do not break a connection with its own password.
    assert (await session(user_database(own_password_url(victim))))["user"] == ROLE


# --- both layers, through the API ---------------------------------------------------------

async def test_url_without_password_never_gets_the_operators_password(
        api: Api, victim: PostgresCluster, main_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    set_operator_environment(monkeypatch, tmp_path, victim, hostile=False)
    url = no_password_url(victim)
    offset = log_offset(victim)

    tested = (await api.post("/api/byod/test", "mallory", json={"url": url})).json()
    assert (tested["ok"], tested["code"]) == (False, "auth_failed"), tested
    set_operator_environment(monkeypatch, tmp_path, victim, hostile=False)  # again, for save
    saved = await api.put("/api/byod", "mallory", json={"url": url})
    assert saved.status_code == 422 and saved.json()["error"]["code"] == "auth_failed"

    assert (await api.get("/api/byod", "mallory")).json()["connection_status"] == "none"
    assert count_rows(main_url, "select count(*) from user_database_config "
                      "where user_id = 'mallory'") == 0
    assert_never_authenticated(victim, offset)
    assert not [name for name in os.environ if name.startswith("PG")]


async def test_url_with_its_own_password_still_works(
        api: Api, victim: PostgresCluster, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    set_operator_environment(monkeypatch, tmp_path, victim, hostile=False)
    offset = log_offset(victim)
    tested = (await api.post("/api/byod/test", "trent",
                             json={"url": own_password_url(victim)})).json()
    assert (tested["ok"], tested["code"]) == (True, "ok"), tested
    assert f"connection authorized: user={ROLE}" in log_since(victim, offset)


async def test_environment_only_variables_do_not_reach_the_session(
        victim: PostgresCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    set_operator_environment(monkeypatch, tmp_path, victim, hostile=True)
    seen = await session(user_database(own_password_url(victim)))
    assert seen["timezone"] != "Asia/Tokyo" and seen["datestyle"].startswith("ISO")
    assert seen["user"] == ROLE and seen["work_mem"] != "77MB"


# --- the pieces, offline ------------------------------------------------------------------

def test_libpq_supports_the_parameters_the_defence_needs() -> None:
    assert psycopg.pq.version() >= 160000  # require_auth, sslcertmode


def test_no_file_never_exists() -> None:
    assert not os.path.exists(NO_FILE)
    assert os.path.exists(os.devnull) and not os.path.isdir(os.devnull)


@pytest.mark.parametrize(("url", "require_auth"), [
    ("postgresql://u@db.example.com/app", "none"),
    ("postgresql://u:@db.example.com/app", "none"),
    ("postgresql://u:p@db.example.com/app", "password,md5,scram-sha-256,none"),
])
async def test_connect_kwargs_are_built_from_the_url_alone(url: str, require_auth: str) -> None:
    target = await check_url(url, allow_private=False, tls_required=False,
                             resolver=resolver_to("93.184.216.34"))
    kwargs = target.connect_kwargs()
    assert kwargs["require_auth"] == require_auth
    assert kwargs["passfile"] == kwargs["sslkey"] == kwargs["sslcert"] == NO_FILE
    assert kwargs["sslcertmode"] == "disable" and kwargs["gssencmode"] == "disable"
    assert kwargs["sslrootcert"] == NO_FILE  # sslmode=prefer: never ~/.postgresql/root.crt
    assert "service" not in kwargs


@pytest.mark.parametrize(("sslmode", "rootcert"), [
    ("require", NO_FILE), ("verify-full", "system"), (None, "system"),
    ("verify-ca", ssl.get_default_verify_paths().cafile or NO_FILE)])
async def test_trust_anchors_never_come_from_the_host(sslmode: str | None, rootcert: str) -> None:
    """Never ~/.postgresql/root.crt or PGSSLROOTCERT: with sslmode=require its mere presence
    would turn verification on against the operator's own CA."""
    query = f"?sslmode={sslmode}" if sslmode else ""
    target = await check_url(f"postgresql://u:p@db.example.com/app{query}", allow_private=False,
                             tls_required=True, resolver=resolver_to("93.184.216.34"))
    assert target.connect_kwargs()["sslrootcert"] == rootcert


# Parameters libpq can take from the host that connect_kwargs() does not set, and why that is
# safe; a new libpq parameter fails the test below until it is pinned or reviewed here.
NOT_PINNED = {
    "service": "PGSERVICE is removed from the environment; never set from a URL",
    "requirepeer": "Unix-domain sockets only; user connections are TCP (hostaddr)",
    "ssl_max_protocol_version": "no safe fixed value; PGSSLMAXPROTOCOLVERSION is removed",
    "min_protocol_version": "harmless; PGMINPROTOCOLVERSION is removed",
    "max_protocol_version": "harmless; PGMAXPROTOCOLVERSION is removed",
    "krbsrvname": "GSSAPI is never used (gssencmode=disable, require_auth excludes gss)",
    "gsslib": "GSSAPI is never used",
}


async def test_every_parameter_libpq_reads_from_the_environment_is_pinned() -> None:
    target = await check_url("postgresql://u:p@db.example.com/app", allow_private=False,
                             tls_required=False, resolver=resolver_to("93.184.216.34"))
    pinned = set(target.connect_kwargs())
    from_environment = {option.keyword.decode(): option.envvar.decode()
                        for option in psycopg.pq.Conninfo.get_defaults() if option.envvar}
    unreviewed = set(from_environment) - pinned - set(NOT_PINNED)
    assert not unreviewed, f"pin these in connect_kwargs() or review them: {unreviewed}"
    # ...and every variable is one forget_host_libpq_environment() removes.
    assert all(name.startswith("PG") for name in from_environment.values())


def test_forgetting_the_environment_removes_pg_variables_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", SECRET)
    monkeypatch.setenv("PGSERVICE", "operator")
    monkeypatch.setenv("BYODB_UNRELATED", "kept")
    assert set(forget_host_libpq_environment()) >= {"PGPASSWORD", "PGSERVICE"}
    assert "PGPASSWORD" not in os.environ and "PGSERVICE" not in os.environ
    assert os.environ["BYODB_UNRELATED"] == "kept"
    assert forget_host_libpq_environment() == ()
