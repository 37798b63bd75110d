"""What an alert email says. Only the user id, the database host and the error code: never
a password, a URL with credentials, or anything of the user's content."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


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
    code = f" — {item.code}" if item.code else ""
    return f"- user {item.user_id} on host {item.host or 'unknown'}{code}"


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
        body = "\n".join([f"{len(items)} user databases {verb} in one health sweep:", "",
                          *(_line(i) for i in items), "", footer, ""])
        return [Alert(kind, None, subject, body)]
    return [Alert(kind, item.user_id,
                  f"[byodb] the database of user {item.user_id} {verb}",
                  "\n".join([f"A user database {verb}:", "", _line(item), "", footer, ""]))
            for item in items]
