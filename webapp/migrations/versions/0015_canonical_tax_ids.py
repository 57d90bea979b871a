"""canonical tax IDs: every stored 纳税人识别号 upper case, without spaces (README, Access)

A workbook or a bureau answer that wrote `91330100ma2h4k7q1x` left its invoices under that spelling,
where no page, search or figure looked for them. Every column holding a tax ID is rewritten through
channels.records.canonical_tax_id, the one normaliser every way in now uses:

- invoice (seller and buyer), invoice_source (seller and buyer), batch: rewritten in place. Invoice
  keys (the 数电 number, else 发票代码-发票号码), and so invoice_line's and invoice_source's keys
  and the detail URLs, hold no tax ID: no two invoices can collide.
- invoice_month_summary (keyed by tax ID and month): a row under another spelling is dropped and the
  canonical row of its month marked changed (its version bumped, or created), so 销项汇总, the
  coverage grid and `pool stats` count that month again, with every invoice now under one tax ID.
- company (tax ID unique): spellings of one company in one org become the canonical row (else the
  oldest); its empty fields are filled from the other's (乐企 enabled if either was), the other's
  batches and grants move to it, then the other is deleted. Spellings of one tax ID in two orgs stop
  the migration with a message: whose company it is cannot be decided here.
- quota_use (unique per tax ID, invoicing month, type and day): of two spellings of one day's
  application the canonical row is kept, marked fetched if either was, given the other's serial
  and subtask where it had none; the other is deleted.

Schedules, their runs, subtasks, users and settings hold no tax ID; the audit log keeps what was
typed, as it was. Downgrade changes nothing: the old spellings are not kept.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 20:10:00

"""
from collections import defaultdict

from alembic import op
import sqlalchemy as sa

from channels.records import canonical_tax_id


# revision identifiers, used by Alembic.
revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

REWRITTEN = (('invoice', 'tax_id'), ('invoice', 'buyer_tax_id'), ('invoice_source', 'tax_id'),
             ('invoice_source', 'buyer_tax_id'), ('batch', 'tax_id'))
COMPANY_FIELDS = ('receipt_channel', 'leqi_since', 'etax_account')


def upgrade():
    conn = op.get_bind()
    companies = _companies_by_tax_id(conn)  # first: a refusal leaves the database as it was
    months = _months_with_other_spellings(conn)
    for table, column in REWRITTEN:
        _rewrite(conn, table, column, _other_spellings(conn, table, column))
    _mark_months_changed(conn, months)
    _merge_companies(conn, companies)
    _merge_quota_use(conn)


def downgrade():
    pass


def _other_spellings(conn, table, column):
    """{stored spelling: canonical tax ID} of the column's values not yet canonical."""
    values = conn.execute(sa.text(f"SELECT DISTINCT {column} FROM {table} WHERE {column} IS NOT NULL")).scalars()
    return {value: canonical_tax_id(value) for value in values if canonical_tax_id(value) != value}


def _rewrite(conn, table, column, spellings):
    """One UPDATE through a temporary table of spellings: the buyer's tax ID has no index, so one
    statement per spelling would walk the whole pool once each."""
    if not spellings:
        return
    conn.execute(sa.text("CREATE TEMPORARY TABLE tax_id_spelling (spelled VARCHAR(30) PRIMARY KEY, "
                         "canonical VARCHAR(30) NOT NULL)"))
    conn.execute(sa.text("INSERT INTO tax_id_spelling (spelled, canonical) VALUES (:spelled, :canonical)"),
                 [{"spelled": old, "canonical": new} for old, new in spellings.items()])
    conn.execute(sa.text(f"UPDATE {table} SET {column} = (SELECT canonical FROM tax_id_spelling "
                         f"WHERE spelled = {table}.{column}) WHERE {column} IN (SELECT spelled FROM tax_id_spelling)"))
    conn.execute(sa.text("DROP TABLE tax_id_spelling"))


def _months_with_other_spellings(conn):
    """(canonical tax ID, month) of every invoice or kept month under another spelling, found
    before the invoices are rewritten; the kept rows under other spellings are deleted."""
    months = set()
    for tax_id in _other_spellings(conn, 'invoice', 'tax_id'):
        months.update((canonical_tax_id(tax_id), month) for month in conn.execute(
            sa.text("SELECT DISTINCT month FROM invoice WHERE tax_id = :t"), {"t": tax_id}).scalars())
    for tax_id in _other_spellings(conn, 'invoice_month_summary', 'tax_id'):
        months.update((canonical_tax_id(tax_id), month) for month in conn.execute(
            sa.text("SELECT month FROM invoice_month_summary WHERE tax_id = :t"), {"t": tax_id}).scalars())
        conn.execute(sa.text("DELETE FROM invoice_month_summary WHERE tax_id = :t"), {"t": tax_id})
    return months


def _mark_months_changed(conn, months):
    """What the pool write does (webapp.summary.mark_months_changed): the month's kept figures are stale."""
    if months:
        conn.execute(sa.text(
            "INSERT INTO invoice_month_summary (tax_id, month, version) VALUES (:t, :m, 1) "
            "ON CONFLICT (tax_id, month) DO UPDATE SET version = invoice_month_summary.version + 1"),
            [{"t": tax_id, "m": month} for tax_id, month in sorted(months)])


def _companies_by_tax_id(conn):
    """{canonical tax ID: its company rows, oldest first}; RuntimeError (in Chinese, saying what to
    do) when spellings of one tax ID belong to two orgs."""
    spellings = defaultdict(list)
    for row in conn.execute(sa.text("SELECT * FROM company ORDER BY id")).mappings():
        spellings[canonical_tax_id(row['tax_id'])].append(dict(row))
    for tax_id, rows in spellings.items():
        if len({row['org_id'] for row in rows}) > 1:
            raise RuntimeError(f"税号 {tax_id} 在多个组织中以不同写法登记（{'、'.join(r['tax_id'] for r in rows)}），"
                               "请先在其中一个组织删除或更正该企业，再执行 flask db upgrade")
    return spellings


def _merge_companies(conn, spellings):
    """Each tax ID's companies become one row under the canonical spelling."""
    for tax_id, rows in spellings.items():
        keep = next((row for row in rows if row['tax_id'] == tax_id), rows[0])
        for other in rows:
            if other is not keep:
                _merge_company(conn, keep, other)
        if keep['tax_id'] != tax_id:
            conn.execute(sa.text("UPDATE company SET tax_id = :t WHERE id = :id"), {"t": tax_id, "id": keep['id']})


def _merge_company(conn, keep, other):
    """`other` folded into `keep`: fields `keep` lacks, its batches and its grants; then deleted."""
    filled = {field: keep[field] if keep[field] is not None else other[field] for field in COMPANY_FIELDS}
    filled['leqi_enabled'] = bool(keep['leqi_enabled'] or other['leqi_enabled'])
    keep.update(filled)
    conn.execute(sa.text("UPDATE company SET receipt_channel = :receipt_channel, leqi_since = :leqi_since, "
                         "etax_account = :etax_account, leqi_enabled = :leqi_enabled WHERE id = :id"),
                 {**filled, "id": keep['id']})
    ids = {"keep": keep['id'], "other": other['id']}
    conn.execute(sa.text("UPDATE batch SET company_id = :keep WHERE company_id = :other"), ids)
    conn.execute(sa.text("INSERT INTO user_company (user_id, company_id) SELECT user_id, :keep FROM user_company "
                         "WHERE company_id = :other AND user_id NOT IN "
                         "(SELECT user_id FROM user_company WHERE company_id = :keep)"), ids)
    conn.execute(sa.text("DELETE FROM user_company WHERE company_id = :other"), ids)
    conn.execute(sa.text("DELETE FROM company WHERE id = :other"), ids)


def _merge_quota_use(conn):
    """Each application under another spelling renamed, or folded into the canonical row of its day."""
    for tax_id, canonical in _other_spellings(conn, 'quota_use', 'tax_id').items():
        rows = conn.execute(sa.text("SELECT * FROM quota_use WHERE tax_id = :t ORDER BY id"), {"t": tax_id}).mappings()
        for row in list(rows):
            day = {"t": canonical, "m": row['invoice_month'], "c": row['type_code'], "d": row['requested_on']}
            kept = conn.execute(sa.text("SELECT * FROM quota_use WHERE tax_id = :t AND invoice_month = :m "
                                        "AND type_code = :c AND requested_on = :d"), day).mappings().first()
            if kept is None:
                conn.execute(sa.text("UPDATE quota_use SET tax_id = :t WHERE id = :id"), {"t": canonical, "id": row['id']})
                continue
            conn.execute(sa.text("UPDATE quota_use SET fetched = :fetched, serial = :serial, subtask_id = :subtask "
                                 "WHERE id = :id"),
                         {"fetched": bool(kept['fetched'] or row['fetched']), "serial": kept['serial'] or row['serial'],
                          "subtask": kept['subtask_id'] or row['subtask_id'], "id": kept['id']})
            conn.execute(sa.text("DELETE FROM quota_use WHERE id = :id"), {"id": row['id']})
