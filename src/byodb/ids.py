"""Content ids: time-ordered UUID v7, generated here so rows keep their ids across databases."""

from __future__ import annotations

import uuid

from uuid_utils.compat import uuid7


def new_id() -> uuid.UUID:
    return uuid7()
