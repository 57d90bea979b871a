"""Which companies (tax IDs) a user may see and act on; checked on the server everywhere."""
from __future__ import annotations

from sqlalchemy import select

from channels.records import canonical_tax_id
from webapp import params
from webapp.extensions import db
from webapp.models import Batch, Company, User, user_companies


def permitted_company_ids(user: User):
    """A subquery of the company ids granted to the user."""
    return select(user_companies.c.company_id).where(user_companies.c.user_id == user.id)


def permitted_companies(user: User) -> list[Company]:
    """The companies the user may pick in forms, by tax ID."""
    return list(db.session.scalars(select(Company).where(Company.id.in_(permitted_company_ids(user)))
                                   .order_by(Company.tax_id)))


def company_for(user: User, tax_id: str) -> Company:
    """The company with this tax ID if the user is granted it; PermissionError (a Chinese reason) otherwise."""
    company = db.session.scalar(select(Company).where(Company.tax_id == canonical_tax_id(tax_id),
                                                      Company.id.in_(permitted_company_ids(user))))
    if company is None:
        raise PermissionError(f"无权访问税号 {tax_id}，或该税号不存在")
    return company


def batch_for(user: User, batch_no: str) -> Batch:
    """A batch the user may see, or 404 so other companies' batch numbers are not revealed (400 for
    what cannot be a batch number at all, webapp.params)."""
    return db.one_or_404(select(Batch)
                         .where(Batch.batch_no == params.batch_no(batch_no),
                                Batch.company_id.in_(permitted_company_ids(user))))


SCHEDULE_ADMINS_ONLY = "仅管理员可以创建、启用、停用、删除或立即执行自动更新计划，请联系管理员"


def may_manage_schedules(user: User) -> bool:
    """The 自动更新 rule (README, 自动更新 and permissions): only an org's admins create, enable,
    disable, delete or run its schedules; finance users see them, limited to their own companies."""
    return user.is_admin


def require_schedule_admin(user: User) -> None:
    """PermissionError (in Chinese) unless the user may manage schedules."""
    if not may_manage_schedules(user):
        raise PermissionError(SCHEDULE_ADMINS_ONLY)


def visible_schedule(data: dict, user: User) -> dict:
    """A schedule as `autoupdate.schedule_json` gives it, cut down to the user's companies: the tax
    IDs it covers and the batches its runs made, so no other company shows through it."""
    allowed = {c.tax_id for c in permitted_companies(user)}
    numbers = [n for run in data["last_runs"] for n in run["batches"]]
    visible = set(db.session.scalars(select(Batch.batch_no).where(
        Batch.batch_no.in_(numbers), Batch.company_id.in_(permitted_company_ids(user))))) if numbers else set()
    companies = {channel: [t for t in ids if t in allowed] for channel, ids in data["companies"].items()}
    runs = [{**run, "batches": [n for n in run["batches"] if n in visible]} for run in data["last_runs"]]
    return {**data, "companies": {channel: ids for channel, ids in companies.items() if ids}, "last_runs": runs}
