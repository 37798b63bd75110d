"""The alert outbox on main (``email_alerts``): an alert is recorded in the same
transaction as the state it reports, then delivered.

Each alert's fate is its own (docs/operations.md, "Health and alerts"):

* ``sent`` — ``sent_at`` is set;
* ``pending`` — not sent, fewer than :data:`MAX_ATTEMPTS` attempts: the next delivery tries
  again (``last_error`` says why the last one failed);
* ``failed`` — not sent after :data:`MAX_ATTEMPTS` attempts, or at once when the email cannot
  be built (:class:`~byodb.alerts.smtp.AlertNotBuilt`: trying again would not change it);
  ``last_error`` keeps the reason. A failed alert is never tried again.

A delivery goes through the pending alerts oldest first. An alert the mail server refuses
(its recipients or its data) or that cannot be built is recorded and the next one is tried:
no alert blocks the others. Only when the server itself is unusable (down, refusing the
connection, the sign-in or the sender) does the delivery stop, since every later alert would
fail the same way; they wait for the next one. A delivery never raises for a mail failure and
has a deadline of its own (:data:`DELIVERY_DEADLINE_S`): a mail server can neither break nor
hold the sweep that called it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import aiosmtplib
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from byodb.alerts.messages import Alert
from byodb.alerts.smtp import AlertNotBuilt, AlertSettings, build_email, send_email
from byodb.ids import new_id
from byodb.maindb.tables import email_alerts

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10
"""After this many failed deliveries an alert is failed (its last error stays recorded)."""
BATCH = 100
DELIVERY_DEADLINE_S = 120.0
"""One delivery ends after this; what it did not reach waits for the next one."""
MAX_ERROR_CHARS = 300

# The server refused this message (its recipients or its content), not every message: the
# next alert is still tried.
_MESSAGE_REFUSED = (aiosmtplib.SMTPDataError, aiosmtplib.SMTPRecipientsRefused,
                    aiosmtplib.SMTPRecipientRefused)


@dataclass
class Delivery:
    sent: int = 0
    failed: int = 0
    """Attempts that failed in this delivery (the alert may still be pending)."""
    given_up: int = 0
    """Alerts this delivery marked failed for good."""


async def record_alerts(conn: AsyncConnection, alerts: Sequence[Alert]) -> None:
    """Queue ``alerts`` for delivery, in the caller's transaction."""
    if alerts:
        await conn.execute(insert(email_alerts), [
            {"id": new_id(), "kind": a.kind.value, "user_id": a.user_id,
             "subject": a.subject, "body": a.body} for a in alerts])


def _public_error(exc: BaseException, settings: AlertSettings) -> str:
    """The error as recorded and logged: its class and SMTP code, never a credential."""
    if isinstance(exc, AlertNotBuilt):
        return f"not built: {exc}"[:MAX_ERROR_CHARS]
    code = getattr(exc, "code", None)
    text = f"{type(exc).__name__}" + (f" (SMTP {code})" if isinstance(code, int) else "")
    smtp = settings.smtp
    if smtp is not None and smtp.password is not None:
        text = text.replace(smtp.password.reveal(), "****")
    return text[:MAX_ERROR_CHARS]


async def deliver_pending(main: AsyncEngine, settings: AlertSettings) -> Delivery:
    """Send the pending alerts (oldest first), each under its own outcome (see the module's
    docstring). Never raises for a mail failure; ends after :data:`DELIVERY_DEADLINE_S`."""
    delivery = Delivery()
    if not settings.enabled or settings.smtp is None:
        return delivery
    try:
        async with asyncio.timeout(DELIVERY_DEADLINE_S):
            await _deliver(main, settings, delivery)
    except TimeoutError:
        log.warning("alert delivery stopped at its deadline; the rest waits for the next one")
    return delivery


async def _deliver(main: AsyncEngine, settings: AlertSettings, delivery: Delivery) -> None:
    assert settings.smtp is not None
    async with main.connect() as conn:
        rows = (await conn.execute(
            select(email_alerts.c.id, email_alerts.c.subject, email_alerts.c.body,
                   email_alerts.c.created_at, email_alerts.c.attempts)
            .where(email_alerts.c.sent_at.is_(None), email_alerts.c.body.is_not(None),
                   email_alerts.c.attempts < MAX_ATTEMPTS)
            .order_by(email_alerts.c.created_at, email_alerts.c.id).limit(BATCH))).all()
    for alert_id, subject, body, created_at, attempts in rows:
        try:
            message = build_email(alert_id=alert_id, sender=settings.sender,
                                  recipients=settings.recipients, subject=subject, body=body,
                                  created_at=created_at)
        except Exception as exc:  # whatever the cause, this alert alone fails
            await _failed(main, alert_id, _public_error(
                exc if isinstance(exc, AlertNotBuilt) else AlertNotBuilt(type(exc).__name__),
                settings), attempts=MAX_ATTEMPTS, delivery=delivery)
            continue
        try:
            await send_email(settings.smtp, message)
        except _MESSAGE_REFUSED as exc:
            await _failed(main, alert_id, _public_error(exc, settings),
                          attempts=attempts + 1, delivery=delivery)
            continue
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # The server is unusable now: every later alert would fail the same way.
            await _failed(main, alert_id, _public_error(exc, settings),
                          attempts=attempts + 1, delivery=delivery)
            break
        except Exception as exc:  # an unexpected failure is this alert's
            await _failed(main, alert_id, _public_error(exc, settings),
                          attempts=attempts + 1, delivery=delivery)
            continue
        await _set(main, alert_id, attempts=attempts + 1, last_error=None,
                   sent_at=datetime.now(UTC))
        delivery.sent += 1


async def _failed(main: AsyncEngine, alert_id: UUID, error: str, *, attempts: int,
                  delivery: Delivery) -> None:
    attempts = min(attempts, MAX_ATTEMPTS)
    delivery.failed += 1
    if attempts >= MAX_ATTEMPTS:
        delivery.given_up += 1
        log.warning("alert email %s failed for good after %d attempts: %s", alert_id,
                    attempts, error)
    else:
        log.warning("alert email %s not sent (will retry): %s", alert_id, error)
    await _set(main, alert_id, attempts=attempts, last_error=error)


async def _set(main: AsyncEngine, alert_id: UUID, **values: Any) -> None:
    async with main.begin() as conn:
        await conn.execute(update(email_alerts).where(email_alerts.c.id == alert_id)
                           .values(**values))
