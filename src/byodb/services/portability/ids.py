"""Ids of imported rows: derived, so importing the same file again finds the same rows."""

from __future__ import annotations

import uuid

IMPORT_NAMESPACE = uuid.UUID("0c45837f-e9e4-4509-b0d5-d507dd903bbe")
"""The UUIDv5 namespace of every id an import derives (fixed forever: changing it would
make a second import of a file duplicate the first)."""


def derived_id(user_id: str, *parts: str) -> uuid.UUID:
    """UUIDv5 of the importing user and the source's own names for the row: stable across
    imports, and different per user, so two accounts importing one file never collide."""
    return uuid.uuid5(IMPORT_NAMESPACE, "\x00".join((user_id, *parts)))
