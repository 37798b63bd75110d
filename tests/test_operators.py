"""An operator's first hour (issue 19): commands find their deployment and never invent one,
results on stdout (tables within 80 columns, JSON), runs that end with a summary line and a
dry run that says so, settings problems all at once.

The commands run in this process through Typer's CliRunner (its stdout is not a terminal,
as when piped into a reader); only ``serve``'s port is tested in a subprocess elsewhere
(tests/test_cli_and_settings.py)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import procrastinate
import psycopg
import pytest
from click.testing import Result
from sqlalchemy.ext.asyncio import create_async_engine
from typer.testing import CliRunner

from byodb.cli.main import app, main
from byodb.instances.connection.guard import parse_database_url
from byodb.instances.health.jobs import scheduled_sweep
from byodb.instances.lifecycle import config_store
from byodb.instances.lifecycle.states import ConnectionStatus, DeploymentStatus
from byodb.maindb.embedded import PostgresCluster
from byodb.maindb.urls import async_url
from byodb.runtime import build_runtime
from byodb.settings import Settings, get_settings
from byodb.vault import KeyRing, Secret, Vault, generate_key_hex
from tests.fleet_support import connected_at_v1, main_version, meta_version, v1_template

NO_DEPLOYMENT_VARIABLES = {"BYODB_DATA_DIR": None, "BYODB_DATABASE_URL": None,
                           "BYOD_ENCRYPTION_KEY": None, "BYOD_PREVIOUS_ENCRYPTION_KEYS": None,
                           "BYODB_ENV": None, "COLUMNS": None}

OPERATOR_COMMANDS = [
    ["status"], ["status", "--json"], ["instances", "list"], ["instances", "list", "--json"],
    ["instances", "show", "bob"], ["instances", "check", "bob"], ["health-check"],
    ["health-check", "--json"], ["migrate-all"], ["migrate-all", "--dry-run"],
    ["migrations", "status"], ["migrations", "status", "--json"],
    ["export", "bob", "--out", "bob.zip"], ["rotate-key"], ["worker"], ["token", "alice"],
]


OUTCOME_ON_A_NEW_DEPLOYMENT = {
    "instances show": (1, "no database is configured for user 'bob'"),
    "instances check": (1, "user 'bob' has no connected or failing database"),
    "export bob": (2, "no user 'bob' on this deployment"),
}
"""Exit code and stderr of the commands that find the deployment but not what they are
asked about (every other command exits 0 on a new deployment)."""


@pytest.fixture(autouse=True)
def _own_settings() -> Iterator[None]:
    """The commands read the environment afresh (and --data-dir writes BYODB_DATA_DIR):
    the rest of the suite gets its own back."""
    saved = os.environ.get("BYODB_DATA_DIR")
    yield
    if saved is None:
        os.environ.pop("BYODB_DATA_DIR", None)
    else:
        os.environ["BYODB_DATA_DIR"] = saved
    get_settings.cache_clear()


def byodb(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env={**NO_DEPLOYMENT_VARIABLES, **(env or {})})


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_every_operator_command_in_an_empty_folder_exits_2_and_creates_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for command in OPERATOR_COMMANDS:
        result = byodb(*command)
        assert result.exit_code == 2, (command, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (command, lines)
        # What it looked for, and how to point it at the deployment.
        assert str(tmp_path / "byodb-data") in lines[0] and "--data-dir" in lines[0]
        assert result.stdout == "" and "Traceback" not in result.stderr
        assert _tree(tmp_path) == [], (command, _tree(tmp_path))
    # Another folder named by --data-dir that holds no deployment: the same, nothing made.
    elsewhere = tmp_path / "not-a-deployment"
    result = byodb("--data-dir", str(elsewhere), "status")
    assert result.exit_code == 2 and str(elsewhere) in result.stderr
    assert _tree(tmp_path) == []


def test_every_settings_problem_is_printed_at_once_and_nothing_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = byodb("status", env={"BYODB_HEALTH_INTERVAL": "2",
                                  "BYODB_HEALTH_FAILURES": "zero",
                                  "BYODB_TRUSTED_PROXIES": "not-an-address"})
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("error: ") for line in lines), lines
    joined = "\n".join(lines)
    for variable in ("BYODB_HEALTH_INTERVAL=2", "BYODB_HEALTH_FAILURES=zero",
                     "BYODB_TRUSTED_PROXIES"):
        assert variable in joined
    assert _tree(tmp_path) == []


def test_health_interval_settings_the_schedule_cannot_honour_are_refused() -> None:
    assert Settings(BYODB_HEALTH_INTERVAL=5).problems() == []
    assert Settings(BYODB_HEALTH_INTERVAL=7).problems() == []  # honoured to the second
    assert Settings(BYODB_HEALTH_INTERVAL=90).problems() == []
    problems = Settings(BYODB_HEALTH_INTERVAL=4.5).problems()
    assert len(problems) == 1 and "BYODB_HEALTH_INTERVAL=4.5" in problems[0]


def test_a_deployment_is_found_from_its_folder_with_data_dir_and_with_the_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(home)
    made = byodb("init")
    assert made.exit_code == 0, made.stderr
    assert made.stdout.startswith("set up a new deployment: main database embedded "
                                  f"PostgreSQL in {home / 'byodb-data' / 'postgres'}")
    key = (home / "byodb-data" / "encryption.key").read_text()
    # This test's share keeps the embedded server up between the commands (each finds it
    # running and leaves it so); releasing it at the end stops it.
    share = PostgresCluster(home / "byodb-data" / "postgres").share()
    try:
        for command in OPERATOR_COMMANDS:
            if command == ["worker"]:
                continue  # it would serve until stopped (tests/test_cli_and_settings.py)
            expected = OUTCOME_ON_A_NEW_DEPLOYMENT.get(" ".join(command[:2]), (0, None))
            for where, args in (("folder", command),
                                ("--data-dir", ["--data-dir", str(home / "byodb-data"),
                                                *command])):
                if where == "--data-dir":
                    monkeypatch.chdir(elsewhere)
                result = byodb(*args)
                assert "no byodb deployment found" not in result.stderr, (where, command)
                assert result.exit_code == expected[0], (where, command, result.stderr)
                if expected[1]:
                    assert expected[1] in result.stderr, (where, command, result.stderr)
                monkeypatch.chdir(home)
        again = byodb("init", "--json")
        assert again.exit_code == 0 and json.loads(again.stdout)["created"] is False
        from_folder = byodb("status", "--json")
        assert from_folder.exit_code == 0, from_folder.stderr
        assert json.loads(from_folder.stdout)["main"]["ready"] is True
        monkeypatch.chdir(elsewhere)
        by_option = byodb("--data-dir", str(home / "byodb-data"), "instances", "list",
                          "--json")
        assert by_option.exit_code == 0, by_option.stderr
        assert json.loads(by_option.stdout) == {"instances": [], "count": 0}
        by_variable = byodb("migrations", "status", "--json",
                            env={"BYODB_DATA_DIR": str(home / "byodb-data")})
        assert by_variable.exit_code == 0, by_variable.stderr
        assert len(json.loads(by_variable.stdout)["runs"]) == 4  # the migrate-alls above
        token = byodb("--data-dir", str(home / "byodb-data"), "token", "alice")
        assert token.exit_code == 0 and token.stdout.count(".") == 2
        assert _tree(elsewhere) == []  # nothing was made where the commands ran
        assert (home / "byodb-data" / "encryption.key").read_text() == key  # one key
    finally:
        share.release()
        PostgresCluster(home / "byodb-data" / "postgres").stop("immediate")


async def _save_credentials(main_url: str, key: str, user_id: str, url: str, *,
                            connected: bool = False) -> None:
    engine = create_async_engine(async_url(main_url))
    try:
        await config_store.save_credentials(engine, Vault(KeyRing.from_hex(key)), user_id,
                                            parse_database_url(url), Secret(url))
        if connected:
            await config_store.update_state(engine, user_id,
                                            deployment=DeploymentStatus.deploying)
            await config_store.update_state(
                engine, user_id, deployment=DeploymentStatus.deployed,
                connection=ConnectionStatus.connected, content_placement="user",
                schema_version=2)
    finally:
        await engine.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_key_that_does_not_open_the_deployment_is_refused_and_no_second_key_is_written(
        tmp_path: Path, main_url: str) -> None:
    first, other = generate_key_hex(), generate_key_hex()
    asyncio.run(_save_credentials(main_url, first, "ann",
                                  "postgresql://ann:pw@127.0.0.1:1/app"))
    data = tmp_path / "data"
    deployment = {"BYODB_DATABASE_URL": main_url, "BYODB_DATA_DIR": str(data)}

    wrong = byodb("instances", "list", env={**deployment, "BYOD_ENCRYPTION_KEY": other})
    assert wrong.exit_code == 2
    assert wrong.stderr.startswith("error: BYOD_ENCRYPTION_KEY (key id ")
    assert "does not open this deployment's stored credentials" in wrong.stderr

    # Development without a key file: serve refuses rather than generate a second key.
    served = byodb("serve", "--port", str(_free_port()), env=deployment)
    assert served.exit_code == 2
    assert "stored credentials were encrypted with key id(s)" in served.stderr
    assert not (data / "encryption.key").exists()

    right = byodb("instances", "list", "--json",
                  env={**deployment, "BYOD_ENCRYPTION_KEY": first})
    assert right.exit_code == 0, right.stderr
    assert [i["user_id"] for i in json.loads(right.stdout)["instances"]] == ["ann"]
    # After a rotation the old key opens nothing new but is still needed: in the ring, fine.
    both = byodb("status", "--json", env={**deployment, "BYOD_ENCRYPTION_KEY": other,
                                          "BYOD_PREVIOUS_ENCRYPTION_KEYS": first})
    assert both.exit_code == 0, both.stderr


def test_export_of_an_unknown_or_unreadable_user_says_so_to_the_operator_and_writes_nothing(
        tmp_path: Path, main_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    key = generate_key_hex()
    asyncio.run(_save_credentials(main_url, key, "dora",
                                  "postgresql://dora:pw@127.0.0.1:1/app", connected=True))
    monkeypatch.chdir(tmp_path)
    env = {"BYODB_DATABASE_URL": main_url, "BYODB_DATA_DIR": str(tmp_path / "data"),
           "BYOD_ENCRYPTION_KEY": key, "BYODB_ALLOW_PRIVATE_HOSTS": "1",
           "BYODB_CONNECT_TIMEOUT": "2"}
    typo = byodb("export", "nosuchuser", "--out", "f.zip", env=env)
    assert typo.exit_code == 2
    assert typo.stderr.startswith("error: no user 'nosuchuser' on this deployment")
    down = byodb("export", "dora", "--out", "f.zip", env=env)
    assert down.exit_code == 1
    assert "Settings" not in down.stderr  # the end user's words are not the operator's
    assert "`byodb instances check dora`" in down.stderr
    assert "error: cannot read the content of user 'dora'" in down.stderr
    assert _tree(tmp_path) == []  # no archive, no partial one, no data dir


@pytest.fixture(scope="module")
def template(user_server: PostgresCluster) -> str:
    return v1_template(user_server)


def _catalog(url: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("select table_name, column_name, data_type from "
                            "information_schema.columns where table_schema = 'byodb' "
                            "order by 1, 2").fetchall()
    return [(str(a), str(b), str(c)) for a, b, c in rows]


def test_runs_report_and_listings_put_tables_and_json_on_stdout(
        settings: Settings, main_url: str, user_server: PostgresCluster,
        template: str) -> None:
    long_user = "a-rather-long-user-id-from-an-identity-provider-0123456789"

    async def fleet() -> dict[str, str]:
        runtime = build_runtime(settings, main_url)
        try:
            return {user: await connected_at_v1(runtime.main, runtime.vault, user_server,
                                                user) for user in (long_user, "bo")}
        finally:
            await runtime.close()

    urls = asyncio.run(fleet())
    env: dict[str, str | None] = {
        "BYODB_DATABASE_URL": main_url, "BYODB_DATA_DIR": str(settings.data_dir),
        "BYODB_ALLOW_PRIVATE_HOSTS": "1", "BYODB_AUTO_MIGRATE": "0"}
    before = {user: _catalog(url) for user, url in urls.items()}

    rehearsal = byodb("migrate-all", "--dry-run", env=env)
    assert rehearsal.exit_code == 0, rehearsal.stderr
    said = [line for line in (rehearsal.stdout + rehearsal.stderr).splitlines()
            if line.strip()]
    assert said and all("dry run" in line for line in said), said
    summary = rehearsal.stdout.strip().splitlines()[-1]
    assert summary.startswith("dry run: nothing was changed; 2 would migrate to v2, "
                              "0 already current (skipped), 0 would fail, 0 pending, in ")
    assert {user: _catalog(url) for user, url in urls.items()} == before
    assert all(meta_version(url) == 1 for url in urls.values())
    assert main_version(main_url, "bo") == 1

    real = byodb("migrate-all", env=env)
    assert real.exit_code == 0, real.stderr
    assert "dry run" not in real.stdout + real.stderr
    assert real.stdout.strip().splitlines()[-1].startswith(
        "migrated 2 to v2, 0 already current (skipped), 0 failed, 0 pending, in ")
    assert all(meta_version(url) == 2 for url in urls.values())

    # Tables on stdout (a reader gets them), within 80 columns, the key column whole.
    runs = byodb("migrations", "status", env=env)
    assert runs.exit_code == 0, runs.stderr
    assert all(len(line) <= 80 for line in runs.stdout.splitlines()), runs.stdout
    header = runs.stdout.splitlines()[0].split()
    assert header[:3] == ["run", "to", "status"] and "started" in header
    assert "(dry run)" in runs.stdout and runs.stdout.count(" v2 ") >= 2
    listed = byodb("instances", "list", env=env)
    assert listed.exit_code == 0, listed.stderr
    assert all(len(line) <= 80 for line in listed.stdout.splitlines()), listed.stdout
    assert any(line.startswith(long_user + " ") for line in listed.stdout.splitlines())
    assert "connected" in listed.stdout and listed.stdout.strip().endswith("2 instance(s)")

    for command in (["migrations", "status"], ["instances", "list"], ["status"],
                    ["instances", "show", "bo"], ["instances", "check", "bo"],
                    ["health-check"]):
        result = byodb(*command, "--json", env=env)
        assert result.exit_code == 0, (command, result.stderr)
        json.loads(result.stdout)  # the whole of stdout is the JSON document

    swept = byodb("health-check", env=env)
    assert swept.exit_code == 0, swept.stderr
    assert swept.stdout.strip().splitlines()[-1].startswith(
        "health check: checked 2 (2 healthy, 0 recovered), 0 skipped (resting), 0 failed "
        "(0 newly down), in ")


async def test_a_health_interval_of_5_seconds_sweeps_every_5_seconds_until_the_worker_stops(
        tmp_path: Path, main_url: str) -> None:
    """The schedule ticks once a minute; the tick's job starts each sweep of its minute when
    it is due, so BYODB_HEALTH_INTERVAL=5 means every 5 s (it meant once a minute)."""
    settings = Settings(BYODB_DATA_DIR=tmp_path, BYODB_HEALTH_INTERVAL=5)
    runtime = build_runtime(settings, main_url)
    context = cast(procrastinate.JobContext,
                   SimpleNamespace(additional_context={"health": runtime.health}))
    try:
        tick = int(time.time()) - 45  # this tick's minute ends in about 15 s
        await scheduled_sweep(context, tick)
        with psycopg.connect(main_url) as conn:
            starts = [row[0].timestamp() for row in conn.execute(
                "select started_at from health_sweeps order by started_at")]
        assert len(starts) >= 2, starts  # once a minute before
        assert all(later - earlier >= 4.9 for earlier, later in pairwise(starts)), starts

        # A worker stopping ends a tick that waits for its next sweep: no minute-long wait.
        tick = int(time.time()) - 20
        stopping = asyncio.get_running_loop().call_later(1, runtime.health.stopping.set)
        await scheduled_sweep(context, tick)
        stopping.cancel()
        assert runtime.health.stopping.is_set() and time.time() < tick + 60
    finally:
        await runtime.close()


@pytest.mark.parametrize("args", [["--help"], ["worker", "--help"], ["schema", "sql", "--help"],
                                  ["migrate-all", "--help"]])
def test_help_shows_no_type_on_flags_and_no_literal_double_backticks(
        args: list[str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["byodb", *args])
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as done:
        main()
    shown = capsys.readouterr().out
    assert done.value.code == 0 and "--help" in shown
    assert "<bool>" not in shown and "``" not in shown
