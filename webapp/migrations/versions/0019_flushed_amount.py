"""a blue invoice's flushed amount: the sum of the red invoices in the pool that name it

The list and the status filter show a blue invoice whose file still says 正常 as flushed when the
pool holds its red invoices (docs/codes.md, 红字发票如何指向蓝字发票); webapp.pool.flushes keeps invoice.flushed_amount as
invoices are saved; this fills it for the pool already stored, by the same SQL.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 20:30:00

"""
import sqlalchemy as sa
from alembic import op

# the sum as webapp.pool.flushes computes it today, frozen here (a migration never follows later code)
_FLUSHED = ("(SELECT SUM(ABS(r.amount)) FROM invoice r WHERE r.red_of IN (invoice.key, invoice.code || '-' || "
            "invoice.number) AND r.is_red = {true} AND r.tax_id || '' = invoice.tax_id)")

# revision identifiers, used by Alembic.
revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('invoice', schema=None) as batch_op:
        batch_op.add_column(sa.Column('flushed_amount', sa.Numeric(precision=18, scale=2), nullable=True))
    conn = op.get_bind()
    false, true = ("false", "true") if conn.dialect.name == "postgresql" else ("0", "1")
    flushed = _FLUSHED.format(true=true)
    conn.exec_driver_sql(
        f"UPDATE invoice SET flushed_amount = {flushed} WHERE is_red = {false} AND "
        f"(key IN (SELECT red_of FROM invoice WHERE is_red = {true} AND red_of IS NOT NULL) OR "
        f"code || '-' || number IN (SELECT red_of FROM invoice WHERE is_red = {true} AND red_of IS NOT NULL))")


def downgrade():
    with op.batch_alter_table('invoice', schema=None) as batch_op:
        batch_op.drop_column('flushed_amount')
