"""Moving one user's content between two databases holding the content schema.

Copy (COPY into a staging table, then upsert by id, table by table in dependency order),
verify (every source row is on the target with the same row hash), and only then delete
the source rows. Each phase is idempotent, so a move interrupted at any point is resumed by
running it again: nothing is lost and nothing is duplicated (ids are kept across databases).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Connection, Table, text

from byodb.content import CONTENT_SCHEMA, content_table_names
from byodb.content.tables import metadata
from byodb.errors import ByodbError

Progress = Callable[[str], None]
_SESSION = ("set local timezone = 'UTC'", "set local datestyle = 'ISO, MDY'",
            "set local extra_float_digits = 3", "set local intervalstyle = 'postgres'")


class MoveVerificationError(ByodbError):
    code = "move_verification_failed"


@dataclass
class MoveReport:
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def content_tables() -> list[Table]:
    """Every content table, parents before children."""
    return [metadata.tables[f"{CONTENT_SCHEMA}.{name}"] for name in content_table_names()]


def _stored_columns(table: Table) -> list[str]:
    return [c.name for c in table.columns if c.computed is None]


def _qualified(table: Table) -> str:
    return f"{CONTENT_SCHEMA}.{table.name}"


def set_comparable_session(conn: Connection) -> None:
    """Session settings under which row text is identical on any server (in a transaction)."""
    for statement in _SESSION:
        conn.exec_driver_sql(statement)


def copy_user_rows(source: Connection, target: Connection, user_id: str,
                   progress: Progress | None = None) -> MoveReport:
    """Upsert every row of ``user_id`` from source into target, in one target transaction."""
    report = MoveReport()
    with source.begin(), target.begin():
        set_comparable_session(source)
        set_comparable_session(target)
        src = source.connection.driver_connection
        dst = target.connection.driver_connection
        assert src is not None and dst is not None
        for table in content_tables():
            if progress:
                progress(f"Copying {table.name}")
            columns = _stored_columns(table)
            column_list = ", ".join(f'"{c}"' for c in columns)
            staging = f"byodb_move_{table.name}"
            target.exec_driver_sql(
                f"create temp table {staging} (like {_qualified(table)} including defaults) "
                "on commit drop")
            copied = 0
            with src.cursor().copy(
                f"copy (select {column_list} from {_qualified(table)} where user_id = %s) "
                "to stdout", (user_id,)) as out, dst.cursor().copy(
                f"copy {staging} ({column_list}) from stdin") as into:
                for block in out:
                    into.write(block)
            updates = ", ".join(f'"{c}" = excluded."{c}"' for c in columns if c != "id")
            copied = target.exec_driver_sql(
                f"insert into {_qualified(table)} ({column_list}) "
                f"select {column_list} from {staging} "
                f"on conflict (id) do update set {updates}").rowcount
            report.rows[table.name] = copied
    return report


def row_hashes(conn: Connection, table: Table, user_id: str) -> dict[str, str]:
    """id → hash of every stored column, for the user's rows of ``table``."""
    columns = ", ".join(f't."{c}"' for c in _stored_columns(table))
    rows = conn.execute(
        text(f"select t.id::text, md5(row({columns})::text) from {_qualified(table)} t "
             "where t.user_id = :u"), {"u": user_id}).all()
    return {row[0]: row[1] for row in rows}


def _verify_in_transaction(source: Connection, target: Connection, user_id: str) -> None:
    set_comparable_session(source)
    set_comparable_session(target)
    for table in content_tables():
        expected = row_hashes(source, table, user_id)
        if not expected:
            continue
        found = row_hashes(target, table, user_id)
        missing = [i for i, digest in expected.items() if found.get(i) != digest]
        if missing:
            raise MoveVerificationError(
                f"{len(missing)} of {len(expected)} rows of {table.name} did not arrive "
                "intact; nothing was deleted")


def _delete_in_transaction(conn: Connection, user_id: str) -> int:
    deleted = 0
    for table in reversed(content_tables()):
        deleted += conn.execute(
            text(f"delete from {_qualified(table)} where user_id = :u"), {"u": user_id}
        ).rowcount
    return deleted


def verify_user_rows(source: Connection, target: Connection, user_id: str) -> None:
    """Raise unless every source row is on the target, identical (per-row hashes)."""
    with source.begin(), target.begin():
        _verify_in_transaction(source, target, user_id)


def delete_user_rows(conn: Connection, user_id: str) -> int:
    """Delete every content row of ``user_id`` (children first), in one transaction."""
    with conn.begin():
        return _delete_in_transaction(conn, user_id)


def move_user_content(source: Connection, target: Connection, user_id: str,
                      progress: Progress | None = None, *,
                      lock_source_tables: bool = False) -> MoveReport:
    """Copy, verify, then delete the source rows. Safe to re-run after any interruption.

    Verify and delete run in one source transaction, so no row can be written between the
    check and the delete: on main the caller holds the user's advisory lock (which main's
    content writes respect); on a user's own database ``lock_source_tables`` takes the
    content tables in EXCLUSIVE mode (reads go on, writes wait) for that short transaction.
    """
    report = copy_user_rows(source, target, user_id, progress)
    if progress:
        progress("Verifying copied rows and removing them from the source")
    with source.begin(), target.begin():
        if lock_source_tables:
            names = ", ".join(_qualified(t) for t in content_tables())
            source.exec_driver_sql(f"lock table {names} in exclusive mode")
        _verify_in_transaction(source, target, user_id)
        _delete_in_transaction(source, user_id)
    return report
