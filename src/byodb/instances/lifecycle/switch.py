"""Switching a user to another database: which database a saved URL moves the content from.

A URL of a *different* database than the one holding the user's content (told apart by the
``instance_id`` in ``byodb_meta``) is a switch; the same database with new credentials is not.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from byodb.instances.connection.probe import ConnectionVerdict
from byodb.instances.lifecycle.config_store import DatabaseConfig, Switch
from byodb.instances.lifecycle.states import Placement
from byodb.vault import Vault

NO_SWITCH: dict[str, Any] = {"previous_encrypted_url": None, "previous_instance_id": None,
                             "previous_database_mode": None}
"""The row's fields of a switch under way, as they are once none is."""


class OldDatabase(StrEnum):
    """What the old database keeps when a user switches to another one."""

    keep = "keep"
    delete = "delete"


def switch_for(current: DatabaseConfig | None, verdict: ConnectionVerdict,
               old_database: OldDatabase, vault: Vault) -> Switch | None:
    """The switch the tested URL (``verdict``) means for the user's ``current`` row, if any."""
    if current is None or current.content_placement is not Placement.user:
        return None
    if current.switching:
        # An earlier switch has not finished: the content is still (also) on the old
        # database, so that one stays the source — unless this URL is that database.
        if verdict.instance_id is not None and \
                verdict.instance_id == current.previous_instance_id:
            return None
        return Switch(current.decrypt_previous_url(vault), current.previous_instance_id,
                      old_database.value)
    if verdict.instance_id is not None and verdict.instance_id == current.instance_id:
        return None  # the same database with new credentials
    return Switch(current.decrypt_url(vault), current.instance_id, old_database.value)
