"""Orgs, users, companies and grants: shared by the admin pages, the CLI and the demo seed."""
from __future__ import annotations

import re
from datetime import date

from sqlalchemy import select

from webapp.extensions import db
from webapp.models import Company, Org, User
from webapp.params import check_tax_id
from webapp.statuses import Role

DEFAULT_ORG = "演示组织"


def _fits(text: str, column, what: str) -> str:
    """Text no longer than its column holds (PostgreSQL refuses longer text; SQLite would keep it), or
    ValueError in Chinese."""
    if len(text) > column.type.length:
        raise ValueError(f"{what}最多 {column.type.length} 个字符，请缩短后重试")
    return text


def get_or_create_org(name: str) -> Org:
    """The org of this name, created on first use (the commands' --org, the demo seed)."""
    name = _fits((name or "").strip(), Org.name, "组织名称")
    if not name:
        raise ValueError("组织名称不能为空")
    org = db.session.scalar(select(Org).filter_by(name=name))
    if org is None:
        org = Org(name=name)
        db.session.add(org)
        db.session.flush()
    return org


def check_company_name(name: str | None) -> str:
    """A company's name without surrounding spaces, or ValueError in Chinese."""
    name = (name or "").strip()
    if not name:
        raise ValueError("企业名称不能为空")
    return _fits(name, Company.name, "企业名称")


def check_etax_account(account: str | None) -> str:
    """A company's 默认电子税局账号 (RPA) as the column holds it, or ValueError in Chinese."""
    return _fits(account or "", Company.etax_account, "默认电子税局账号")


def org_company(tax_id: str, org_id: int) -> Company | None:
    """The org's company with this tax ID (None: not registered yet), or ValueError when the tax ID
    belongs to another org (the message does not say which)."""
    tax_id = check_tax_id(tax_id)
    company = db.session.scalar(select(Company).filter_by(tax_id=tax_id))
    if company is not None and company.org_id != org_id:
        raise ValueError(f"税号 {tax_id} 不能在本组织使用，请确认税号是否正确")
    return company


def save_company(tax_id: str, name: str, org: Org, added_by: User | None = None, **fields) -> Company:
    """Add a company, or update the one with this tax ID (it must belong to the same org).

    The user who adds a company (an admin on 企业信息) is granted it at once, so it shows in
    their own import dialog without a second trip to 用户与授权.
    """
    tax_id, name = check_tax_id(tax_id), check_company_name(name)
    company = org_company(tax_id, org.id)
    grant = None
    if company is None:
        company = Company(tax_id=tax_id, org_id=org.id)
        db.session.add(company)
        grant = added_by
    company.name = name
    for field, value in fields.items():
        setattr(company, field, value)
    db.session.flush()
    if grant is not None:
        grant.companies.append(company)
        db.session.flush()
    return company


def check_username(username: str | None) -> str:
    """A user name without surrounding spaces, or ValueError in Chinese."""
    username = (username or "").strip()
    if not re.match(r"^[A-Za-z0-9_.-]{2,64}$", username):
        raise ValueError("用户名须为2至64位字母、数字、下划线、点或连字符")
    return username


EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")  # what a mail server can take; the server decides the rest


def check_email(address: str | None) -> str | None:
    """A user's e-mail address for alerts (webapp.health.alerts): empty means none."""
    address = (address or "").strip()
    if not address:
        return None
    if len(address) > 254 or not EMAIL.match(address):
        raise ValueError("邮箱格式不正确，例如 name@example.com")
    return address


def check_role(role: str | None) -> str:
    if role not in Role:
        raise ValueError(f"角色须为 {' 或 '.join(Role)}")
    return role


def org_user(username: str, org_id: int) -> User | None:
    """The org's user of this name (None: a new user), or ValueError when another org has it."""
    username = check_username(username)
    user = db.session.scalar(select(User).filter_by(username=username))
    if user is not None and user.org_id != org_id:
        raise ValueError(f"用户名 {username} 不可用，请换一个用户名")
    return user


def check_password(password: str | None, *, new_user: bool) -> None:
    """A new user needs a password; a password, new or changed, has at least 6 characters."""
    if not password and new_user:
        raise ValueError("新用户须设置密码")
    if password and len(password) < 6:
        raise ValueError("密码至少6位")


def save_user(username: str, org: Org, role: str, password: str | None = None) -> User:
    """Add a user, or update one of the same org; a new user needs a password."""
    username, role = check_username(username), check_role(role)
    user = org_user(username, org.id)
    check_password(password, new_user=user is None)
    if user is None:
        user = User(username=username, org_id=org.id)
        db.session.add(user)
    user.role = role
    if password:
        user.set_password(password)
    db.session.flush()
    return user


def org_companies(tax_ids: list[str], org_id: int) -> list[Company]:
    """The org's companies with these tax IDs, or ValueError naming one the org does not have."""
    companies = []
    for tax_id in tax_ids:
        company = db.session.scalar(select(Company).filter_by(tax_id=check_tax_id(tax_id), org_id=org_id))
        if company is None:
            raise ValueError(f"本组织没有税号为 {tax_id} 的企业")
        companies.append(company)
    return companies


def set_grants(user: User, tax_ids: list[str]) -> None:
    """Grant exactly these tax IDs of the user's org to the user."""
    user.companies = org_companies(tax_ids, user.org_id)


def seed_demo() -> dict:
    """演示组织 with admin/caiwu and 杭州示例科技有限公司 granted to both; running it twice changes nothing."""
    org = get_or_create_org(DEFAULT_ORG)
    company = db.session.scalar(select(Company).filter_by(tax_id="91330100MA2H4K7Q1X"))
    if company is None:
        company = save_company("91330100MA2H4K7Q1X", "杭州示例科技有限公司", org, receipt_channel="乐企平台",
                               leqi_enabled=True, leqi_since=date(2023, 1, 1),
                               etax_account="91330100MA2H4K7Q1X-etax")  # as the sandbox tax bureau knows it
    users = {}
    for username, password, role in (("admin", "admin123", Role.ADMIN), ("caiwu", "caiwu123", Role.FINANCE)):
        user = db.session.scalar(select(User).filter_by(username=username))
        if user is None:
            user = save_user(username, org, role, password)
        if company not in user.companies:
            user.companies.append(company)
        users[username] = role
    return {"org": org.name, "users": users, "companies": [company.tax_id]}
