"""health sweeps and alerts (issue: health)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 08:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'health_sweeps',
        sa.Column('id', sa.UUID(), nullable=False),
        sa.Column('trigger', sa.Text(), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), server_default=sa.text('now()'),
                  nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('checked', sa.Integer(), server_default='0', nullable=False),
        sa.Column('healthy', sa.Integer(), server_default='0', nullable=False),
        sa.Column('failed', sa.Integer(), server_default='0', nullable=False),
        sa.Column('recovered', sa.Integer(), server_default='0', nullable=False),
        sa.Column('duration_ms', sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_health_sweeps')),
    )
    op.create_index('ix_health_sweeps_started_at', 'health_sweeps', ['started_at'])
    op.add_column('email_alerts', sa.Column('body', sa.Text(), nullable=True))
    op.add_column('email_alerts', sa.Column('attempts', sa.Integer(), server_default='0',
                                            nullable=False))
    op.add_column('email_alerts', sa.Column('last_error', sa.Text(), nullable=True))
    for name, kind in (('last_health_check_at', sa.DateTime(timezone=True)),
                       ('health_latency_ms', sa.Integer()),
                       ('health_error_code', sa.Text()),
                       ('outage_reported_at', sa.DateTime(timezone=True))):
        op.add_column('user_database_config', sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    for name in ('outage_reported_at', 'health_error_code', 'health_latency_ms',
                 'last_health_check_at'):
        op.drop_column('user_database_config', name)
    for name in ('last_error', 'attempts', 'body'):
        op.drop_column('email_alerts', name)
    op.drop_index('ix_health_sweeps_started_at', table_name='health_sweeps')
    op.drop_table('health_sweeps')
