"""Debian's PgBouncer in front of a test server, with its default settings except: listen on
a free 127.0.0.1 port, the pool mode asked for, SCRAM auth from an auth file (verifiers
copied from ``pg_authid``), and optionally client-side TLS with a test CA's certificate.

PgBouncer refuses to run as root: as root it runs as ``nobody``/``nogroup`` with its files in
a directory of that user. Like Neon's and Supabase's poolers it refuses the ``options``
startup parameter (``ignore_startup_parameters`` is left empty) and, in transaction mode, has
no support for prepared statements (1.18).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import psycopg

from tests.providers import ProviderDatabase
from tests.tls import CertificateAuthority

PoolMode = Literal["transaction", "session"]
PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
_RUN_AS = ("nobody", "nogroup")
_START_TIMEOUT_S = 15.0
_RELOAD_TIMEOUT_S = 15.0


def pgbouncer_available() -> bool:
    return Path(PGBOUNCER).is_file() and os.access(PGBOUNCER, os.X_OK)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _quote(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


@dataclass
class PgBouncer:
    """One running PgBouncer; :meth:`add` lets a provider database's owner in."""

    server_port: int
    pool_mode: PoolMode
    tls: CertificateAuthority | None = None
    client_tls_sslmode: str = "allow"
    port: int = 0
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pgbouncer-")))
    _users: dict[str, str] = field(default_factory=dict)
    _process: subprocess.Popen[bytes] | None = None

    @property
    def _as_root(self) -> bool:
        return os.geteuid() == 0

    def _owner(self) -> tuple[int, int] | None:
        if not self._as_root:
            return None
        entry = pwd.getpwnam(_RUN_AS[0])
        return entry.pw_uid, entry.pw_gid

    def _write(self, name: str, text: str, mode: int = 0o600) -> Path:
        path = self.directory / name
        path.write_text(text)
        path.chmod(mode)
        owner = self._owner()
        if owner is not None:
            os.chown(path, *owner)
        return path

    def _write_auth_file(self) -> None:
        lines = [f"{_quote(user)} {_quote(secret)}\n" for user, secret in self._users.items()]
        self._write("userlist.txt", "".join(lines))

    def _config(self) -> str:
        settings = {
            "listen_addr": "127.0.0.1",
            "listen_port": str(self.port),
            "unix_socket_dir": "",
            "auth_type": "scram-sha-256",
            "auth_file": str(self.directory / "userlist.txt"),
            "pool_mode": self.pool_mode,
            "logfile": str(self.directory / "pgbouncer.log"),
            "pidfile": "",
        }
        if self.tls is not None:
            cert, key = self.tls.write_server_files(self.directory, owner=self._owner())
            settings |= {"client_tls_sslmode": self.client_tls_sslmode,
                         "client_tls_cert_file": str(cert), "client_tls_key_file": str(key)}
        body = "".join(f"{name} = {value}\n" for name, value in settings.items())
        return (f"[databases]\n* = host=127.0.0.1 port={self.server_port}\n\n"
                f"[pgbouncer]\n{body}")

    def start(self) -> PgBouncer:
        self.directory.chmod(0o755)
        owner = self._owner()
        if owner is not None:
            os.chown(self.directory, *owner)
        self.port = self.port or _free_port()
        self._write_auth_file()
        self._write("pgbouncer.log", "", 0o644)
        config = self._write("pgbouncer.ini", self._config(), 0o644)
        kwargs: dict[str, object] = {}
        if self._as_root:
            kwargs = {"user": _RUN_AS[0], "group": _RUN_AS[1], "extra_groups": []}
        self._process = subprocess.Popen(
            [PGBOUNCER, str(config)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, cwd=self.directory, **kwargs)  # type: ignore[call-overload]
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited at start: {self.log()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=1):
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"pgbouncer did not listen in time: {self.log()[-2000:]}")
            time.sleep(0.05)

    def log(self) -> str:
        path = self.directory / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def add(self, database: ProviderDatabase) -> str:
        """Let ``database``'s owner in (auth file + reload); the owner's URL through us."""
        self._users[database.owner] = database.scram_verifier()
        self._write_auth_file()
        assert self._process is not None
        self._process.send_signal(signal.SIGHUP)
        url = database.url_via(self.port, "sslmode=require" if self.tls else "sslmode=disable")
        deadline = time.monotonic() + _RELOAD_TIMEOUT_S
        while True:  # the reload is asynchronous: wait until the owner gets in
            try:
                with psycopg.connect(url, connect_timeout=5, prepare_threshold=None) as conn:
                    conn.execute("select 1")
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        return database.url_via(self.port)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def running_pgbouncer(server_port: int, pool_mode: PoolMode, *,
                      tls: CertificateAuthority | None = None,
                      client_tls_sslmode: str = "allow") -> Iterator[PgBouncer]:
    bouncer = PgBouncer(server_port, pool_mode, tls=tls, client_tls_sslmode=client_tls_sslmode)
    bouncer.start()
    try:
        yield bouncer
    finally:
        bouncer.stop()
