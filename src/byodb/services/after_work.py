"""Work that follows a response: started when the response's data is stored, run by tasks
this process owns, each under its own deadline, and drained when the process closes.

It is the after-work of an exchange (``byodb.services.after_exchange``: embeddings and
memory extraction). The caller's response never waits for it; nothing is fire-and-forget
either: every task is held in :class:`AfterWork` until it ends, its failure is logged (the
kind of error and the user id, escaped — never content), and :meth:`AfterWork.close` lets
the running work finish within one deadline and cancels what is left, so a closed app leaves
no task behind.

It is enrichment, not the user's request: work that cannot start (the process is closing,
or :attr:`AfterWork.max_pending` pieces are already waiting) is logged and dropped, and a
crash loses what was still pending (see docs/architecture.md, "The path of a message").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from byodb.errors import ByodbError, ByodUnavailable
from byodb.safetext import escaped

log = logging.getLogger(__name__)

USER_SHOWN_CHARS = 300
"""How much of a user id a log line shows (escaped)."""


class AfterWork:
    """The process's after-work: at most ``concurrency`` pieces run at once, each ends at
    ``deadline_s`` seconds after it starts, at most ``max_pending`` wait or run."""

    def __init__(self, *, deadline_s: float, concurrency: int = 4,
                 max_pending: int = 1_000) -> None:
        self.deadline_s = deadline_s
        self.max_pending = max_pending
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def start(self, what: str, user_id: str, work: Coroutine[Any, Any, object]) -> None:
        """Run ``work`` (for ``user_id``; ``what`` names it in logs) after the caller
        returns. Never raises and never waits."""
        if self._closed or len(self._tasks) >= self.max_pending:
            work.close()
            reason = "the process is closing" if self._closed else "too much is pending"
            log.warning("%s for user %s dropped: %s", what,
                        escaped(user_id, USER_SHOWN_CHARS), reason)
            return
        task = asyncio.get_running_loop().create_task(self._run(what, user_id, work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, what: str, user_id: str, work: Coroutine[Any, Any, object]) -> None:
        shown = escaped(user_id, USER_SHOWN_CHARS)
        try:
            async with self._slots, asyncio.timeout(self.deadline_s):
                await work
        except TimeoutError:
            log.warning("%s for user %s did not finish within its deadline of %g s", what,
                        shown, self.deadline_s)
        except asyncio.CancelledError:
            log.warning("%s for user %s was cancelled: the process closed", what, shown)
            raise
        except ByodUnavailable:
            # The user's database went away after the response; the gate recorded it and
            # the user's next request reports it.
            log.info("%s for user %s skipped: the user's database is unavailable", what,
                     shown)
        except ByodbError as exc:
            log.warning("%s for user %s failed: %s", what, shown, exc.code)
        except Exception as exc:
            log.warning("%s for user %s failed: %s", what, shown, type(exc).__name__)
        finally:
            work.close()  # a coroutine cancelled before its first step was never started

    async def settled(self) -> None:
        """Return once no work is waiting or running (new work started meanwhile
        included)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def close(self) -> None:
        """Take no more work; give the work there is one deadline to finish, then cancel
        what is left and wait until it has ended."""
        self._closed = True
        if not self._tasks:
            return
        _, left = await asyncio.wait(set(self._tasks), timeout=self.deadline_s)
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)
