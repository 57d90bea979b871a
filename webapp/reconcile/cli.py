"""`pool diff`: 来源核对 from the command line (README, Command line). Registered under the `pool` group
by webapp.cli.init_app, where the README documents it."""
from __future__ import annotations

import click
from flask.cli import with_appcontext

from webapp.cli import print_json
from webapp.params import MONTH, TAX_ID
from webapp.reconcile import source_report


@click.command("diff")
@with_appcontext
@click.option("--tax-id", required=True, type=TAX_ID)
@click.option("--month", required=True, type=MONTH)
def pool_diff(tax_id, month):
    """来源核对 of one company-month: per-source counts, invoices only one source has, differing values."""

    print_json(source_report(tax_id, month))


POOL_COMMANDS = (pool_diff,)  # `flask pool diff`
