"""``byodb serve``: the web app on a port, the main database set up on first start. The
only command that imports the web stack (FastAPI, uvicorn, the app)."""

from __future__ import annotations

import errno
import logging
import signal
import socket
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from rich.markup import escape
from rich.panel import Panel

from byodb.cli.common import checked_settings, err, exit_on_sigterm, fail, start_main
from byodb.maindb.migrate import upgrade_main
from byodb.settings import Settings
from byodb.web.app import create_app
from byodb.web.auth import ensure_dev_secret

commands = typer.Typer()

# The banner's text lines are at most this long: with the panel's border and padding
# (4 columns) it fits an 80-column terminal, so Rich never has to wrap a sentence.
_BANNER_WIDTH = 76


def _development_banner_lines(data_dir: Path) -> list[str]:
    """The development banner, one sentence a line (each ≤ _BANNER_WIDTH when it can be)."""
    keys = f"Tokens and the encryption key are generated and kept in {data_dir}/."
    if len(keys) > _BANNER_WIDTH:  # a long data dir gets a line of its own
        keys = f"Tokens and the encryption key are generated and kept in\n  {data_dir}/."
    return [
        "Anyone can sign in as any user.",
        keys,
        "Private and loopback database hosts are allowed.",
        "For real use: BYODB_ENV=production, BYOD_ENCRYPTION_KEY and a JWT issuer.",
    ]


def _announce_environment(settings: Settings) -> None:
    if settings.is_production:
        err.print("[bold]byodb[/] production mode")
        return
    body = "\n".join(escape(line) for line in _development_banner_lines(settings.data_dir))
    err.print(Panel.fit(f"[bold yellow]DEVELOPMENT MODE[/]\n{body}", border_style="yellow"))


def _hold_port(host: str, port: int) -> socket.socket:
    """Bind and listen on host:port now, before anything starts, and keep the socket for
    uvicorn: a taken port is one line and exit 2, and nobody can take it meanwhile."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.set_inheritable(False)
    except OSError as exc:
        sock.close()
        another = f"pick another with --port (e.g. --port {port + 1})" if port < 65535 \
            else "pick another with --port"
        if exc.errno == errno.EADDRINUSE:
            fail(f"port {port} on {host} is already in use; {another}")
        if exc.errno == errno.EACCES:
            fail(f"not allowed to listen on port {port} on {host}; {another}")
        fail(f"cannot listen on {host}:{port} ({exc.strerror or exc}); "
             f"check --host, or {another}")
    return sock


@commands.command()
def serve(host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000) -> None:
    """Run the app (main database embedded unless BYODB_DATABASE_URL is set); sets the
    deployment up on first start."""

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = checked_settings()
    _announce_environment(settings)
    # Before the slow part: a taken port is reported at once, with nothing started, and
    # the port is ours from here on.
    sock = _hold_port(host, port)
    try:
        url, share = start_main(settings, create=True)
    except BaseException:
        sock.close()
        raise
    try:
        if share is not None:
            how = ("started by this process" if share.started
                   else "already running; shared with the byodb processes using it")
            err.print(f"main database: embedded PostgreSQL in {escape(str(share.cluster.root))} "
                      f"({how})", soft_wrap=True)
        upgrade_main(url)
        ensure_dev_secret(settings)
        # uvicorn shuts down gracefully on SIGTERM, then re-raises it; with this handler in
        # place that ends in SystemExit, so this process's share of the embedded server is
        # released too (which stops it only if no other byodb process uses it).
        signal.signal(signal.SIGTERM, exit_on_sigterm)
        config = uvicorn.Config(create_app(settings, main_url=url, migrate=False),
                                host=host, port=port, log_level="info", proxy_headers=False,
                                access_log=False)  # ours (web/access_log.py) leaves queries out
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        if share is not None and not share.release():
            err.print("embedded PostgreSQL left running: another byodb process uses it")
