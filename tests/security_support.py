"""The cast of the security tests: the demo org's company X (granted to 财务 caiwu and to admin),
its company D (granted to admin only), and another org with company O and its user wang."""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from webapp import accounts
from webapp.extensions import db
from webapp.models import Company, Invoice, User
from webapp.pool.month_stats import mark_months_changed
from webapp.transactions import write_transaction

from .conftest import DEMO_TAX_ID

X = {"tax_id": DEMO_TAX_ID, "name": "杭州示例科技有限公司"}
D = {"tax_id": "91330100MA2D0SEC7K", "name": "保密子公司甲有限公司"}
O = {"tax_id": "91110000MA0OTHER9Q", "name": "他组织机密贸易有限公司"}  # noqa: E741  (X, D and O as the issue names them)
OTHER_ORG = "其他组织"


CAST_NOW = datetime(2026, 11, 20, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))  # the clock the security tests act at


@pytest.fixture
def cast(app):
    """The app with the cast added and its clock set to CAST_NOW."""
    add_cast(app)
    app.config["CLOCK_NOW"] = CAST_NOW
    return app


def add_cast(app) -> None:
    """Company D (乐企 enabled, granted to admin only), and 其他组织 with company O, its admin li and
    its finance user wang (granted O)."""
    with app.app_context():
        with write_transaction():
            _add_cast()
        db.session.remove()


def _add_cast() -> None:
    """The rows add_cast describes, in the caller's transaction."""
    org = accounts.get_or_create_org(accounts.DEFAULT_ORG)
    accounts.save_company(D["tax_id"], D["name"], org, receipt_channel="乐企平台", leqi_enabled=True,
                          leqi_since=date(2023, 1, 1))
    admin = db.session.scalar(select(User).filter_by(username="admin"))
    accounts.set_grants(admin, [X["tax_id"], D["tax_id"]])
    other = accounts.get_or_create_org(OTHER_ORG)
    accounts.save_company(O["tax_id"], O["name"], other, receipt_channel="乐企平台", leqi_enabled=True,
                          leqi_since=date(2023, 1, 1))
    for username, role in (("wang", "finance"), ("li", "admin")):
        accounts.set_grants(accounts.save_user(username, other, role, "secret123"), [O["tax_id"]])


def add_invoice(tax_id: str, name: str, number: str) -> str:
    """One blue invoice of the company in the pool (the minimum the pool pages show); its key."""
    company = db.session.scalar(select(Company).filter_by(tax_id=tax_id))
    key = f"{tax_id}-{number}"
    with write_transaction():
        db.session.add(Invoice(key=key, tax_id=company.tax_id, seller_name=name, digital_number=number,
                               buyer_tax_id="91310000MA1BUYER01", buyer_name="购买方有限公司",
                               issued_at=datetime(2026, 10, 8, 10, 0), month="2026-10", amount=Decimal("100.00"),
                               tax=Decimal("13.00"), total=Decimal("113.00"), origin="电子发票服务平台",
                               type_name="数电票（增值税专用发票）", type_code="81", status="正常", is_red=False,
                               source="leqi", synced_at=datetime(2026, 11, 1, 9, 0)))
        db.session.flush()
        mark_months_changed(db.session.connection(), {(company.tax_id, "2026-10")})  # as the pool write does
    return key
