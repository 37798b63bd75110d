"""fleet schema migrations (issue: fleet migrations)

Runs (``migrations``) learn how they were asked for, their wave and why they halted; the
per-user records (``byod_migrations``) get the step, the error code, the host, the wave, a
dry-run flag (dry-run records are kept apart from real ones) and a worker's lease.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 08:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('migrations', sa.Column('dry_run', sa.Boolean(), server_default='false',
                                          nullable=False))
    op.add_column('migrations', sa.Column('canary', sa.Integer(), server_default='0',
                                          nullable=False))
    op.add_column('migrations', sa.Column('concurrency', sa.Integer(), server_default='20',
                                          nullable=False))
    op.add_column('migrations', sa.Column('per_host', sa.Integer(), server_default='4',
                                          nullable=False))
    op.add_column('migrations', sa.Column('max_failure_ratio', sa.Float(),
                                          server_default='0.1', nullable=False))
    op.add_column('migrations', sa.Column('wave', sa.Integer(), server_default='1',
                                          nullable=False))
    op.add_column('migrations', sa.Column('already_current', sa.Integer(), server_default='0',
                                          nullable=False))
    op.add_column('migrations', sa.Column('halted_reason', sa.Text(), nullable=True))
    op.add_column('migrations', sa.Column('finished_at', sa.DateTime(timezone=True),
                                          nullable=True))
    op.create_check_constraint(
        op.f('ck_migrations_status'), 'migrations',
        "status in ('running','halted','completed','incomplete')")
    op.create_index('ix_migrations_created_at', 'migrations', ['created_at'])
    op.create_index('uq_migrations_auto_target', 'migrations', ['to_version'], unique=True,
                    postgresql_where=sa.text("started_by = 'auto'"))

    op.add_column('byod_migrations', sa.Column('dry_run', sa.Boolean(),
                                               server_default='false', nullable=False))
    op.add_column('byod_migrations', sa.Column('step', sa.Integer(), nullable=True))
    op.add_column('byod_migrations', sa.Column('error_code', sa.Text(), nullable=True))
    op.add_column('byod_migrations', sa.Column('host', sa.Text(), nullable=True))
    op.add_column('byod_migrations', sa.Column('wave', sa.Integer(), server_default='2',
                                               nullable=False))
    op.add_column('byod_migrations', sa.Column('lease_owner', sa.Text(), nullable=True))
    op.add_column('byod_migrations', sa.Column('lease_expires_at', sa.DateTime(timezone=True),
                                               nullable=True))
    op.drop_constraint('uq_byod_migrations_user_id_to_version', 'byod_migrations',
                       type_='unique')
    op.create_unique_constraint(op.f('uq_byod_migrations_user_id_to_version_dry_run'),
                                'byod_migrations', ['user_id', 'to_version', 'dry_run'])
    op.create_index('ix_byod_migrations_migration_status', 'byod_migrations',
                    ['migration_id', 'status'])


def downgrade() -> None:
    op.drop_index('ix_byod_migrations_migration_status', table_name='byod_migrations')
    op.drop_constraint('uq_byod_migrations_user_id_to_version_dry_run', 'byod_migrations',
                       type_='unique')
    op.execute("delete from byod_migrations where dry_run")
    op.create_unique_constraint('uq_byod_migrations_user_id_to_version', 'byod_migrations',
                                ['user_id', 'to_version'])
    for column in ('lease_expires_at', 'lease_owner', 'wave', 'host', 'error_code', 'step',
                   'dry_run'):
        op.drop_column('byod_migrations', column)
    op.drop_index('uq_migrations_auto_target', table_name='migrations')
    op.drop_index('ix_migrations_created_at', table_name='migrations')
    op.drop_constraint('ck_migrations_status', 'migrations', type_='check')
    for column in ('finished_at', 'halted_reason', 'already_current', 'wave',
                   'max_failure_ratio', 'per_host', 'concurrency', 'canary', 'dry_run'):
        op.drop_column('migrations', column)
