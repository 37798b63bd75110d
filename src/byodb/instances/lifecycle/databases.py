"""From saved credentials to a user database's handle (:class:`UserDatabase`).

One place builds handles — for the lifecycle, the health checks, the fleet migrator and the
router alike — with the guard's policy and the pool limits of a user's database.
"""

from __future__ import annotations

from dataclasses import dataclass

from byodb.instances.connection.credentials import Credentials
from byodb.instances.connection.guard import GuardPolicy, parse_database_url
from byodb.instances.connection.handle import UserDatabase
from byodb.instances.lifecycle.config_store import DatabaseConfig
from byodb.vault import Secret, Vault


@dataclass(frozen=True)
class PoolLimits:
    """The small pool of a user's database (routed requests)."""

    size: int = 2
    timeout_s: float = 10.0
    idle_timeout_s: float = 60.0  # a user's idle pooled connections close after this


class UserDatabases:
    """Builds the handle of a user's database from its credentials (parsed, not contacted)."""

    def __init__(self, policy: GuardPolicy, vault: Vault, pool: PoolLimits = PoolLimits()):
        self.policy = policy
        self._vault = vault
        self._pool = pool

    def given(self, stored: Secret[str] | Credentials) -> UserDatabase:
        """The handle of a database given by its credentials; a stored secret is unpacked
        (:class:`Credentials`). Raises the guard's ``invalid_url``."""
        given = stored if isinstance(stored, Credentials) else Credentials.unpacked(stored)
        return UserDatabase(parse_database_url(given.url.reveal()), self.policy,
                            pool_size=self._pool.size, pool_timeout_s=self._pool.timeout_s,
                            idle_timeout_s=self._pool.idle_timeout_s,
                            ca_certificate=given.ca_certificate)

    def of(self, config: DatabaseConfig) -> UserDatabase:
        """The handle of the user's saved database. Raises :class:`DecryptionError`."""
        return self.given(config.decrypt_url(self._vault))

    def previous_of(self, config: DatabaseConfig) -> UserDatabase:
        """The handle of the database a switch moves away from."""
        return self.given(config.decrypt_previous_url(self._vault))
