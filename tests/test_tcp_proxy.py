"""The freezing TCP proxy used by the stuck-database tests does what it promises."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import psycopg
import pytest

from byodb.maindb.embedded import PostgresCluster
from tests.tcp_proxy import FreezableProxy, replace_port


@pytest.fixture
def echo_server() -> Iterator[int]:
    """A tiny echo server on loopback; yields its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    stop = threading.Event()
    clients: list[socket.socket] = []

    def serve_one(conn: socket.socket) -> None:
        with conn:
            while not stop.is_set():
                try:
                    data = conn.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(0.2)
            clients.append(conn)
            threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.settimeout(5)
    return sock


def _closed_by_peer(sock: socket.socket) -> bool:
    """The other side closed the connection (FIN or RST), within 5 s."""
    sock.settimeout(5)
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


def _echo(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    received = b""
    while len(received) < len(payload):
        chunk = sock.recv(4096)
        if not chunk:
            break
        received += chunk
    return received


def test_forwards_freezes_and_thaws(echo_server: int) -> None:
    with FreezableProxy("127.0.0.1", echo_server) as proxy:
        assert proxy.port and proxy.port != echo_server
        before = _connect(proxy.port)
        assert _echo(before, b"hello") == b"hello"

        proxy.freeze()
        assert proxy.frozen
        # Existing connection: the bytes go nowhere, nothing comes back, nothing is closed.
        before.sendall(b"anyone?")
        before.settimeout(0.7)
        with pytest.raises(TimeoutError):
            before.recv(100)
        # New connection: accepted (no refusal, no reset), but nothing is forwarded.
        during = _connect(proxy.port)
        during.sendall(b"ping")
        during.settimeout(0.7)
        with pytest.raises(TimeoutError):
            during.recv(100)

        proxy.thaw()
        assert not proxy.frozen
        after = _connect(proxy.port)
        assert _echo(after, b"back") == b"back"
        # Connections from the frozen period were closed, never resumed half-way.
        for sock in (before, during):
            assert _closed_by_peer(sock)
            sock.close()
        after.close()
    # Closed: nothing listens any more.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=2).close()


def test_close_while_frozen_releases_every_socket(echo_server: int) -> None:
    proxy = FreezableProxy("127.0.0.1", echo_server).start()
    held = _connect(proxy.port)
    assert _echo(held, b"x") == b"x"
    proxy.freeze()
    black_holed = _connect(proxy.port)
    proxy.close()
    for sock in (held, black_holed):
        assert _closed_by_peer(sock)
        sock.close()
    proxy.close()  # idempotent


def test_refuses_non_loopback_targets() -> None:
    with pytest.raises(ValueError):
        FreezableProxy("192.0.2.1", 5432)
    with pytest.raises(ValueError):
        FreezableProxy("8.8.8.8", 5432)


def test_database_url_through_the_proxy(user_server: PostgresCluster) -> None:
    url = user_server.url("postgres")
    assert replace_port(url, 1234).endswith("@127.0.0.1:1234/postgres")
    with FreezableProxy.for_url(url) as proxy:
        proxied = proxy.url_for(url)
        assert proxied == replace_port(url, proxy.port)
        with psycopg.connect(proxied, connect_timeout=5) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        proxy.freeze()
        with pytest.raises(psycopg.OperationalError):
            # libpq's connect_timeout fires: the server never answers through a frozen proxy.
            psycopg.connect(proxied, connect_timeout=2)
        proxy.thaw()
        with psycopg.connect(proxied, connect_timeout=5) as conn:
            assert conn.execute("select 2").fetchone() == (2,)


def test_freeze_after_a_number_of_bytes(echo_server: int) -> None:
    with FreezableProxy("127.0.0.1", echo_server) as proxy:
        sock = _connect(proxy.port)
        assert _echo(sock, b"warm") == b"warm"
        proxy.freeze_after(upstream_bytes=10)
        assert _echo(sock, b"12345") == b"12345"  # 5 of 10: still forwarded
        assert not proxy.frozen
        sock.sendall(b"123456")  # would pass 10: held, and the proxy is frozen from here
        sock.settimeout(0.7)
        with pytest.raises(TimeoutError):
            sock.recv(100)
        assert proxy.frozen
        assert proxy.bytes_up == len(b"warm12345")
        sock.close()
