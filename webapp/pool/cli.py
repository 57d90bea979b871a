"""`pool …` commands: a company's pool figures, one invoice, 同步覆盖, 销项汇总 and 来源核对."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from webapp.cli import TAX_ID, fail, month_arg, print_json
from webapp.clock import now
from webapp.pool import blue_facts, find_invoice, invoice_json, pool_stats, red_invoices_of
from webapp.pool.coverage import coverage, coverage_json
from webapp.pool.redflush import assess, to_json
from webapp.reconcile import source_report
from webapp.summary import summary_json, year_summary

pool_group = AppGroup("pool", help="销项发票池")


@pool_group.command("stats")
@click.option("--tax-id", required=True, type=TAX_ID)
def pool_stats_command(tax_id):
    """One company's pool figures."""
    print_json(pool_stats(tax_id))


@pool_group.command("show")
@click.argument("key")
def pool_show(key):
    """One invoice with its lines, red link, usage statuses and red-flush readiness."""

    invoice = find_invoice(key)
    if invoice is None:
        fail(f"发票池中没有该发票：{key}")
    reds = red_invoices_of(invoice)
    data = invoice_json(invoice)
    data["red_invoices"] = [r.key for r in reds]
    data["red_flush"] = None if invoice.is_red else to_json(assess(blue_facts(invoice, reds), now()))
    print_json(data)


@pool_group.command("coverage")
@click.option("--tax-id", required=True, type=TAX_ID)
@click.option("--year", type=int, required=True)
def pool_coverage(tax_id, year):
    """同步覆盖 of one company and year: {"YYYY-MM": {type code: {"invoices", "last_synced", "source"}}}."""

    print_json(coverage_json(coverage(tax_id, now().date(), year)))


@pool_group.command("summary")
@click.option("--tax-id", required=True, type=TAX_ID)
@click.option("--year", type=int, required=True)
def pool_summary(tax_id, year):
    """销项汇总 of one company and year: {"YYYY-MM": {rate: {"special"|"other": {"amount", "tax"}}}}."""

    print_json(summary_json(year_summary([tax_id], year)))


@pool_group.command("diff")
@click.option("--tax-id", required=True, type=TAX_ID)
@click.option("--month", required=True, help="YYYY-MM")
def pool_diff(tax_id, month):
    """来源核对 of one company-month: per-source counts, invoices only one source has, differing values."""

    print_json(source_report(tax_id, month_arg(month)))


COMMANDS = (pool_group,)
