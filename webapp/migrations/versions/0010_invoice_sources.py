"""invoice sources (来源核对); 销项汇总 per company-month and a covering index

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 04:30:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

MONEY = sa.Numeric(18, 2)


def upgrade():
    op.create_table(
        'invoice_source',
        sa.Column('invoice_key', sa.String(length=40), nullable=False),
        sa.Column('source', sa.String(length=10), nullable=False),
        sa.Column('tax_id', sa.String(length=30), nullable=False),
        sa.Column('month', sa.String(length=7), nullable=False),
        sa.Column('batch_id', sa.Integer(), nullable=True),
        sa.Column('first_seen_at', sa.DateTime(), nullable=False),
        sa.Column('last_seen_at', sa.DateTime(), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=True),
        sa.Column('amount', MONEY, nullable=True),
        sa.Column('tax', MONEY, nullable=True),
        sa.Column('total', MONEY, nullable=True),
        sa.Column('buyer_tax_id', sa.String(length=30), nullable=True),
        sa.Column('buyer_name', sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint('invoice_key', 'source'),
    )
    op.create_index('ix_invoice_source_tax_id_month', 'invoice_source', ['tax_id', 'month', 'source'], unique=False)
    # what the pool already holds came from the source it names
    op.execute(
        "INSERT INTO invoice_source (invoice_key, source, tax_id, month, batch_id, first_seen_at, last_seen_at, "
        "status, amount, tax, total, buyer_tax_id, buyer_name) "
        "SELECT key, source, tax_id, month, batch_id, synced_at, synced_at, status, amount, tax, total, "
        "buyer_tax_id, buyer_name FROM invoice")
    op.create_index('ix_invoice_line_summary', 'invoice_line', ['invoice_key', 'tax_rate', 'amount', 'tax'],
                    unique=False)
    op.create_table(
        'invoice_month_summary',
        sa.Column('tax_id', sa.String(length=30), nullable=False),
        sa.Column('month', sa.String(length=7), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('summary_version', sa.Integer(), nullable=True),
        sa.Column('summary', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('tax_id', 'month'),
    )
    op.execute("INSERT INTO invoice_month_summary (tax_id, month, version) SELECT DISTINCT tax_id, month, 1 FROM invoice")


def downgrade():
    op.drop_table('invoice_month_summary')
    op.drop_index('ix_invoice_line_summary', table_name='invoice_line')
    op.drop_index('ix_invoice_source_tax_id_month', table_name='invoice_source')
    op.drop_table('invoice_source')
