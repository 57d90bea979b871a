"""来源核对's findings per company-month kept beside the pool's figures (同步覆盖's 来源差异 marks)

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06 23:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('invoice_month_summary', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sources_version', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('sources', sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table('invoice_month_summary', schema=None) as batch_op:
        batch_op.drop_column('sources')
        batch_op.drop_column('sources_version')
