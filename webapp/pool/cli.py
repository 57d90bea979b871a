"""`pool …` commands: a company's pool figures, one invoice, 同步覆盖. The group also holds `pool summary`
(webapp.summary.cli) and `pool diff` (webapp.reconcile.cli), registered by webapp.cli.init_app: those
features read the pool, so the pool's own module does not import them."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from webapp.cli import fail, print_json
from webapp.clock import now
from webapp.params import TAX_ID, TEXT, YEAR
from webapp.pool import blue_facts, find_invoice, invoice_json, pool_stats, red_invoices_of
from webapp.pool.coverage import coverage, coverage_json
from webapp.pool.redflush import assess, to_json

pool_group = AppGroup("pool", help="销项发票池")


@pool_group.command("stats")
@click.option("--tax-id", required=True, type=TAX_ID)
def pool_stats_command(tax_id):
    """One company's pool figures."""
    print_json(pool_stats(tax_id))


@pool_group.command("show")
@click.argument("key", type=TEXT)
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
@click.option("--year", type=YEAR, required=True)
def pool_coverage(tax_id, year):
    """同步覆盖 of one company and year: {"YYYY-MM": {type code: {"invoices", "last_synced", "source"}}}."""

    print_json(coverage_json(coverage(tax_id, now().date(), year)))


COMMANDS = (pool_group,)
