"""file imports: the list of unreadable rows and the parse attempts of a batch

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 04:30:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('batch', schema=None) as batch_op:
        batch_op.add_column(sa.Column('error_rows', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('parse_attempts', sa.Integer(), nullable=False, server_default='0'))


def downgrade():
    with op.batch_alter_table('batch', schema=None) as batch_op:
        batch_op.drop_column('parse_attempts')
        batch_op.drop_column('error_rows')
