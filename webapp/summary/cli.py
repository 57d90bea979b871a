"""`pool summary`: 销项汇总 from the command line (README, Command line). Registered under the `pool`
group by webapp.cli.init_app, where the README documents it."""
from __future__ import annotations

import click
from flask.cli import with_appcontext

from webapp.cli import print_json
from webapp.params import TAX_ID, YEAR
from webapp.summary import summary_json, year_summary


@click.command("summary")
@with_appcontext
@click.option("--tax-id", required=True, type=TAX_ID)
@click.option("--year", type=YEAR, required=True)
def pool_summary(tax_id, year):
    """销项汇总 of one company and year: {"YYYY-MM": {rate: {"special"|"other": {"amount", "tax"}}}}."""

    print_json(summary_json(year_summary([tax_id], year)))


POOL_COMMANDS = (pool_summary,)  # `flask pool summary`
