"""One deadline per operation on a user's database, and the limits derived from it.

The client-side deadline (``asyncio.timeout``), the server's statement, lock and idle
limits (set at the start of every transaction, :mod:`.session`) and the socket cut come
from one number. The server's statement limit is shorter than the deadline by
:data:`SERVER_MARGIN_S`, so a database that answers ends a slow statement itself — the
request gets ``byod_timeout`` and the user stays connected — while only a database that
stays silent past the deadline is treated as one that stopped answering. The socket is cut
:data:`SEVER_GRACE_S` after the deadline, ending what a cancellation cannot (a ROLLBACK
sent to a frozen server). docs/operations.md has the table of defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from byodb.instances.connection.session import SessionLimits

SERVER_MARGIN_S = 3.0
"""The server's statement limit ends this long before the operation's deadline."""
SEVER_GRACE_S = 2.0
"""An operation's sockets are shut down this long after its deadline."""


@dataclass(frozen=True)
class Deadline:
    """One operation's deadline and what follows from it."""

    seconds: float
    lock_timeout_s: float = 5.0

    @property
    def statement_timeout_s(self) -> float:
        return max(self.seconds / 2, self.seconds - SERVER_MARGIN_S)

    @property
    def sever_after_s(self) -> float:
        return self.seconds + SEVER_GRACE_S

    def session(self) -> SessionLimits:
        statement = self.statement_timeout_s
        return SessionLimits(statement_timeout_s=statement,
                             lock_timeout_s=min(self.lock_timeout_s, statement),
                             idle_in_transaction_timeout_s=self.seconds + SERVER_MARGIN_S)
