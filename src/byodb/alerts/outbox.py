"""The alert outbox on main (``email_alerts``): an alert is recorded in the same
transaction as the state it reports, then delivered; a delivery that fails stays unsent and
is tried again by the next sweep, up to :data:`MAX_ATTEMPTS` times. Delivery never raises:
a mail server that refuses or is down must not break the sweep that called it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import aiosmtplib
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from byodb.alerts.messages import Alert
from byodb.alerts.smtp import AlertSettings, send_email
from byodb.ids import new_id
from byodb.maindb.tables import email_alerts

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10
"""After this many failed deliveries an alert is given up (its last error stays recorded)."""
BATCH = 100


@dataclass(frozen=True)
class Delivery:
    sent: int = 0
    failed: int = 0


async def record_alerts(conn: AsyncConnection, alerts: Sequence[Alert]) -> None:
    """Queue ``alerts`` for delivery, in the caller's transaction."""
    if alerts:
        await conn.execute(insert(email_alerts), [
            {"id": new_id(), "kind": a.kind.value, "user_id": a.user_id,
             "subject": a.subject, "body": a.body} for a in alerts])


def _public_error(exc: BaseException, settings: AlertSettings) -> str:
    """The error as recorded and logged: its class and SMTP code, never a credential."""
    code = getattr(exc, "code", None)
    text = f"{type(exc).__name__}" + (f" (SMTP {code})" if isinstance(code, int) else "")
    smtp = settings.smtp
    if smtp is not None and smtp.password is not None:
        text = text.replace(smtp.password.reveal(), "****")
    return text


async def deliver_pending(main: AsyncEngine, settings: AlertSettings) -> Delivery:
    """Send every unsent alert (oldest first). Never raises for a mail failure."""
    if not settings.enabled or settings.smtp is None:
        return Delivery()
    async with main.connect() as conn:
        rows = (await conn.execute(
            select(email_alerts.c.id, email_alerts.c.subject, email_alerts.c.body)
            .where(email_alerts.c.sent_at.is_(None), email_alerts.c.body.is_not(None),
                   email_alerts.c.attempts < MAX_ATTEMPTS)
            .order_by(email_alerts.c.created_at, email_alerts.c.id).limit(BATCH))).all()
    sent = failed = 0
    for alert_id, subject, body in rows:
        error: str | None = None
        try:
            await send_email(settings.smtp, sender=settings.sender,
                             recipients=settings.recipients, subject=subject, body=body)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            error = _public_error(exc, settings)
            log.warning("alert email not sent (will retry): %s", error)
        values: dict[str, object] = {"attempts": email_alerts.c.attempts + 1,
                                     "last_error": error}
        if error is None:
            values["sent_at"] = datetime.now(UTC)
            sent += 1
        else:
            failed += 1
        async with main.begin() as conn:
            await conn.execute(update(email_alerts).where(email_alerts.c.id == alert_id)
                               .values(**values))
        if error is not None:
            break  # the server refuses now: the rest waits for the next sweep, in order
    return Delivery(sent=sent, failed=failed)
