"""The operator's health commands, run on the app's main database as an operator runs them
(in-process, tests/cli_support.py): one sweep with a JSON summary, the status overview, and the
instances list/show/check — redacted, with clear errors for bad input."""

from __future__ import annotations

from byodb.maindb.embedded import PostgresCluster
from byodb.settings import Settings
from byodb.vault.keys import load_key_ring
from tests.cli_support import CliResult, arun_cli
from tests.conftest import Api, count_rows
from tests.providers import provider_database


async def byodb(settings: Settings, main_url: str, *args: str) -> CliResult:
    env = {"BYODB_DATABASE_URL": main_url,
           "BYODB_DATA_DIR": str(settings.data_dir), "BYODB_ALLOW_PRIVATE_HOSTS": "true",
           "BYODB_HEALTH_TIMEOUT": "2", "COLUMNS": "200"}
    return await arun_cli(*args, env=env)


async def test_operator_commands_show_the_fleet_redacted(
        api: Api, settings: Settings, main_url: str, user_server: PostgresCluster,
        own_server: PostgresCluster) -> None:
    ivy_db, jon_db = provider_database(user_server), provider_database(own_server)
    await api.put("/api/byod", "ivy", json={"url": ivy_db.url})
    await api.put("/api/byod", "jon", json={"url": jon_db.url})
    for user in ("ivy", "jon"):
        assert (await api.wait_for_state(user, "connected", "error"))["connection_status"] \
            == "connected"
        await api.settle_reembedding(user)
    await api.worker_swept_once()  # the sweeps counted below are the operator's
    own_server.stop("immediate")
    outputs: list[str] = []

    swept = await byodb(settings, main_url, "health-check", "--json")
    outputs += [swept.stdout, swept.stderr]
    assert swept.exit_code == 1, swept.stderr  # one database failed its check
    summary = swept.last_json()
    assert set(summary) == {"checked", "healthy", "failed", "recovered", "seconds"}
    assert (summary["checked"], summary["healthy"], summary["failed"]) == (2, 1, 1)
    assert count_rows(main_url, "select count(*) from health_sweeps where trigger = "
                      "'operator' and finished_at is not null") == 1

    shown = await byodb(settings, main_url, "status", "--json")
    outputs += [shown.stdout, shown.stderr]
    assert shown.exit_code == 0, shown.stderr
    status = shown.last_json()
    assert status["main"] == {"ready": True, "reason": None}
    assert status["instances"]["by_status"] == {"connected": 2}  # one failure: not yet error
    assert status["last_sweep"]["checked"] == 2
    assert status["workers"], "the app's inline workers beat on main"
    assert isinstance(status["queue_depth"], dict)
    readable = await byodb(settings, main_url, "status")
    outputs += [readable.stdout, readable.stderr]
    assert "main database: ready (reachable, at head)" in readable.stdout
    assert "instances: connected 2" in readable.stdout
    assert "last sweep:" in readable.stdout and "2 checked, 1 failed" in readable.stdout

    listed = (await byodb(settings, main_url, "instances", "list", "--json")).last_json()
    assert sorted(i["user_id"] for i in listed["instances"]) == ["ivy", "jon"]
    jon = next(i for i in listed["instances"] if i["user_id"] == "jon")
    assert jon["health_error_code"] == "unreachable" and jon["consecutive_failures"] == 1

    checked = await byodb(settings, main_url, "instances", "check", "jon", "--json")
    outputs += [checked.stdout, checked.stderr]
    assert checked.exit_code == 1
    outcome = checked.last_json()
    assert (outcome["code"], outcome["transition"], outcome["connection_status"]) == \
        ("unreachable", "down", "error")
    errors = (await byodb(settings, main_url, "instances", "list", "--status", "error",
                               "--json")).last_json()
    assert [i["user_id"] for i in errors["instances"]] == ["jon"]

    human = await byodb(settings, main_url, "instances", "show", "jon")
    outputs += [human.stdout, human.stderr]
    assert human.exit_code == 0 and "****@127.0.0.1" in human.stdout
    table = await byodb(settings, main_url, "instances", "list")
    outputs += [table.stdout, table.stderr]
    assert "jon" in table.stdout and "2 instance(s)" in table.stdout  # the table: stdout
    again = await byodb(settings, main_url, "health-check")
    outputs += [again.stdout, again.stderr]
    assert again.exit_code == 1
    assert "checked 2 (1 healthy, 0 recovered), 0 skipped (resting), 1 failed (" \
        in again.stdout
    for text in outputs:
        assert ivy_db.password not in text and jon_db.password not in text


async def test_bad_operator_input_gets_a_clear_error_and_changes_nothing(
        settings: Settings, main_url: str) -> None:
    load_key_ring(settings)  # the deployment's development key, as `byodb serve` makes it
    before = count_rows(main_url, "select count(*) from user_database_config")
    bogus = await byodb(settings, main_url, "instances", "list", "--status", "bogus")
    assert bogus.exit_code == 2
    assert "unknown status 'bogus'" in bogus.stderr
    nobody = await byodb(settings, main_url, "instances", "show", "nobody")
    assert nobody.exit_code == 1 and "no database is configured" in nobody.stderr
    unchecked = await byodb(settings, main_url, "instances", "check", "nobody")
    assert unchecked.exit_code == 1 and "no connected or failing database" in \
        unchecked.stderr
    assert count_rows(main_url, "select count(*) from user_database_config") == before
    assert count_rows(main_url, "select count(*) from health_sweeps") == 0
