"""The one definition of "this user is on their own database", for Python and SQL alike.

Two rules, each written once as data — the column values of the user's row that make it
true — from which both the SQLAlchemy Core clause (a query over ``user_database_config``) and
the Python predicate (a :class:`DatabaseConfig` already read) are derived:

- **holds their own database** (:data:`HOLDS_OWN_DATABASE`, :func:`holds_own_database`):
  their content lives on their database (connected, in error, moving, or being redeployed
  with new credentials). The flags never take that database away (``admission``).
- **on their own deployed database** (:data:`ON_OWN_DEPLOYED_DATABASE`,
  :func:`on_own_deployed_database`): they hold their own database, byodb deployed the
  content schema on it and records its version, and they did not leave BYOD. These are the
  databases a fleet run brings to a target version and the health sweep watches.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from sqlalchemy import ColumnElement, and_

from byodb.instances.lifecycle.config_store import DatabaseConfig
from byodb.instances.lifecycle.states import ConnectionStatus, DeploymentStatus, Placement
from byodb.maindb.tables import user_database_config as udc

Rule = Mapping[str, frozenset[StrEnum]]
"""Column (and :class:`DatabaseConfig` attribute) → the values that satisfy the rule."""

_HOLDS: Rule = {"content_placement": frozenset({Placement.user})}
_DEPLOYED: Rule = {
    **_HOLDS,
    "deployment_status": frozenset({DeploymentStatus.deployed}),
    "connection_status": frozenset(set(ConnectionStatus) - {ConnectionStatus.none,
                                                            ConnectionStatus.disconnected}),
}


def _clause(rule: Rule, *, versioned: bool) -> ColumnElement[bool]:
    terms: list[ColumnElement[bool]] = [
        udc.c[column].in_(sorted(value.value for value in values))
        for column, values in rule.items()]
    if versioned:
        terms.append(udc.c.schema_version.is_not(None))
    return and_(*terms)


def _holds(rule: Rule, config: DatabaseConfig | None, *, versioned: bool) -> bool:
    if config is None or (versioned and config.schema_version is None):
        return False
    return all(getattr(config, column) in values for column, values in rule.items())


HOLDS_OWN_DATABASE = _clause(_HOLDS, versioned=False)
ON_OWN_DEPLOYED_DATABASE = _clause(_DEPLOYED, versioned=True)


def holds_own_database(config: DatabaseConfig | None) -> bool:
    """The user's content lives on their own database (:data:`HOLDS_OWN_DATABASE`)."""
    return _holds(_HOLDS, config, versioned=False)


def on_own_deployed_database(config: DatabaseConfig | None) -> bool:
    """The user's content lives on a database of theirs that byodb deployed
    (:data:`ON_OWN_DEPLOYED_DATABASE`)."""
    return _holds(_DEPLOYED, config, versioned=True)
