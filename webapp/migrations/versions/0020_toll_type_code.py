"""the 数电 toll invoice's type code: 发票票种 数电发票（通行费发票） is code 59

Files imported before the product knew the kind kept it under its name with no code (docs/codes.md,
票种): shown and counted, but not found by the pool's 票种 filter. This gives those invoices their
code, and marks their company-months changed so the kept figures per code are counted again.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 23:00:00

"""
import sqlalchemy as sa
from alembic import op

# the name as the importer spells it (channels.invoice_types.canonical_type_name), frozen here
TOLL_NAME, TOLL_CODE = "数电发票（通行费发票）", "59"
_WHERE = "type_name = :name AND coalesce(type_code, '') = :code"
_MARK = sa.text("UPDATE invoice_month_summary SET version = version + 1 WHERE EXISTS (SELECT 1 FROM invoice "
                "WHERE invoice.tax_id = invoice_month_summary.tax_id AND invoice.month = invoice_month_summary.month "
                f"AND {_WHERE})")
_RECODE = sa.text(f"UPDATE invoice SET type_code = :new WHERE {_WHERE}")

# revision identifiers, used by Alembic.
revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def _recode(old: str | None, new: str | None) -> None:
    """The toll invoices coded `old` get code `new`; their company-months' kept figures become stale."""
    conn = op.get_bind()
    conn.execute(_MARK, {"name": TOLL_NAME, "code": old or ""})
    conn.execute(_RECODE, {"name": TOLL_NAME, "code": old or "", "new": new})


def upgrade():
    _recode(None, TOLL_CODE)


def downgrade():
    _recode(TOLL_CODE, None)
