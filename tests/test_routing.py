"""Table placement is complete and strict: an unknown table is an error, never main."""

from __future__ import annotations

import pytest

from byodb.content import content_table_names
from byodb.errors import UnknownTable
from byodb.maindb.tables import metadata as main_metadata
from byodb.routing.placement import TABLE_PLACEMENT, Placement, placement_of
from tests.conftest import Api


def test_every_content_table_is_placed_on_the_user_database() -> None:
    assert {t for t, p in TABLE_PLACEMENT.items() if p is Placement.user} == \
        set(content_table_names())


def test_every_main_table_is_placed_on_main() -> None:
    assert {t for t, p in TABLE_PLACEMENT.items() if p is Placement.main} == \
        set(main_metadata.tables)


@pytest.mark.parametrize("name", ["conversation", "Messages", "byodb_meta", ""])
def test_unknown_table_is_an_error(name: str) -> None:
    with pytest.raises(UnknownTable):
        placement_of(name)


async def test_router_refuses_unknown_table(api: Api) -> None:
    router = api.app.state.runtime.router
    with pytest.raises(UnknownTable):
        async with router.connect("zed", "not_a_table"):
            pass


async def test_warm_route_needs_no_main_lookup(api: Api, user_db_url: str) -> None:
    await api.put("/api/byod", "quinn", json={"url": user_db_url})
    await api.wait_for_state("quinn", "connected", "error")
    router = api.app.state.runtime.router
    async with router.connect("quinn", "conversations"):
        pass
    # With main unreachable, a warm route still reaches the user's database.
    main = router.main
    router.main = None
    try:
        async with router.connect("quinn", "conversations") as conn:
            from sqlalchemy import text

            assert (await conn.execute(text("select count(*) from byodb.conversations"))
                    ).scalar() == 0
    finally:
        router.main = main
