"""Commands for orgs, users and companies: `seed-demo`, `enterprise add`, `user add`."""
from __future__ import annotations

import click
from flask.cli import AppGroup, with_appcontext

from webapp import accounts
from webapp.accounts import audit
from webapp.cli import fail, print_json
from webapp.statuses import Role
from webapp.transactions import write_transaction


@click.command("seed-demo")
@with_appcontext
def seed_demo_command():
    """Create the demo org, users and company (idempotent)."""
    with write_transaction():
        result = accounts.seed_demo()
    print_json(result)


enterprise = AppGroup("enterprise", help="企业信息")


@enterprise.command("add")
@click.option("--tax-id", required=True)
@click.option("--name", required=True)
@click.option("--org", default=accounts.DEFAULT_ORG, show_default=True)
def enterprise_add(tax_id, name, org):
    """Add a company, or rename an existing one of the same org."""
    try:
        with write_transaction():
            company = accounts.save_company(tax_id, name, accounts.get_or_create_org(org))
            print_json({"tax_id": company.tax_id, "name": company.name, "org": org})
    except ValueError as exc:
        fail(str(exc))
    audit.record("company.save", company.tax_id, actor="命令行", org_id=company.org_id, name=company.name)


user_group = AppGroup("user", help="用户")


@user_group.command("add")
@click.argument("username")
@click.option("--password", required=True)
@click.option("--org", default=accounts.DEFAULT_ORG, show_default=True)
@click.option("--role", type=click.Choice(Role.codes()), default=Role.FINANCE.value, show_default=True)
@click.option("--grant", "grants", multiple=True, help="a tax ID the user may work on; repeatable")
@click.option("--email", default=None, help="address for alert e-mail (admins)")
def user_add(username, password, org, role, grants, email):
    """Add a user (or update one of the same org) with the tax IDs granted to them."""
    try:
        with write_transaction():
            user = accounts.save_user(username, accounts.get_or_create_org(org), role, password)
            accounts.set_grants(user, list(grants))
            if email is not None:
                user.email = accounts.check_email(email)
            print_json({"username": user.username, "org": org, "role": role, "email": user.email,
                        "grants": [c.tax_id for c in user.companies]})
    except ValueError as exc:
        fail(str(exc))
    audit.record("user.save", user.username, actor="命令行", org_id=user.org_id, role=role,
                 password_changed=True, grants=[c.tax_id for c in user.companies])


COMMANDS = (seed_demo_command, enterprise, user_group)
