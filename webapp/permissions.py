"""Which companies (tax IDs) a user may see and act on; checked on the server everywhere."""
from __future__ import annotations

from flask import abort
from sqlalchemy import select

from .extensions import db
from .models import Batch, Company, User, user_companies


def permitted_company_ids(user: User):
    """A subquery of the company ids granted to the user."""
    return select(user_companies.c.company_id).where(user_companies.c.user_id == user.id)


def permitted_companies(user: User) -> list[Company]:
    """The companies the user may pick in forms, by tax ID."""
    return list(db.session.scalars(select(Company).where(Company.id.in_(permitted_company_ids(user))).order_by(Company.tax_id)))


def company_for(user: User, tax_id: str) -> Company:
    """The company with this tax ID if the user is granted it; PermissionError (a Chinese reason) otherwise."""
    company = db.session.scalar(select(Company).where(Company.tax_id == tax_id, Company.id.in_(permitted_company_ids(user))))
    if company is None:
        raise PermissionError(f"无权访问税号 {tax_id}，或该税号不存在")
    return company


def batch_for(user: User, batch_no: str) -> Batch:
    """A batch the user may see, or 404 so other companies' batch numbers are not revealed."""
    batch = db.session.scalar(select(Batch).where(Batch.batch_no == batch_no, Batch.company_id.in_(permitted_company_ids(user))))
    if batch is None:
        abort(404)
    return batch
