"""fewer pool indexes: none that no query uses (each costs every pool write its upkeep)

ix_invoice_line_invoice_key repeats the first column of ix_invoice_line_summary, which serves the
same look-ups; ix_invoice_buyer_tax_id serves no query (the buyer filter ORs the tax ID with a
name search no index serves, so both databases walk the date order); ix_invoice_code_number's
one look-up (an invoice by 发票代码-发票号码) finds its few rows through ix_invoice_number.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 11:20:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

DROPPED = (('invoice_line', 'ix_invoice_line_invoice_key', ['invoice_key']),
           ('invoice', 'ix_invoice_buyer_tax_id', ['buyer_tax_id']),
           ('invoice', 'ix_invoice_code_number', ['code', 'number']))


def upgrade():
    for table, name, _columns in DROPPED:
        op.drop_index(name, table_name=table)


def downgrade():
    for table, name, columns in DROPPED:
        op.create_index(name, table, columns, unique=False)
