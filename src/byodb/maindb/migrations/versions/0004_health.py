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


def downgrade() -> None:
    op.drop_index('ix_health_sweeps_started_at', table_name='health_sweeps')
    op.drop_table('health_sweeps')
