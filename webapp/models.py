"""The database tables: the source of truth for orgs, users, companies, batches and the pool."""
from __future__ import annotations

from datetime import date, datetime

from flask_login import UserMixin
from sqlalchemy import JSON, Boolean, Column, Date, DateTime, ForeignKey, Index, Integer, Numeric, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from webapp.extensions import db
from webapp.statuses import BackupStatus, BatchStatus, DataType, Role, Source, SubtaskStatus

MONEY = Numeric(18, 2)

user_companies = Table(
    "user_company",
    db.metadata,
    Column("user_id", ForeignKey("user.id", ondelete="CASCADE"), primary_key=True),
    Column("company_id", ForeignKey("company.id", ondelete="CASCADE"), primary_key=True),
)


class Org(db.Model):
    """组织: users, companies and batches belong to one."""

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    timezone: Mapped[str] = mapped_column(String(50), default="Asia/Shanghai")


class User(UserMixin, db.Model):
    """A login; its role (webapp.statuses.Role): an admin keeps the settings, finance works with batches
    and the pool."""

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    org_id: Mapped[int] = mapped_column(ForeignKey("org.id"))
    role: Mapped[str] = mapped_column(String(16), default=Role.FINANCE)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    email: Mapped[str | None] = mapped_column(String(254))  # an admin's address for alerts (webapp.health.alerts)
    # bumped at logout and password change: sessions signed for an older version stop working
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    org: Mapped[Org] = relationship()
    companies: Mapped[list[Company]] = relationship(secondary=user_companies, order_by="Company.tax_id")

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return self.active

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)
        self.session_version = (self.session_version or 0) + 1  # a new password ends every session

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)


class Company(db.Model):
    """企业信息: a seller the pool holds invoices for, with what its download channels need."""

    id: Mapped[int] = mapped_column(primary_key=True)
    tax_id: Mapped[str] = mapped_column(String(30), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    org_id: Mapped[int] = mapped_column(ForeignKey("org.id"))
    receipt_channel: Mapped[str | None] = mapped_column(String(30))  # 收票通道, e.g. 乐企平台
    leqi_enabled: Mapped[bool] = mapped_column(Boolean, default=False)  # 乐企归集能力已开通
    leqi_since: Mapped[date | None] = mapped_column(Date)  # 乐企能力授权日期
    etax_account: Mapped[str | None] = mapped_column(String(100))  # 默认电子税局账号 (RPA)
    org: Mapped[Org] = relationship()


class Setting(db.Model):
    """An admin setting by key, such as errorGoodsNames."""

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Batch(db.Model):
    """导入批次: one company's import or download; its status is derived from its subtasks."""

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_no: Mapped[str] = mapped_column(String(32), unique=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("org.id"), index=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id"), index=True)
    tax_id: Mapped[str] = mapped_column(String(30))
    seller_name: Mapped[str] = mapped_column(String(200))
    data_type: Mapped[str] = mapped_column(String(16), default=DataType.INVOICES)  # a DataType
    method: Mapped[str] = mapped_column(String(16))  # a Method
    channel: Mapped[str | None] = mapped_column(String(16))  # a Channel, for a download
    kinds: Mapped[list[str]] = mapped_column(JSON, default=list)  # 发票种类 names (["全部"]: a download of every kind)
    type_codes: Mapped[list[str]] = mapped_column(JSON, default=list)  # a download's fplx codes (none: every kind)
    period_from: Mapped[str | None] = mapped_column(String(7))
    period_to: Mapped[str | None] = mapped_column(String(7))
    status: Mapped[str] = mapped_column(String(16), default=BatchStatus.PENDING, index=True)
    total: Mapped[int] = mapped_column(Integer, default=0)
    success: Mapped[int] = mapped_column(Integer, default=0)
    filtered_lines: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)  # the failure's full text (详情); what it means: error_code
    error_code: Mapped[str | None] = mapped_column(String(32))  # a Reason: why it failed or was stopped
    error_params: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))  # the Reason's parameters
    note: Mapped[str | None] = mapped_column(Text)  # what the batch leaves out and why (乐企 authorisation date)
    file_name: Mapped[str | None] = mapped_column(String(255))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    creator_name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    error_rows: Mapped[str | None] = mapped_column(Text)  # a refused file's unreadable rows, JSON (错误清单)
    parse_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # parse jobs started
    org: Mapped[Org] = relationship()
    company: Mapped[Company] = relationship()
    subtasks: Mapped[list[Subtask]] = relationship(back_populates="batch", order_by="Subtask.period")


class Subtask(db.Model):
    """子任务: one month of a batch, the unit of work that commits or rolls back whole."""

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batch.id", ondelete="CASCADE"), index=True)
    period: Mapped[str] = mapped_column(String(7))
    status: Mapped[str] = mapped_column(String(16), default=SubtaskStatus.PENDING, index=True)
    total: Mapped[int] = mapped_column(Integer, default=0)
    success: Mapped[int] = mapped_column(Integer, default=0)
    filtered_lines: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)  # the full text of why it failed or waits (详情)
    error_code: Mapped[str | None] = mapped_column(String(32))  # a Reason: what the screens read
    error_params: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))  # the Reason's parameters
    job_id: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime | None] = mapped_column(DateTime)  # a waiting subtask runs from then
    channel_ref: Mapped[str | None] = mapped_column(String(64))  # an RPA task in progress, polled again later
    # usage: invoices the bureau returned nothing for, '\n'-joined
    unanswered_keys: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    batch: Mapped[Batch] = relationship(back_populates="subtasks")

    __table_args__ = (db.UniqueConstraint("batch_id", "period"),)

    @property
    def source(self) -> Source:
        """Where its invoices come from, as the pool records it (Invoice.source)."""
        return Source.of(self.batch.method, self.batch.channel)


class Schedule(db.Model):
    """自动更新: an org's monthly download of last month's invoices and/or usage status (org-private)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("org.id"), index=True)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    invoices: Mapped[bool] = mapped_column(Boolean, default=True)  # 发票明细信息更新
    usage: Mapped[bool] = mapped_column(Boolean, default=False)  # 发票用途状态更新
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    # last (re-)enabled: months before are not caught up
    active_since: Mapped[datetime | None] = mapped_column(DateTime)
    org: Mapped[Org] = relationship()
    created_by: Mapped[User] = relationship()
    runs: Mapped[list[ScheduleRun]] = relationship(back_populates="schedule", order_by="ScheduleRun.period.desc()",
                                                   cascade="all, delete-orphan")


class ScheduleRun(db.Model):
    """One monthly run of a schedule; unique per (schedule, period) so a run is never doubled."""

    id: Mapped[int] = mapped_column(primary_key=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedule.id", ondelete="CASCADE"))
    period: Mapped[str] = mapped_column(String(7))  # the invoicing month downloaded
    started_at: Mapped[datetime] = mapped_column(DateTime)
    trigger: Mapped[str] = mapped_column(String(10))  # due | catch_up | manual
    batch_nos: Mapped[list[str]] = mapped_column(JSON, default=list)  # the batches the run created
    message: Mapped[str | None] = mapped_column(Text)
    schedule: Mapped[Schedule] = relationship(back_populates="runs")

    __table_args__ = (db.UniqueConstraint("schedule_id", "period", name="uq_schedule_run_period"),)


class QuotaUse(db.Model):
    """One 乐企 download application sent: the quota counts these; unique per day by the 1-a-day rule."""

    id: Mapped[int] = mapped_column(primary_key=True)
    tax_id: Mapped[str] = mapped_column(String(30))
    invoice_month: Mapped[str] = mapped_column(String(7))
    type_code: Mapped[str] = mapped_column(String(2))
    requested_on: Mapped[date] = mapped_column(Date)
    requested_at: Mapped[datetime] = mapped_column(DateTime)
    subtask_id: Mapped[int | None] = mapped_column(ForeignKey("subtask.id", ondelete="SET NULL"), index=True)
    serial: Mapped[str | None] = mapped_column(String(64))  # 流水号 (lsh) the application was given
    fetched: Mapped[bool] = mapped_column(Boolean, default=False)  # its packages are in the pool

    __table_args__ = (db.UniqueConstraint("tax_id", "invoice_month", "type_code", "requested_on",
                                          name="uq_quota_use_per_day"),)


class Invoice(db.Model):
    """销项发票池: one row per invoice identity; re-imports update it in place."""

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(40), unique=True)
    tax_id: Mapped[str] = mapped_column(String(30))
    seller_name: Mapped[str | None] = mapped_column(String(200))
    code: Mapped[str | None] = mapped_column(String(20))
    number: Mapped[str | None] = mapped_column(String(20))
    digital_number: Mapped[str | None] = mapped_column(String(20))
    buyer_tax_id: Mapped[str | None] = mapped_column(String(30))
    buyer_name: Mapped[str | None] = mapped_column(String(200))
    issued_at: Mapped[datetime] = mapped_column(DateTime)
    month: Mapped[str] = mapped_column(String(7))
    amount = mapped_column(MONEY, nullable=False)
    tax = mapped_column(MONEY, nullable=False)
    total = mapped_column(MONEY)
    origin: Mapped[str | None] = mapped_column(String(30))  # 发票来源
    type_name: Mapped[str] = mapped_column(String(40))  # 发票票种
    type_code: Mapped[str | None] = mapped_column(String(2))
    status: Mapped[str] = mapped_column(String(20))  # 发票状态
    is_red: Mapped[bool] = mapped_column(Boolean, default=False)
    risk_level: Mapped[str | None] = mapped_column(String(20))
    issuer: Mapped[str | None] = mapped_column(String(50))
    remark: Mapped[str | None] = mapped_column(Text)
    red_of: Mapped[str | None] = mapped_column(String(40), index=True)
    # a blue invoice: the sum of |金额| of the red invoices in the pool that flush it (None: none);
    # kept by webapp.pool.flushes as invoices are saved, so lists and filters read it per row
    flushed_amount = mapped_column(MONEY)
    source: Mapped[str] = mapped_column(String(10))  # a Source
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batch.id", ondelete="SET NULL"))
    synced_at: Mapped[datetime] = mapped_column(DateTime)
    vat_usage: Mapped[str | None] = mapped_column(String(4))  # 增值税用途状态 code
    excise_usage: Mapped[str | None] = mapped_column(String(4))  # 消费税用途状态 code
    entry_status: Mapped[str | None] = mapped_column(String(4))  # 入账状态 code
    usage_channel: Mapped[str | None] = mapped_column(String(10))  # whose code set the codes use
    usage_updated_at: Mapped[datetime | None] = mapped_column(DateTime)
    red_lock: Mapped[bool | None] = mapped_column(Boolean)  # 红字锁定标识 from the last usage query
    usage_queried_at: Mapped[datetime | None] = mapped_column(DateTime)  # last usage query, answered or not

    __table_args__ = (
        Index("ix_invoice_tax_id_month", "tax_id", "month"),
        Index("ix_invoice_tax_id_issued_at", "tax_id", "issued_at"),
        Index("ix_invoice_issued_at", "issued_at"),
        Index("ix_invoice_number", "number"),
        Index("ix_invoice_digital_number", "digital_number"),
        Index("ix_invoice_batch_id", "batch_id"),
        Index("ix_invoice_amount", "amount"),
    )


class InvoiceLine(db.Model):
    """An invoice line, keyed by its invoice's identity so whole invoices replace cheaply."""

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_key: Mapped[str] = mapped_column(String(40))  # looked up through ix_invoice_line_summary
    line_no: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(300))
    tax_code: Mapped[str | None] = mapped_column(String(30))
    special_type: Mapped[str | None] = mapped_column(String(30))
    spec: Mapped[str | None] = mapped_column(String(200))
    unit: Mapped[str | None] = mapped_column(String(30))
    quantity: Mapped[str | None] = mapped_column(String(40))  # decimal text as written: exact
    unit_price: Mapped[str | None] = mapped_column(String(40))
    amount = mapped_column(MONEY, nullable=False)
    tax_rate: Mapped[str | None] = mapped_column(String(10))
    tax = mapped_column(MONEY, nullable=False)
    total = mapped_column(MONEY)
    is_discount: Mapped[bool] = mapped_column(Boolean, default=False)


audit_companies = Table(  # the companies an audit row names (its tax IDs, its batches'): who may read it
    "audit_company",
    db.metadata,
    Column("audit_id", ForeignKey("audit_log.id", ondelete="CASCADE"), primary_key=True),
    Column("company_id", ForeignKey("company.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class AuditLog(db.Model):
    """审计日志: who did what to which target, when and from where; kept at least a year (webapp.accounts.audit)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, index=True)
    org_id: Mapped[int | None] = mapped_column(ForeignKey("org.id", ondelete="SET NULL"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    username: Mapped[str] = mapped_column(String(64))  # as typed for a failed login of an unknown user
    action: Mapped[str] = mapped_column(String(40), index=True)
    target: Mapped[str] = mapped_column(String(200), default="")
    details: Mapped[str] = mapped_column(Text, default="")  # JSON
    address: Mapped[str | None] = mapped_column(String(64))


class InvoiceSource(db.Model):
    """来源核对: which source (file, 乐企, RPA) delivered an invoice, when, and the last values it gave."""

    invoice_key: Mapped[str] = mapped_column(String(40), primary_key=True)
    source: Mapped[str] = mapped_column(String(10), primary_key=True)  # a Source
    tax_id: Mapped[str] = mapped_column(String(30))
    month: Mapped[str] = mapped_column(String(7))
    batch_id: Mapped[int | None] = mapped_column(Integer)
    first_seen_at: Mapped[datetime] = mapped_column(DateTime)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime)
    status: Mapped[str | None] = mapped_column(String(20))
    amount = mapped_column(MONEY)
    tax = mapped_column(MONEY)
    total = mapped_column(MONEY)
    buyer_tax_id: Mapped[str | None] = mapped_column(String(30))
    buyer_name: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (Index("ix_invoice_source_tax_id_month", "tax_id", "month", "source"),)


class SentAlert(db.Model):
    """One alert e-mail's event (webapp.health.alerts): the unique key makes it one mail per event,
    whatever restarts or re-checks happen; attempts bound the retries while SMTP is down."""

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)  # e.g. batch_failed:<batch_no>
    kind: Mapped[str] = mapped_column(String(32))  # an AlertKind
    created_at: Mapped[datetime] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    error: Mapped[str | None] = mapped_column(String(200))  # the last SMTP failure's kind, for 系统状态


class InvoiceMonthSummary(db.Model):
    """销项汇总 of one company-month, kept until the pool write bumps `version` (see webapp.summary)."""

    tax_id: Mapped[str] = mapped_column(String(30), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)  # bumped by every pool write touching the month
    summary_version: Mapped[int | None] = mapped_column(Integer)  # the version `summary` was computed at
    summary: Mapped[str | None] = mapped_column(Text)  # JSON, amounts in whole cents
    stats_version: Mapped[int | None] = mapped_column(Integer)  # the version `stats` was counted at
    stats: Mapped[str | None] = mapped_column(Text)  # JSON: coverage cells and pool stats (webapp.pool.month_stats)
    sources_version: Mapped[int | None] = mapped_column(Integer)  # the version `sources` was counted at
    sources: Mapped[str | None] = mapped_column(Text)  # JSON: 来源核对's findings of the month (webapp.reconcile)


class BackupRun(db.Model):
    """One backup (nightly or 立即备份); unique per night so the scheduler never runs a night twice."""

    id: Mapped[int] = mapped_column(primary_key=True)
    trigger: Mapped[str] = mapped_column(String(10))  # a BackupTrigger
    night: Mapped[date | None] = mapped_column(Date, unique=True)  # the night a nightly run is for
    status: Mapped[str] = mapped_column(String(10), default=BackupStatus.PENDING)  # a BackupStatus
    requested_by: Mapped[str] = mapped_column(String(64))  # who asked (系统 for the nightly run)
    requested_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    file_name: Mapped[str | None] = mapped_column(String(255))  # in DATA_DIR/backups
    size: Mapped[int | None] = mapped_column(db.BigInteger)  # bytes
    invoices: Mapped[int | None] = mapped_column(Integer)
    failure: Mapped[str | None] = mapped_column(String(16))  # a BackupFailure
    failure_detail: Mapped[str | None] = mapped_column(Text)


Index("ix_invoice_line_summary", InvoiceLine.invoice_key, InvoiceLine.tax_rate, InvoiceLine.amount, InvoiceLine.tax)
