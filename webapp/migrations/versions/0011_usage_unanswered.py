"""usage queries the tax bureau left unanswered: per subtask the invoice keys, per invoice the last query

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 04:30:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('subtask', schema=None) as batch_op:
        batch_op.add_column(sa.Column('unanswered_keys', sa.Text(), nullable=True))

    with op.batch_alter_table('invoice', schema=None) as batch_op:
        batch_op.add_column(sa.Column('usage_queried_at', sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('invoice', schema=None) as batch_op:
        batch_op.drop_column('usage_queried_at')

    with op.batch_alter_table('subtask', schema=None) as batch_op:
        batch_op.drop_column('unanswered_keys')
