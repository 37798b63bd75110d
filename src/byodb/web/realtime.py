"""Live updates of a user's content to their other open tabs (``BYOD_REALTIME``).

Bounded on purpose:

- **What travels**: which area changed and the id in the request path (``{"area":
  "conversations", "id": "…", "tab": "…"}``) — ids only, never content, so nothing of a
  user's content passes through main or the event stream. The tab then reloads what it shows
  through the normal API, which reads from wherever the content lives.
- **How it travels**: every successful write (POST, PUT, PATCH, DELETE under ``/api/<area>``,
  see :class:`ContentChangeAnnouncer`) sends ``NOTIFY byodb_content`` on main; every process
  LISTENs (:func:`listen_for_content_changes`) and hands the change to the streams of that
  user it holds (:class:`ChangeHub`), so replicas behind a load balancer reach each other's
  tabs. Always through main, also within one process: one path, tested as such.
- **How much**: at most ``MAX_STREAMS_PER_USER`` open streams per user (429 beyond), a queue
  of ``QUEUE_SIZE`` changes per stream; a tab that does not keep up gets one ``resync``
  instead of an ever-growing backlog.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import asdict, dataclass

import psycopg
from sqlalchemy import text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from byodb.errors import RateLimited
from byodb.maindb.urls import libpq_url

log = logging.getLogger(__name__)

CONTENT_CHANNEL = "byodb_content"
MAX_STREAMS_PER_USER = 8
QUEUE_SIZE = 64
TAB_HEADER = "x-byodb-tab"
# API areas whose writes are not the user's content (their own state, admin, the stream).
NOT_CONTENT = frozenset({"byod", "admin", "changes", "export", "import", "search"})
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MAX_USER_ID_CHARS = 255


@dataclass(frozen=True)
class ContentChange:
    """One change: whose, which area, which id (from the path, if any), which tab made it."""

    user_id: str
    area: str
    id: str | None = None
    tab: str | None = None

    def payload(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    def public(self) -> dict[str, str | None]:
        """What a stream sends (the user is implied by whose stream it is)."""
        return {"area": self.area, "id": self.id, "tab": self.tab}

    @classmethod
    def parse(cls, payload: str) -> ContentChange | None:
        """A change from a NOTIFY payload, or None when it is not one of ours."""
        try:
            data = json.loads(payload)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        user_id, area = data.get("user_id"), data.get("area")
        change_id, tab = data.get("id"), data.get("tab")
        if not (isinstance(user_id, str) and 0 < len(user_id) <= _MAX_USER_ID_CHARS
                and isinstance(area, str) and _TOKEN.fullmatch(area)):
            return None
        return cls(user_id, area, _token_or_none(change_id), _token_or_none(tab))


def _token_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and _TOKEN.fullmatch(value) else None


RESYNC = ContentChange(user_id="", area="*")
"""Put in a stream's queue when it overflowed: "reload everything you show"."""


class Subscription:
    """One open stream's queue; :meth:`close` (idempotent) gives its slot back."""

    def __init__(self, hub: ChangeHub, user_id: str, queue: asyncio.Queue[ContentChange]):
        self._hub = hub
        self.user_id = user_id
        self.queue = queue

    def close(self) -> None:
        self._hub._remove(self)


class ChangeHub:
    """The open change streams of this process, per user."""

    def __init__(self, *, per_user: int = MAX_STREAMS_PER_USER, queue_size: int = QUEUE_SIZE):
        self._per_user = per_user
        self._queue_size = queue_size
        self._streams: dict[str, set[asyncio.Queue[ContentChange]]] = {}

    def open(self, user_id: str) -> Subscription:
        """A new stream for ``user_id``, or 429 when they have too many open."""
        streams = self._streams.setdefault(user_id, set())
        if len(streams) >= self._per_user:
            raise RateLimited(f"at most {self._per_user} live-update streams can be open per "
                              "account", hint="Close some tabs, or reload this one later.")
        queue: asyncio.Queue[ContentChange] = asyncio.Queue(maxsize=self._queue_size)
        streams.add(queue)
        return Subscription(self, user_id, queue)

    def _remove(self, subscription: Subscription) -> None:
        streams = self._streams.get(subscription.user_id)
        if streams is None:
            return
        streams.discard(subscription.queue)
        if not streams:
            del self._streams[subscription.user_id]

    def subscribers(self, user_id: str) -> int:
        return len(self._streams.get(user_id, ()))

    def deliver(self, change: ContentChange) -> None:
        for queue in self._streams.get(change.user_id, ()):
            try:
                queue.put_nowait(change)
            except asyncio.QueueFull:
                # A tab that does not read: its backlog is dropped for one "reload all".
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(RESYNC)


async def listen_for_content_changes(main_url: str, hub: ChangeHub) -> None:
    """Deliver every change announced on main (by any process) to this process's streams."""
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                    libpq_url(main_url), autocommit=True) as conn:
                await conn.execute(f"listen {CONTENT_CHANNEL}")
                async for notice in conn.notifies():
                    change = ContentChange.parse(notice.payload)
                    if change is not None:
                        hub.deliver(change)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("content-change listener lost its connection; reconnecting")
            await asyncio.sleep(1)


def change_of(scope: Scope) -> ContentChange | None:
    """The change a finished request made, from its method, path and signed-in user."""
    if scope.get("method") not in UNSAFE_METHODS:
        return None
    parts = scope.get("path", "").strip("/").split("/")
    if len(parts) < 2 or parts[0] != "api" or parts[1] in NOT_CONTENT:
        return None
    user_id = (scope.get("state") or {}).get("user_id")
    if not isinstance(user_id, str) or not _TOKEN.fullmatch(parts[1]):
        return None
    tab = next((v.decode("latin-1") for k, v in scope.get("headers", ())
                if k == TAB_HEADER.encode()), None)
    return ContentChange(user_id, parts[1], _token_or_none(parts[2] if len(parts) > 2
                                                          else None), _token_or_none(tab))


class ContentChangeAnnouncer:
    """After a successful content write, ``NOTIFY`` main (when ``BYOD_REALTIME`` is on).
    The response has been sent by then: announcing never delays the writer."""

    def __init__(self, app: ASGIApp, *, enabled: bool):
        self.app = app
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.enabled or scope["type"] != "http" or scope.get("method") not in \
                UNSAFE_METHODS:
            await self.app(scope, receive, send)
            return
        status = 0

        async def watching_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        await self.app(scope, receive, watching_send)
        change = change_of(scope) if 200 <= status < 300 else None
        if change is not None:
            await announce(scope, change)


async def announce(scope: Scope, change: ContentChange) -> None:
    try:
        main = scope["app"].state.runtime.main
        async with main.begin() as conn:
            await conn.execute(text("select pg_notify(:channel, :payload)"),
                               {"channel": CONTENT_CHANNEL, "payload": change.payload()})
    except Exception:  # the write happened; a missed live update only costs a reload
        log.warning("could not announce a content change")
