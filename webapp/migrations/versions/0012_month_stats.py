"""pool figures per company-month (coverage grid, pool stats) kept beside 销项汇总

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 05:40:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('invoice_month_summary', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stats_version', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('stats', sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table('invoice_month_summary', schema=None) as batch_op:
        batch_op.drop_column('stats')
        batch_op.drop_column('stats_version')
