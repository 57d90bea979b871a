"""`pool …` commands: a company's pool figures, one invoice, 同步覆盖. The group also holds `pool summary`
(webapp.summary.cli) and `pool diff` (webapp.reconcile.cli), registered by webapp.cli.init_app: those
features read the pool, so the pool's own module does not import them."""
from __future__ import annotations

import click
from flask.cli import AppGroup
from sqlalchemy import select

from webapp.accounts import audit
from webapp.cli import fail, print_json
from webapp.clock import now
from webapp.extensions import db
from webapp.models import Company
from webapp.params import LINE_ENTRY, TAX_ID, TEXT, YEAR, Choice, Refused
from webapp.pool import blue_facts, find_invoice, invoice_json, line_balances, pool_stats, red_invoices_of
from webapp.pool.coverage import coverage, coverage_json
from webapp.pool.flushed_lines import balance_json
from webapp.pool.redflush import assess, to_json
from webapp.pool.redflush_draft import DraftRefused, audit_details, draft_json, entry_of, make_draft
from webapp.statuses import DraftForm, DraftRefusal, RedFlushReason

pool_group = AppGroup("pool", help="销项发票池")


@pool_group.command("stats")
@click.option("--tax-id", required=True, type=TAX_ID)
def pool_stats_command(tax_id):
    """One company's pool figures."""
    print_json(pool_stats(tax_id))


@pool_group.command("show")
@click.argument("key", type=TEXT)
def pool_show(key):
    """One invoice with its lines, red link, usage statuses, red-flush readiness and what is left per line."""

    invoice = find_invoice(key)
    if invoice is None:
        fail(f"发票池中没有该发票：{key}")
    reds = red_invoices_of(invoice)
    data = invoice_json(invoice)
    data["red_invoices"] = [r.key for r in reds]
    data["red_flush"] = None if invoice.is_red else to_json(assess(blue_facts(invoice, reds), now()))
    data["flushed_lines"] = None if invoice.is_red else balance_json(line_balances(invoice, reds))
    print_json(data)


@pool_group.command("coverage")
@click.option("--tax-id", required=True, type=TAX_ID)
@click.option("--year", type=YEAR, required=True)
def pool_coverage(tax_id, year):
    """同步覆盖 of one company and year: {"YYYY-MM": {type code: {"invoices", "last_synced", "source"}}}."""

    print_json(coverage_json(coverage(tax_id, now().date(), year)))


REASONS = {**{code: code for code in RedFlushReason.codes()},
           **{label: code for code, label in RedFlushReason.labels().items()}}


@pool_group.command("redflush-draft")
@click.option("--key", required=True, type=TEXT, help="蓝字发票：数电发票号码，或 发票代码-发票号码")
@click.option("--reason", required=True, type=Choice(REASONS, "红冲原因"),
              help="01 开票有误、02 销货退回、03 服务中止、04 销售折让（或其名称）")
@click.option("--line", "lines", multiple=True, type=LINE_ENTRY,
              help="行号=数量或金额（销货退回默认数量，其余默认金额；或 行号=qty:数量、行号=amount:金额），可重复")
def pool_redflush_draft(key, reason, lines):
    """红冲草稿: the form's fields and negative lines of one blue invoice, as JSON; changes nothing in
    the pool, and is recorded in the audit log. No user is named: the command sees every company."""
    invoice = find_invoice(key)
    if invoice is None:
        fail(f"发票池中没有该发票：{key}")
    reason = RedFlushReason(REASONS[reason])
    reds = red_invoices_of(invoice)
    try:
        entries = [entry_of(reason, *entry) for entry in lines]
        draft = make_draft(invoice, line_balances(invoice, reds), assess(blue_facts(invoice, reds), now()), reason,
                           entries, now())
    except Refused as refused:
        raise click.BadParameter(str(refused), param_hint="--line") from None
    except DraftRefused as refused:
        if refused.code in DraftRefusal.ABOUT_INVOICE:
            fail(str(refused))
        raise click.UsageError(str(refused)) from None
    company = db.session.scalar(select(Company).where(Company.tax_id == invoice.tax_id))
    audit.record("redflush.draft", invoice.key, org_id=company.org_id if company else None,
                 **audit_details(draft, DraftForm.COMMAND))
    print_json(draft_json(draft))


COMMANDS = (pool_group,)
