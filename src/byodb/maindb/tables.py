"""Main-database tables (DESIGN.md §3, placement "main"), SQLAlchemy Core.

Only the BYOD control tables are used in depth today; the other app tables exist so every
table of the placement map has a home, and grow as their features arrive.
Changing anything here needs an Alembic revision in ``maindb/migrations/versions``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _created() -> Column[object]:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


def _updated() -> Column[object]:
    return Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now())


users = Table(
    "users", metadata,
    Column("id", Text, primary_key=True),  # the auth subject
    Column("email", Text),
    Column("display_name", Text),
    Column("is_admin", Boolean, nullable=False, server_default="false"),
    _created(), _updated(),
)

user_preferences = Table(
    "user_preferences", metadata,
    Column("user_id", Text, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("preferences", JSONB, nullable=False, server_default="{}"),
    _updated(),
)

user_onboarding = Table(
    "user_onboarding", metadata,
    Column("user_id", Text, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("steps", JSONB, nullable=False, server_default="{}"),
    Column("completed_at", DateTime(timezone=True)),
    _updated(),
)

user_stats = Table(
    "user_stats", metadata,
    Column("user_id", Text, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("stats", JSONB, nullable=False, server_default="{}"),
    _updated(),
)

templates = Table(
    "templates", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("name", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("created_by", Text),
    _created(), _updated(),
)

admin_settings = Table(
    "admin_settings", metadata,
    Column("key", Text, primary_key=True),
    Column("value", JSONB, nullable=False),
    _updated(),
)

feedback = Table(
    "feedback", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("user_id", Text, nullable=False, index=True),
    Column("kind", Text, nullable=False),
    Column("body", Text, nullable=False),
    _created(),
)

shares = Table(
    "shares", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("user_id", Text, nullable=False, index=True),
    Column("subject_type", Text, nullable=False),
    Column("subject_id", UUID(as_uuid=True), nullable=False),
    Column("is_public", Boolean, nullable=False, server_default="false"),
    _created(),
)

notifications = Table(
    "notifications", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("user_id", Text, nullable=False, index=True),
    Column("kind", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("read_at", DateTime(timezone=True)),
    _created(),
)

migrations = Table(
    "migrations", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("to_version", Integer, nullable=False),
    Column("status", Text, nullable=False),
    Column("started_by", Text),
    Column("total", Integer, nullable=False, server_default="0"),
    Column("completed", Integer, nullable=False, server_default="0"),
    Column("failed", Integer, nullable=False, server_default="0"),
    _created(), _updated(),
    # Fleet schema runs (issue 9, instances/fleet/runs.py): how the run was asked for, its
    # current wave (1 = canary, 2 = the rest), why it halted, and when it settled.
    Column("dry_run", Boolean, nullable=False, server_default="false"),
    Column("canary", Integer, nullable=False, server_default="0"),
    Column("concurrency", Integer, nullable=False, server_default="20"),
    Column("per_host", Integer, nullable=False, server_default="4"),
    Column("max_failure_ratio", Float, nullable=False, server_default="0.1"),
    Column("wave", Integer, nullable=False, server_default="1"),
    Column("already_current", Integer, nullable=False, server_default="0"),
    Column("halted_reason", Text),
    Column("finished_at", DateTime(timezone=True)),
    CheckConstraint("status in ('running','halted','completed','incomplete')",
                    name="status"),
    Index("ix_migrations_created_at", "created_at"),
    # One automatic rollout per target version, however many replicas start at once.
    Index("uq_migrations_auto_target", "to_version", unique=True,
          postgresql_where=text("started_by = 'auto'")),
)

email_alerts = Table(
    "email_alerts", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("kind", Text, nullable=False),
    Column("user_id", Text),
    Column("subject", Text, nullable=False),
    Column("sent_at", DateTime(timezone=True)),
    _created(),
    # Health alerts (issue 10): the text sent (user ids, redacted hosts, error codes only),
    # and the delivery attempts so far; unsent rows are retried by the next sweep.
    Column("body", Text),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
)

# One row per health sweep of the user databases (the scheduled one or one started by an
# operator); finished_at stays null while it runs.
health_sweeps = Table(
    "health_sweeps", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("trigger", Text, nullable=False),  # "schedule" | "operator"
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
    Column("checked", Integer, nullable=False, server_default="0"),
    Column("healthy", Integer, nullable=False, server_default="0"),
    Column("failed", Integer, nullable=False, server_default="0"),
    Column("recovered", Integer, nullable=False, server_default="0"),
    Column("duration_ms", BigInteger),
    Index("ix_health_sweeps_started_at", "started_at"),
)

jobs = Table(
    "jobs", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("kind", Text, nullable=False),
    Column("user_id", Text, index=True),
    Column("status", Text, nullable=False),
    Column("detail", Text),
    _created(), _updated(),
)

CONNECTION_STATUSES = ("none", "pending", "connected", "error", "disconnected", "moving")
DEPLOYMENT_STATUSES = ("not_started", "deploying", "deployed", "failed")
MIGRATION_STATUSES = ("pending", "running", "completed", "failed")

user_database_config = Table(
    "user_database_config", metadata,
    Column("user_id", Text, primary_key=True),
    # AES-256-GCM ciphertext of the connection URL; names its key id inside.
    Column("encrypted_url", Text),
    Column("key_id", Text),
    # Bumped on every save: the engine cache keys on it, so new credentials mean a new pool.
    Column("credential_version", Integer, nullable=False, server_default="0"),
    Column("redacted_url", Text),
    Column("host", Text),
    Column("connection_status", Text, nullable=False, server_default="none"),
    Column("connection_error", Text),
    Column("connection_error_code", Text),
    Column("last_connection_test", DateTime(timezone=True)),
    Column("consecutive_failures", Integer, nullable=False, server_default="0"),
    Column("schema_version", Integer),
    Column("deployment_status", Text, nullable=False, server_default="not_started"),
    Column("deployment_progress", Text),
    Column("deployment_step", Integer, nullable=False, server_default="0"),
    Column("deployment_total_steps", Integer, nullable=False, server_default="0"),
    Column("last_schema_deploy", DateTime(timezone=True)),
    Column("instance_id", UUID(as_uuid=True)),
    # Where the user's content is: "main" until a move onto their database committed,
    # "user" from then on until it is moved back or they disconnect (the one placement).
    Column("content_placement", Text, nullable=False, server_default="main"),
    # While switching to another database: the old one's URL (encrypted, own AD field),
    # its instance id, and whether it keeps its copy after the move ("keep" | "delete").
    Column("previous_encrypted_url", Text),
    Column("previous_instance_id", UUID(as_uuid=True)),
    Column("previous_database_mode", Text),
    _created(), _updated(),
    # The health sweep's facts (issue 10): the last check, its latency and error code, and
    # since when an outage was reported (users notified, alert queued; null: none is).
    Column("last_health_check_at", DateTime(timezone=True)),
    Column("health_latency_ms", Integer),
    Column("health_error_code", Text),
    Column("outage_reported_at", DateTime(timezone=True)),
    CheckConstraint(
        "connection_status in ('none','pending','connected','error','disconnected','moving')",
        name="connection_status",
    ),
    CheckConstraint("content_placement in ('main','user')", name="content_placement"),
    CheckConstraint("previous_database_mode in ('keep','delete')",
                    name="previous_database_mode"),
    CheckConstraint(
        "deployment_status in ('not_started','deploying','deployed','failed')",
        name="deployment_status",
    ),
    Index("ix_user_database_config_status", "connection_status"),
)

byod_migrations = Table(
    "byod_migrations", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("user_id", Text, nullable=False),
    Column("migration_id", UUID(as_uuid=True)),
    Column("from_version", Integer, nullable=False),
    Column("to_version", Integer, nullable=False),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("error", Text),
    Column("started_at", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
    Column("duration_ms", BigInteger),
    _created(), _updated(),
    # Fleet runs (issue 9): a dry run's records are kept apart from the real ones; the
    # version step being applied (or that failed) and the error's code; the user's host
    # (per-host limit) and wave; the lease of the worker running it (never two at once).
    Column("dry_run", Boolean, nullable=False, server_default="false"),
    Column("step", Integer),
    Column("error_code", Text),
    Column("host", Text),
    Column("wave", Integer, nullable=False, server_default="2"),
    Column("lease_owner", Text),
    Column("lease_expires_at", DateTime(timezone=True)),
    CheckConstraint(
        "status in ('pending','running','completed','failed')", name="status"
    ),
    UniqueConstraint("user_id", "to_version", "dry_run"),
    Index("ix_byod_migrations_migration_status", "migration_id", "status"),
    Index("ix_byod_migrations_user_created", "user_id", "created_at"),
    Index("ix_byod_migrations_status", "status"),
)
