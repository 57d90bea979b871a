"""系统管理 (admins only, own org only): companies, users and their grants, errorGoodsNames."""
from __future__ import annotations

import io

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import BooleanField, PasswordField, SelectField, StringField
from wtforms.validators import Optional, StopValidation

from channels.records import canonical_tax_id
from webapp import accounts, params
from webapp.accounts import audit
from webapp.accounts.auth import SESSION_VERSION
from webapp.accounts.settings import (
    ERROR_GOODS_DEFAULT,
    ERROR_GOODS_KEY,
    get_setting,
    set_setting,
    validate_error_goods,
)
from webapp.clock import now
from webapp.extensions import db
from webapp.forms import DayField, MultiCheckbox, Rule, stripped
from webapp.models import Batch, Company, User
from webapp.statuses import DataType, Role
from webapp.transactions import write_transaction
from webapp.web import paginate, xlsx_download

bp = Blueprint("admin", __name__, url_prefix="/admin")
RECEIPT_CHANNELS = [("", "未配置"), ("乐企平台", "乐企平台"), ("电子税务局", "电子税务局")]


@bp.before_request
def _admins_only():
    if not current_user.is_authenticated or not current_user.is_admin:
        abort(403)


def _of_my_org(form, field) -> tuple:
    """A rule's arguments: the field's value and the admin's org."""
    return field.data, current_user.org_id


def _new_user(form) -> bool:
    """Whether the form adds a user (none of that name yet): a new user needs a password."""
    return db.session.scalar(select(User).filter_by(username=(form.username.data or "").strip())) is None


def _not_self(form, field) -> None:
    """An admin cannot deactivate themselves (nobody might be left to undo it)."""
    if not field.data and (form.username.data or "").strip() == current_user.username:
        raise StopValidation("不能停用自己")


class CompanyForm(FlaskForm):
    tax_id = StringField("税号", filters=[canonical_tax_id], validators=[Rule(accounts.org_company, using=_of_my_org)])
    name = StringField("企业名称", validators=[Rule(accounts.check_company_name)])
    receipt_channel = SelectField("收票通道", choices=RECEIPT_CHANNELS)
    leqi_enabled = BooleanField("已开通乐企归集能力")
    leqi_since = DayField("乐企能力授权日期", validators=[Optional(), Rule(params.bounded_day)])
    etax_account = StringField("默认电子税局账号（RPA）", filters=[stripped],
                               validators=[Rule(accounts.check_etax_account)])


class UserForm(FlaskForm):
    username = StringField("用户名", validators=[Rule(accounts.org_user, using=_of_my_org)])
    password = PasswordField("密码（留空则不修改）", validators=[
        Rule(accounts.check_password, using=lambda form, field: {"password": field.data, "new_user": _new_user(form)})])
    role = SelectField("角色", choices=Role.choices(), validate_choice=False,
                       validators=[Rule(accounts.check_role)])
    grants = MultiCheckbox("可操作的企业", validate_choice=False,
                           validators=[Rule(accounts.org_companies, using=lambda form, field: (field.data or [],
                                                                                                current_user.org_id))])
    active = BooleanField("启用", default=True, validators=[_not_self])
    email = StringField("邮箱（管理员接收告警邮件）", filters=[stripped], validators=[Rule(accounts.check_email)])


class SettingsForm(FlaskForm):
    error_goods = StringField("errorGoodsNames", filters=[stripped], validators=[Rule(validate_error_goods)])


def _org_companies() -> list[Company]:
    """The companies an admin manages: their own org's only."""
    return list(db.session.scalars(select(Company).where(Company.org_id == current_user.org_id)
                                   .order_by(Company.tax_id)))


@bp.route("/companies", methods=["GET", "POST"])
def companies():
    """企业信息: add or edit a company of the admin's org."""
    edit = params.arg("tax_id", params.tax_id, query_only=True)
    company = db.session.scalar(select(Company)
                                .where(Company.tax_id == edit, Company.org_id == current_user.org_id)) if edit else None
    form = CompanyForm(obj=company)
    if form.validate_on_submit():
        with write_transaction():
            saved = accounts.save_company(form.tax_id.data, form.name.data, current_user.org,
                                          receipt_channel=form.receipt_channel.data or None,
                                          leqi_enabled=form.leqi_enabled.data, leqi_since=form.leqi_since.data,
                                          etax_account=form.etax_account.data or None, added_by=current_user)
        audit.record("company.save", saved.tax_id, name=saved.name, receipt_channel=saved.receipt_channel,
                     leqi_enabled=saved.leqi_enabled, leqi_since=saved.leqi_since, etax_account=saved.etax_account)
        flash("企业信息已保存", "info")
        return redirect(url_for("admin.companies"))
    return render_template("admin/companies.html", form=form, companies=_org_companies(), editing=company)


@bp.route("/users", methods=["GET", "POST"])
def users():
    """用户与授权: add or edit a user of the admin's org and the tax IDs they may work on."""
    edit = request.args.get("username")
    user = db.session.scalar(select(User)
                             .where(User.username == edit, User.org_id == current_user.org_id)) if edit else None
    form = UserForm(obj=user)
    form.grants.choices = [(c.tax_id, f"{c.name}（{c.tax_id}）") for c in _org_companies()]
    if request.method == "GET" and user:
        form.grants.data = [c.tax_id for c in user.companies]
    if form.validate_on_submit():
        with write_transaction():
            saved = accounts.save_user(form.username.data, current_user.org, form.role.data, form.password.data or None)
            saved.active = form.active.data
            saved.email = accounts.check_email(form.email.data)
            before = [c.tax_id for c in saved.companies]
            accounts.set_grants(saved, form.grants.data or [])
        _record_user(saved, before, password_changed=bool(form.password.data))
        flash("用户已保存", "info")
        return redirect(url_for("admin.users"))
    org_users = db.session.scalars(select(User).where(User.org_id == current_user.org_id).order_by(User.username)).all()
    return render_template("admin/users.html", form=form, users=org_users, editing=user)


def _record_user(user: User, grants_before: list[str], password_changed: bool) -> None:
    """Audit a saved user, and their grants when they changed; an admin who changed their own
    password stays logged in here (every other session of theirs has ended)."""


    audit.record("user.save", user.username, role=user.role, active=user.active, email=user.email,
                 password_changed=password_changed)
    grants = [c.tax_id for c in user.companies]
    if sorted(grants) != sorted(grants_before):
        audit.record("grants.change", user.username, before=grants_before, after=grants)
    if user.id == current_user.id:
        session[SESSION_VERSION] = user.session_version


@bp.route("/settings", methods=["GET", "POST"])
def settings():
    """errorGoodsNames: goods names whose lines are dropped from blue invoices on import."""
    form = SettingsForm()
    current = get_setting(ERROR_GOODS_KEY, ERROR_GOODS_DEFAULT)
    if request.method == "GET":
        form.error_goods.data = current
    elif form.validate_on_submit():
        with write_transaction():
            set_setting(ERROR_GOODS_KEY, form.error_goods.data)
        audit.record("settings.change", ERROR_GOODS_KEY, before=current, after=form.error_goods.data)
        flash("errorGoodsNames 已保存，之后的导入按新设置过滤", "info")
        return redirect(url_for("admin.settings"))
    recent = db.session.scalars(select(Batch)
                                .where(Batch.org_id == current_user.org_id, Batch.data_type == DataType.INVOICES)
                                .order_by(Batch.created_at.desc()).limit(20)).all()
    return render_template("admin/settings.html", form=form, current=current, default=ERROR_GOODS_DEFAULT,
                           recent=recent)


class AuditFilter(FlaskForm):
    """审计日志 filters, from the query string (GET: no CSRF token)."""

    class Meta:
        csrf = False

    username = StringField("用户", validators=[Optional()])
    action = SelectField("操作", choices=[("", "全部")] + list(audit.ACTIONS.items()), validators=[Optional()])
    date_from = DayField("开始日期", validators=[Optional()])
    date_to = DayField("结束日期", validators=[Optional()])


def _audit_query(form: AuditFilter):
    """The admin's org's audit rows narrowed by the filters (the form only shows them); an action or a
    date that cannot be read or is out of range is refused with its reason (webapp.params)."""
    return audit.org_query(current_user, username=(form.username.data or "").strip(),
                           action=params.arg("action", lambda text: params.choice(text, audit.ACTIONS, "操作")),
                           date_from=params.arg("date_from", params.day), date_to=params.arg("date_to", params.day))


@bp.route("/audit")
def audit_log():
    """审计日志: who did what and when in this org, newest first, with filters; kept at least a year."""
    form = AuditFilter(request.args)
    pagination = paginate(_audit_query(form), per_page=50)
    return render_template("admin/audit.html", form=form, pagination=pagination, actions=audit.ACTIONS,
                           details_text=audit.details_text, retention=audit.retention_days())


@bp.route("/audit/export")
def audit_export():
    """The filtered audit rows as an xlsx download."""


    buffer = io.BytesIO()
    audit.write_xlsx(db.session.scalars(_audit_query(AuditFilter(request.args))), buffer)
    return xlsx_download(buffer.getvalue(), f"审计日志_{now():%Y%m%d_%H%M%S}.xlsx")
