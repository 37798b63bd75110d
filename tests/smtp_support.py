"""A real SMTP server on 127.0.0.1 for alert tests (aiosmtpd in its own thread): it keeps
every message it accepts, can refuse mail (all of it, or the messages holding some bytes),
and can require a user name and password."""

from __future__ import annotations

import email
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Inbox:
    """The aiosmtpd handler: accepted messages, and a switch to refuse every message."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.raw: list[bytes] = []
        self.refused = 0
        self.refuse = False
        self.refuse_holding: bytes | None = None
        self.url = ""
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse or (self.refuse_holding is not None
                           and self.refuse_holding in envelope.content):
            self.refused += 1
            return "554 5.7.1 refused by the test server"
        with self._lock:
            self.raw.append(envelope.content)
            self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    @property
    def subjects(self) -> list[str]:
        with self._lock:
            return [str(m["Subject"]) for m in self.messages]

    def bodies(self) -> list[str]:
        with self._lock:
            return [m.get_payload(decode=True).decode()  # type: ignore[union-attr]
                    for m in self.messages]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def smtp_inbox(*, user: str | None = None, password: str | None = None) -> Iterator[Inbox]:
    """An SMTP server on a free loopback port; ``inbox.url`` is its ``smtp://`` URL."""
    inbox = Inbox()
    port = _free_port()
    options: dict[str, Any] = {}
    if user is not None:
        def authenticate(server: Any, session: Any, envelope: Any, mechanism: str,
                         auth_data: Any) -> AuthResult:
            ok = isinstance(auth_data, LoginPassword) and \
                auth_data.login.decode() == user and auth_data.password.decode() == password
            return AuthResult(success=ok)

        options = {"authenticator": authenticate, "auth_require_tls": False,
                   "auth_required": True}
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    credentials = f"{user}:{password}@" if user is not None else ""
    inbox.url = f"smtp://{credentials}127.0.0.1:{port}"
    try:
        yield inbox
    finally:
        controller.stop()
