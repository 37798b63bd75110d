"""Which encryption keys main's stored credentials were sealed with (their key ids, read
from the ciphertexts' ``v1.<key_id>.…`` prefix), so a process can refuse a key that would
not open them before it serves anything (and never writes a second key beside the first)."""

from __future__ import annotations

import psycopg

from byodb.maindb.urls import libpq_url

_CONNECT_TIMEOUT_S = 10


def stored_key_ids(url: str) -> frozenset[str]:
    """The key ids of every credential stored on main (none before main is set up)."""
    with psycopg.connect(libpq_url(url), autocommit=True,
                         connect_timeout=_CONNECT_TIMEOUT_S) as conn:
        conn.execute("set statement_timeout = '30s'")
        ready = conn.execute("select to_regclass('user_database_config') is not null"
                             ).fetchone()
        if not (ready and ready[0]):
            return frozenset()
        rows = conn.execute(
            "select distinct split_part(c, '.', 2) from user_database_config, "
            "unnest(array[encrypted_url, previous_encrypted_url]) as c where c is not null"
        ).fetchall()
    return frozenset(str(row[0]) for row in rows if row[0])
