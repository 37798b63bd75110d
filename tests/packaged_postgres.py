"""PostgreSQL servers from packages other than the embedded wheel (PostgreSQL 18 +
pgvector), for the compatibility matrix:

- Debian's ``postgresql-15``: an older major version, built with SSL, without pgvector
  (bookworm packages none for it) — it proves TLS with ``ssl = on`` and a real
  ``pgvector_missing``;
- the ``pgserver`` wheel's PostgreSQL 16 with its pgvector — a third major version that
  goes the whole way.

Each is the suite's :class:`PostgresCluster` (same data directory layout, system user,
password file and URLs) run with that package's binaries.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from byodb.maindb.embedded import PostgresCluster
from tests.tls import CertificateAuthority

DEBIAN_PG15_BIN = Path("/usr/lib/postgresql/15/bin")
_SYSTEM_USER = "embedded_postgres"  # the user the embedded clusters run as (when root)


def debian_pg15_bin() -> Path | None:
    return DEBIAN_PG15_BIN if (DEBIAN_PG15_BIN / "postgres").is_file() else None


def pgserver_bin() -> Path | None:
    """The ``pgserver`` wheel's PostgreSQL binaries, when that wheel is installed."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "pginstall" / "bin"
    return path if (path / "postgres").is_file() else None


def require(binaries: Path | None, what: str) -> Path:
    """The binaries, or skip the test (fail it in CI, where scripts/setup installs them)."""
    if binaries is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{what} is missing (scripts/setup --test installs it)")
        pytest.skip(f"{what} is missing")
    return binaries


def _open_for_others(binaries: Path) -> None:
    """Let the unprivileged server user traverse to and run a package's binaries."""
    install = binaries.parent
    for parent in install.parents:
        parent.chmod(parent.stat().st_mode | stat.S_IXOTH)
    for item in [install, *install.rglob("*")]:
        mode = item.stat().st_mode
        want = mode | stat.S_IROTH
        if item.is_dir() or mode & stat.S_IXUSR:
            want |= stat.S_IXOTH
        if want != mode:
            item.chmod(want)


@dataclass
class PackagedPostgres(PostgresCluster):
    """A PostgresCluster run by the binaries in ``binaries``; ``tls`` turns ``ssl = on``
    with a test CA's server certificate, ``ssl_only`` makes the server refuse plain
    connections (``hostssl`` lines only, like RDS's ``rds.force_ssl = 1``)."""

    binaries: Path = field(default=DEBIAN_PG15_BIN)
    tls: CertificateAuthority | None = None
    ssl_only: bool = False

    def _run(self, binary: str, *args: str, timeout: float = 60) -> None:
        subprocess.run(  # fixed binary from a package, no shell
            [str(self.binaries / binary), *args],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout,
            user=_SYSTEM_USER if os.geteuid() == 0 else None)

    def initialise(self) -> None:
        fresh = not (self.pgdata / "PG_VERSION").exists()
        if fresh and os.geteuid() == 0 and not str(self.binaries).startswith("/usr/"):
            _open_for_others(self.binaries)
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
