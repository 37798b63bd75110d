"""content placement and switching databases

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 06:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('user_database_config', sa.Column(
        'content_placement', sa.Text(), server_default='main', nullable=False))
    op.add_column('user_database_config', sa.Column('previous_encrypted_url', sa.Text()))
    op.add_column('user_database_config', sa.Column('previous_instance_id', sa.UUID()))
    op.add_column('user_database_config', sa.Column('previous_database_mode', sa.Text()))
    op.create_check_constraint(op.f('ck_user_database_config_content_placement'),
                               'user_database_config', "content_placement in ('main','user')")
    op.create_check_constraint(op.f('ck_user_database_config_previous_database_mode'),
                               'user_database_config',
                               "previous_database_mode in ('keep','delete')")
    # Until now "switched over" was implied by a completed deployment while connected or
    # in error; make it explicit.
    op.execute("update user_database_config set content_placement = 'user' "
               "where deployment_status = 'deployed' "
               "and connection_status in ('connected', 'error', 'moving')")


def downgrade() -> None:
    op.drop_constraint(op.f('ck_user_database_config_previous_database_mode'),
                       'user_database_config')
    op.drop_constraint(op.f('ck_user_database_config_content_placement'),
                       'user_database_config')
    for column in ('previous_database_mode', 'previous_instance_id', 'previous_encrypted_url',
                   'content_placement'):
        op.drop_column('user_database_config', column)

