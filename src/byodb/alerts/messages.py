"""What an alert email says. Only the user id, the database host and the error code: never
a password, a URL with credentials, or anything of the user's content.

The subject is made of byodb's own words and numbers only. A user id is chosen by whoever
signs the user in and a host by the user; both appear only in the body, with every
character that could break a line or a header replaced (:func:`byodb.safetext.printable`)
and their length bounded — no value of a user's can add a header or a second body."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from byodb.safetext import printable

MAX_USER_ID_CHARS = 255
MAX_HOST_CHARS = 253
MAX_CODE_CHARS = 64
MAX_LISTED = 200
"""Most instances one grouped email lists by name; the rest are counted."""


class AlertKind(StrEnum):
    down = "database_down"
    recovered = "database_recovered"


@dataclass(frozen=True)
class AlertItem:
    """One instance in an alert."""

    user_id: str
    host: str | None
    code: str | None


@dataclass(frozen=True)
class Alert:
    """One email to send: ``user_id`` is set when it is about one instance only."""

    kind: AlertKind
    user_id: str | None
    subject: str
    body: str


def _line(item: AlertItem) -> str:
    code = f" — {printable(item.code, MAX_CODE_CHARS)}" if item.code else ""
    host = printable(item.host, MAX_HOST_CHARS) if item.host else "unknown"
    return f"- user {printable(item.user_id, MAX_USER_ID_CHARS)} on host {host}{code}"


_HOW = {
    AlertKind.down: ("went down", "The users are blocked (never served from main) until "
                     "their database answers again; byodb keeps checking and reconnects "
                     "them by itself. Details: the admin dashboard, or `byodb instances "
                     "show USER_ID`."),
    AlertKind.recovered: ("recovered", "The users were reconnected automatically."),
}


def compose_alerts(kind: AlertKind, items: Sequence[AlertItem],
                   group_threshold: int) -> list[Alert]:
    """One email per instance, or — when more than ``group_threshold`` changed in one sweep —
    one email that lists them all."""
    verb, footer = _HOW[kind]
    if not items:
        return []
    if len(items) > group_threshold:
        subject = f"[byodb] {len(items)} user databases {verb}"
        more = len(items) - MAX_LISTED
        body = "\n".join([f"{len(items)} user databases {verb} in one health sweep:", "",
                          *(_line(i) for i in items[:MAX_LISTED]),
                          *([f"- and {more} more (see the admin dashboard)"] if more > 0
                            else []), "", footer, ""])
        return [Alert(kind, None, subject, body)]
    return [Alert(kind, item.user_id, f"[byodb] a user database {verb}",
                  "\n".join([f"A user database {verb}:", "", _line(item), "", footer, ""]))
            for item in items]
