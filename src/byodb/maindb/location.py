"""Where the main database is, and whether a deployment exists at all.

One resolution for every command (docs/operations.md, "Finding the deployment"):
``BYODB_DATABASE_URL`` names the main database when set; otherwise it is the embedded
PostgreSQL under the data dir (``--data-dir`` / ``BYODB_DATA_DIR``, else ``./byodb-data``
in the current folder). Only :func:`start_main_database` (``serve``, ``init``,
``db upgrade``) may create one; every other command uses :func:`find_main_database`, which
refuses — :class:`DeploymentNotFound` — rather than invent an empty deployment.
"""

from __future__ import annotations

import contextlib

import psycopg

from byodb.errors import ConfigurationError
from byodb.maindb.embedded import PostgresCluster, ServerShare
from byodb.maindb.urls import libpq_url, redacted_url
from byodb.settings import Settings

MAIN_DATABASE = "byodb"
_CONNECT_TIMEOUT_S = 10
_POINT_AT_IT = ("run this in the folder that holds the deployment's byodb-data, or pass "
                "--data-dir DIR (or set BYODB_DATA_DIR, or BYODB_DATABASE_URL); "
                "`byodb init` sets up a new one")


class DeploymentNotFound(ConfigurationError):
    """No main database where this process looked (nothing was created)."""

    code = "deployment_not_found"


def embedded_main(settings: Settings) -> PostgresCluster:
    return PostgresCluster(settings.data_dir.resolve() / "postgres")


def has_embedded_main(settings: Settings) -> bool:
    return (embedded_main(settings).pgdata / "PG_VERSION").exists()


def start_main_database(settings: Settings) -> tuple[str, ServerShare | None]:
    """The main URL and, for the embedded server, this process's share of it; creates the
    embedded server and its ``byodb`` database when missing (``serve``/``init`` only).

    The embedded server is started unless another byodb process already runs it. The caller
    must ``release()`` the share when it is done: the server is stopped then only if no
    other process still uses it (see :class:`~byodb.maindb.embedded.ServerShare`).
    """
    if settings.database_url:
        return settings.database_url, None
    share = embedded_main(settings).share()
    try:
        cluster = share.cluster
        with psycopg.connect(cluster.url(), autocommit=True,
                             connect_timeout=_CONNECT_TIMEOUT_S) as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s",
                                  (MAIN_DATABASE,)).fetchone()
            if not exists:
                # Another process starting at the same moment may create it first.
                with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                    conn.execute(f'create database "{MAIN_DATABASE}"')
    except BaseException:
        share.release()
        raise
    return cluster.url(MAIN_DATABASE), share


def find_main_database(settings: Settings) -> tuple[str, ServerShare | None]:
    """Like :func:`start_main_database`, for commands that must not create a deployment:
    the main database must exist and hold byodb's tables, else :class:`DeploymentNotFound`
    (one sentence: where it looked, how to point at the deployment)."""
    if settings.database_url:
        url = settings.database_url
        _check_main_tables(url, f"the main database {redacted_url(url)} (BYODB_DATABASE_URL)")
        return url, None
    cluster = embedded_main(settings)
    if not has_embedded_main(settings):
        raise DeploymentNotFound(
            f"no byodb deployment found: BYODB_DATABASE_URL is unset and there is no "
            f"embedded main database in {cluster.root}; {_POINT_AT_IT}")
    share = cluster.share()
    try:
        with psycopg.connect(share.cluster.url(), autocommit=True,
                             connect_timeout=_CONNECT_TIMEOUT_S) as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s",
                                  (MAIN_DATABASE,)).fetchone()
        if not exists:
            raise DeploymentNotFound(
                f"the embedded PostgreSQL in {cluster.root} has no {MAIN_DATABASE!r} "
                f"database; `byodb db upgrade` (or `byodb serve`) creates it")
        url = share.cluster.url(MAIN_DATABASE)
        _check_main_tables(url, f"the embedded main database in {cluster.root}")
    except BaseException:
        share.release()
        raise
    return url, share


def _check_main_tables(url: str, what: str) -> None:
    try:
        with psycopg.connect(libpq_url(url), autocommit=True,
                             connect_timeout=_CONNECT_TIMEOUT_S) as conn:
            row = conn.execute(
                "select to_regclass('user_database_config') is not null").fetchone()
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "no answer"
        raise ConfigurationError(f"cannot reach {what}: {reason}",
                                 code="main_unreachable") from None
    if not (row and row[0]):
        raise DeploymentNotFound(
            f"{what} has no byodb tables (not a byodb deployment yet); `byodb init` or "
            f"`byodb db upgrade` sets it up, or {_POINT_AT_IT.split('; ')[0]}")
