"""`flask doctor`: every health check as a table (or JSON for scripts); exit status 1 on any fault."""
from __future__ import annotations

import sys
import unicodedata

import click
from flask.cli import with_appcontext

from webapp.cli import print_json
from webapp.health import overall, run_checks
from webapp.statuses import HealthStatus


def health_json(results) -> dict:
    """The checks by name with the overall status: what `doctor --json` and /healthz answer."""
    return {"status": overall(results).value, "checks": {r.check.name: r.json() for r in results}}


def _columns(text: str) -> int:
    """Terminal columns a text takes: a Chinese character is two wide."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of the table")
@with_appcontext
def doctor_command(as_json: bool):
    """检查系统状态：数据库、Redis、后台进程、通道、磁盘空间、进程守护（有故障时退出码为 1）."""
    results = run_checks()
    if as_json:
        print_json(health_json(results))
    else:
        rows = [("检查项", "状态", "说明")] + [(r.check.label, r.finding.status.label, r.finding.message)
                                               for r in results]
        width = max(_columns(label) for label, _, _ in rows)
        for label, status, message in rows:
            click.echo(f"{label}{' ' * (width - _columns(label))}  {status}  {message}")
    if overall(results) == HealthStatus.FAULT:
        sys.exit(1)
