"""The SMTP channel of admin alerts: ``BYODB_SMTP_URL`` parsed once into a config whose
password is a :class:`Secret`, and an async send (aiosmtplib: no blocking I/O on the event
loop). STARTTLS is used whenever the server offers it; ``smtps://`` is TLS from the start."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import aiosmtplib

from byodb.errors import ConfigurationError
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
        recipients = tuple(a.strip() for a in settings.alert_emails.split(",") if a.strip())
        return cls(smtp=parse_smtp_url(settings.smtp_url) if settings.smtp_url else None,
                   recipients=recipients, sender=settings.mail_from,
                   group_threshold=settings.alert_group_threshold)


async def send_email(config: SmtpConfig, *, sender: str, recipients: tuple[str, ...],
                     subject: str, body: str) -> None:
    """Send one plain-text email; raises ``aiosmtplib.SMTPException`` or ``OSError``."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message.set_content(body)
    await aiosmtplib.send(
        message, hostname=config.host, port=config.port, username=config.username,
        password=config.password.reveal() if config.password is not None else None,
        use_tls=config.implicit_tls, start_tls=False if config.implicit_tls else None,
        timeout=SEND_TIMEOUT_S)
