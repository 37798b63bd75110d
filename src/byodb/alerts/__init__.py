"""Admin alert email: the SMTP channel (:mod:`byodb.alerts.smtp`), what an alert says
(:mod:`byodb.alerts.messages`) and the recorded, retried outbox (:mod:`byodb.alerts.outbox`)."""

from byodb.alerts.messages import Alert, AlertItem, AlertKind, compose_alerts
from byodb.alerts.smtp import AlertSettings, SmtpConfig, parse_smtp_url

__all__ = ["Alert", "AlertItem", "AlertKind", "AlertSettings", "SmtpConfig", "compose_alerts",
           "parse_smtp_url"]
