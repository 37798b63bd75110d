"""The SMTP channel of admin alerts: ``BYODB_SMTP_URL`` parsed once into a config whose
password is a :class:`Secret`, and an async send (aiosmtplib: no blocking I/O on the event
loop). STARTTLS is used whenever the server offers it; ``smtps://`` is TLS from the start."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from urllib.parse import unquote, urlsplit
from uuid import UUID

import aiosmtplib

from byodb.errors import ConfigurationError
from byodb.safetext import bounded, printable
from byodb.settings import Settings
from byodb.vault import Secret

SEND_TIMEOUT_S = 15.0
"""Each SMTP exchange (connect, each command) ends after this; a dead mail server never
holds a sweep for long."""


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    username: str | None
    password: Secret[str] | None
    implicit_tls: bool

    def redacted(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        user = f"{self.username}:****@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"SmtpConfig({self.redacted()!r})"


def parse_smtp_url(raw: str) -> SmtpConfig:
    """``smtp://user:pass@host:port`` (or ``smtps://``). A malformed URL is a configuration
    error whose message never repeats the URL (it may hold the password)."""
    try:
        parts = urlsplit(raw.strip())
        port = parts.port
    except ValueError:
        raise ConfigurationError("BYODB_SMTP_URL is malformed; use "
                                 "smtp://user:password@host:port") from None
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigurationError("BYODB_SMTP_URL must look like smtp://user:password@host:port")
    implicit_tls = parts.scheme == "smtps"
    return SmtpConfig(
        host=parts.hostname,
        port=port or (465 if implicit_tls else 25),
        username=unquote(parts.username) if parts.username else None,
        password=Secret(unquote(parts.password)) if parts.password else None,
        implicit_tls=implicit_tls,
    )


MAX_HEADER_CHARS = 200
MAX_BODY_CHARS = 100_000
_HEADER_TEXT = re.compile(r"[\x20-\x7e]*")
"""What a header byodb writes may hold: printable ASCII. No encoded word either (``=?``):
Python's header folding decodes them (CVE-2024-6923, fixed only in later 3.11 patches)."""
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9.-]{1,253}")


def plain_address(value: str) -> bool:
    """``user@host`` in ASCII, no display name, no comment, no encoded word."""
    return bool(_ADDRESS.fullmatch(value)) and "=?" not in value


@dataclass(frozen=True)
class AlertSettings:
    """Where alerts go. Without an SMTP URL or recipients, no email is queued (outages are
    still logged, shown on the dashboard and notified to the users)."""

    smtp: SmtpConfig | None
    recipients: tuple[str, ...]
    sender: str
    group_threshold: int

    @property
    def enabled(self) -> bool:
        return self.smtp is not None and bool(self.recipients)

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertSettings:
        """Raises :class:`ConfigurationError` for a sender or recipient that is not a plain
        address (``user@host``): alert headers hold nothing else."""
        recipients = tuple(a.strip() for a in settings.alert_emails.split(",") if a.strip())
        for name, value in (("BYODB_MAIL_FROM", settings.mail_from),
                            *(("BYODB_ALERT_EMAILS", r) for r in recipients)):
            if not plain_address(value):
                raise ConfigurationError(f"{name} must hold plain addresses (user@host), "
                                         "separated by commas")
        return cls(smtp=parse_smtp_url(settings.smtp_url) if settings.smtp_url else None,
                   recipients=recipients, sender=settings.mail_from,
                   group_threshold=settings.alert_group_threshold)


class AlertNotBuilt(ValueError):
    """An alert email cannot be made safely (a header value outside what byodb writes):
    it is never sent, and trying again would not change that."""


def _header(name: str, value: str) -> str:
    if len(value) > MAX_HEADER_CHARS or not _HEADER_TEXT.fullmatch(value) or "=?" in value:
        raise AlertNotBuilt(f"the {name} header would hold characters byodb does not write")
    return value


def _address(name: str, value: str) -> str:
    if not plain_address(value):
        raise AlertNotBuilt(f"the {name} address is not a plain address (user@host)")
    return value


def build_email(*, alert_id: UUID, sender: str, recipients: tuple[str, ...], subject: str,
                body: str, created_at: datetime) -> EmailMessage:
    """The alert email: headers byodb chose (From, To and the subject checked to be plain
    ASCII words and addresses; Date and Message-ID made here), and one text/plain body
    whose unsafe characters are replaced and whose length is bounded. Raises
    :class:`AlertNotBuilt` for a value no header of ours may hold."""
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = _address("From", sender)
    if not recipients:
        raise AlertNotBuilt("there is no recipient")
    message["To"] = ", ".join(_address("To", r) for r in recipients)
    message["Subject"] = _header("Subject", subject)
    message["Date"] = format_datetime(created_at)
    message["Message-ID"] = f"<{alert_id}@alerts.byodb>"
    # Each line of the body is printable text (a line break of ours ends it); the whole is
    # bounded so one alert can never be a huge message.
    text = "\n".join(printable(line, MAX_BODY_CHARS) for line in body.split("\n"))
    message.set_content(bounded(text, MAX_BODY_CHARS), charset="utf-8",
                        cte="quoted-printable")
    return message


async def send_email(config: SmtpConfig, message: EmailMessage) -> None:
    """Send one email built by :func:`build_email`; raises ``aiosmtplib.SMTPException``,
    ``OSError`` or ``TimeoutError``."""
    await aiosmtplib.send(
        message, hostname=config.host, port=config.port, username=config.username,
        password=config.password.reveal() if config.password is not None else None,
        use_tls=config.implicit_tls, start_tls=False if config.implicit_tls else None,
        timeout=SEND_TIMEOUT_S)
