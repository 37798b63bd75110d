"""Which embedding model made a stored vector (``embedding_model``, schema version 2), written
only where the user's database has the column.

The one place services decide a write by schema version (expand, then contract: see
``byodb.content.steps``). During a rollout a user's database may still be at version 1,
which lacks the column; the route says which version holds the user's content
(``Router.content_version``) and ``byodb.content.has_column`` whether it has the column.
A version-1 row simply has no model recorded, as rows embedded before version 2 do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table

from byodb.assistant.embeddings import EmbeddingModel
from byodb.content import has_column
from byodb.routing import Router

COLUMN = "embedding_model"


@dataclass(frozen=True)
class EmbeddingStamp:
    """The ``embedding_model`` values of one write to one table."""

    model: str
    column_exists: bool

    def next_to(self, vector: object | None) -> dict[str, Any]:
        """The values to store next to ``vector`` (None: no embedding, so no model); empty
        when the database lacks the column."""
        if not self.column_exists:
            return {}
        return {COLUMN: None if vector is None else self.model}


async def embedding_stamp(router: Router, user_id: str, table: Table,
                          embedder: EmbeddingModel) -> EmbeddingStamp:
    """The stamp for writing embeddings of ``embedder`` to ``table`` for ``user_id`` now."""
    version = await router.content_version(user_id)
    return EmbeddingStamp(embedder.name, has_column(version, table.name, COLUMN))
