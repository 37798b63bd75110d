"""One definition of "on their own (deployed) database" for Python and SQL, and the fleet's
state machines as data: what the fleet plans from main and what a worker decides for one
record follow the same rule, and a record or run never takes a transition its table lacks."""

from __future__ import annotations

from itertools import product

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from byodb.errors import Conflict
from byodb.instances.fleet import runs as fleet_runs
from byodb.instances.fleet.states import (
    RecordStatus,
    RunStatus,
    check_record_transition,
    check_run_transition,
    rejoinable,
)
from byodb.instances.lifecycle.config_store import DatabaseConfig
from byodb.instances.lifecycle.own_database import (
    HOLDS_OWN_DATABASE,
    ON_OWN_DEPLOYED_DATABASE,
    holds_own_database,
    on_own_deployed_database,
)
from byodb.instances.lifecycle.states import ConnectionStatus, DeploymentStatus, Placement
from byodb.maindb.tables import user_database_config as udc
from byodb.maindb.tables import users
from byodb.maindb.urls import async_url


async def test_python_and_sql_agree_on_who_is_on_their_own_database(main_url: str) -> None:
    """Every combination of states a row can hold: the clause the fleet and the sweep query
    with selects exactly the rows the predicate a worker and the flags use accepts — and
    the fleet's plan counts those rows, at their versions, and no other."""
    engine = create_async_engine(async_url(main_url))
    rows = [{"user_id": f"u{n}", "connection_status": c.value, "deployment_status": d.value,
             "content_placement": p.value, "schema_version": v}
            for n, (c, d, p, v) in enumerate(product(ConnectionStatus, DeploymentStatus,
                                                     Placement, (None, 1, 2)))]
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(users), [{"id": r["user_id"]} for r in rows])
            await conn.execute(insert(udc), rows)
        async with engine.connect() as conn:
            configs = [DatabaseConfig.from_row(row)
                       for row in (await conn.execute(select(udc))).all()]
            for clause, predicate in ((ON_OWN_DEPLOYED_DATABASE, on_own_deployed_database),
                                      (HOLDS_OWN_DATABASE, holds_own_database)):
                in_sql = set((await conn.execute(
                    select(udc.c.user_id).where(clause))).scalars())
                in_python = {c.user_id for c in configs if predicate(c)}
                assert in_sql == in_python
                assert 0 < len(in_python) < len(configs)
        own = [c for c in configs if on_own_deployed_database(c)]
        # Deployed, content on their database, not left: connected, error, moving, pending.
        assert {c.connection_status for c in own} == {
            ConnectionStatus.connected, ConnectionStatus.error, ConnectionStatus.moving,
            ConnectionStatus.pending}
        assert all(c.deployment_status is DeploymentStatus.deployed
                   and c.content_placement is Placement.user for c in own)
        behind, current = await fleet_runs.count_behind(engine, 2)
        assert (behind, current) == (sum(c.schema_version == 1 for c in own),
                                     sum(c.schema_version == 2 for c in own))
    finally:
        await engine.dispose()


def test_records_and_runs_take_only_the_transitions_in_their_tables() -> None:
    check_record_transition(RecordStatus.running, RecordStatus.completed)
    check_record_transition(RecordStatus.failed, RecordStatus.pending)
    for current, target in ((RecordStatus.completed, RecordStatus.running),
                            (RecordStatus.failed, RecordStatus.completed),
                            (RecordStatus.pending, RecordStatus.failed)):
        with pytest.raises(Conflict):
            check_record_transition(current, target)
    check_run_transition(RunStatus.halted, RunStatus.running)
    with pytest.raises(Conflict):
        check_run_transition(RunStatus.halted, RunStatus.completed)
    # A run puts back to pending what no worker holds; a real run leaves completed alone.
    assert rejoinable(dry_run=False) == {RecordStatus.pending, RecordStatus.failed}
    assert rejoinable(dry_run=True) == {RecordStatus.pending, RecordStatus.failed,
                                        RecordStatus.completed}
