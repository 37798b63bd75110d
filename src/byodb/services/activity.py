"""Activity events: the user's own timeline of what happened to their content.

Events are written in the same transaction as the change they describe, on the database
that holds the user's content. They name the subject by type and id only — never its title
or text — so deleting a note leaves no copy of its words behind in the timeline.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection

from byodb.content.tables import activity_events
from byodb.ids import new_id


async def record_event(conn: AsyncConnection, user_id: str, event_type: str, *,
                       subject_type: str | None = None, subject_id: UUID | None = None,
                       data: dict[str, Any] | None = None) -> None:
    """Add one event (``<subject>.<verb>``, e.g. ``task.completed``) to the timeline."""
    await conn.execute(activity_events.insert().values(
        id=new_id(), user_id=user_id, event_type=event_type, subject_type=subject_type,
        subject_id=subject_id, data=data or {}))
