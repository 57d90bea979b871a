"""audit rows linked to the companies they name, so that a viewer reads only what he may see

An admin not granted a company saw its batch numbers and tax ID in 审计日志 (README, Access).
Each row now lists the companies it names (table audit_company): a tax ID of the row's org, or a
batch number of one of its batches, found in the row's target or anywhere in its details; the page
shows a row only when the viewer is granted every company it names. Rows already stored are linked
here by the same rule as webapp.accounts.audit.named_companies.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 20:40:00

"""
import json

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def _words(value) -> set:
    """Every text in a JSON value, and the parts of a target joined by 、."""
    if isinstance(value, dict):
        return set().union(*map(_words, value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*map(_words, value)) if value else set()
    return {str(value)} if value is not None else set()


def upgrade():
    op.create_table('audit_company',
    sa.Column('audit_id', sa.Integer(), nullable=False),
    sa.Column('company_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['audit_id'], ['audit_log.id'], name=op.f('fk_audit_company_audit_id_audit_log'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['company_id'], ['company.id'], name=op.f('fk_audit_company_company_id_company'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('audit_id', 'company_id', name=op.f('pk_audit_company'))
    )
    with op.batch_alter_table('audit_company', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_company_company_id'), ['company_id'], unique=False)

    conn = op.get_bind()
    companies = {(org, tax_id): id_ for id_, org, tax_id in conn.execute(sa.text("SELECT id, org_id, tax_id FROM company"))}
    batches = {no: company for no, company in conn.execute(sa.text("SELECT batch_no, company_id FROM batch"))}
    links = []
    for audit_id, org_id, target, details in conn.execute(sa.text("SELECT id, org_id, target, details FROM audit_log")):
        words = set((target or "").split("、"))
        if details:
            try:
                words |= _words(json.loads(details))
            except ValueError:
                pass
        named = {companies.get((org_id, w)) for w in words} | {batches.get(w) for w in words}
        links += [{"audit_id": audit_id, "company_id": c} for c in named - {None}]
    if links:
        conn.execute(sa.text("INSERT INTO audit_company (audit_id, company_id) VALUES (:audit_id, :company_id)"), links)


def downgrade():
    op.drop_table('audit_company')
