"""The main database's Alembic migrations create exactly the tables the code describes: a
column or index added to ``maindb/tables.py`` without a revision fails here, not in
production."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from byodb.maindb.tables import metadata


def _ours(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    # The job queue's tables (procrastinate) and the content schema live on main too.
    return not (type_ == "table" and reflected and compare_to is None)


def test_migrations_match_the_table_definitions(main_url: str) -> None:
    engine = sa.create_engine(main_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"include_object": _ours})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()
