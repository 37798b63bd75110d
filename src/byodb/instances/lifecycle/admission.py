"""Who may connect a database now: the operator's flags (docs/byod.md, "Feature flags").

``BYOD_ENABLED=false`` (the kill switch) and ``BYOD_REQUIRES_PREMIUM=true`` refuse *new*
connections only. A user whose content already lives on their own database keeps it: they
keep working on it, retry, update its credentials (the same database), disconnect and export
— a flag never strands anyone's data. The lifecycle asks this rule itself before every step
that creates or re-creates a connection (:func:`admission_refusal`: test, save,
switch, retry, the deployment job), never each endpoint (docs/byod.md, "Feature flags").
"""

from __future__ import annotations

from dataclasses import dataclass

from byodb.errors import ByodbError, ByodDisabled, PremiumRequired
from byodb.instances.lifecycle.config_store import DatabaseConfig
from byodb.instances.lifecycle.own_database import holds_own_database

DISABLED_MESSAGE = "Connecting your own database is turned off on this server for now."
DISABLED_HINT = ("Your content stays on byodb's database. If your content is already on your "
                 "own database, nothing changes: it keeps working, and you can retry, update "
                 "its credentials, disconnect or export.")
PREMIUM_MESSAGE = "Using your own database is part of the premium plan."
PREMIUM_HINT = "Upgrade your plan, then sign in again to connect your database."


@dataclass(frozen=True)
class ConnectFlags:
    """The flags that decide whether a user may connect a new database."""

    enabled: bool = True
    requires_premium: bool = False

    def refusal(self, *, premium: bool) -> ByodbError | None:
        """Why a new connection is refused for this user, or None. The kill switch first:
        it applies to everyone, premium or not."""
        if not self.enabled:
            return ByodDisabled(DISABLED_MESSAGE, hint=DISABLED_HINT)
        if self.requires_premium and not premium:
            return PremiumRequired(PREMIUM_MESSAGE, hint=PREMIUM_HINT)
        return None


def connect_refusal(flags: ConnectFlags, current: DatabaseConfig | None, *,
                    premium: bool) -> ByodbError | None:
    """Why the flags refuse this user a connection test or save now, or None. A user
    whose content is on their own database is never refused here: they may test and save
    new credentials for it (saving still refuses moving to another database)."""
    if holds_own_database(current):
        return None
    return flags.refusal(premium=premium)


def admission_refusal(flags: ConnectFlags, config: DatabaseConfig | None, *,
                      premium: bool) -> ByodbError | None:
    """The admission rule for a step that creates or re-creates a connection to the
    database ``config`` names — a deployment, a move in, a retry: why the flags refuse it,
    or None. Only the database that holds the user's content now is never refused;
    finishing a switch to another one is a new connection, as is anything for a user whose
    content is still on main."""
    if holds_own_database(config) and config is not None and not config.switching:
        return None
    return flags.refusal(premium=premium)
