"""Every stored code set and its Chinese label, in one place: code, templates, exports and the CLI
all read them here.

Why one module: the statuses and names the screens show used to live as label dicts, hand-written tuples and string
literals across the domain, the jobs and the templates, so a new status or a renamed label had to be found in each copy.
Each set is a StrEnum whose values are the strings the database stores (no migration: a member is its string, so columns
stay String and rows compare, hash and serialise as before); `.label` is what a user reads. Groupings
the code needs (which statuses are still active, which are finished, which 重试 runs again) are
class-level frozensets beside the members.
"""
from __future__ import annotations

from enum import EnumType, StrEnum
from typing import ClassVar

from channels import reasons


class _CodeSet(EnumType):
    """`code in BatchStatus` answers whether a stored or submitted string is one of the set's codes
    (as Python 3.12 does; 3.11, still supported, raises TypeError for a plain string)."""

    def __contains__(cls, code: object) -> bool:
        return code in cls._value2member_map_


class Labelled(StrEnum, metaclass=_CodeSet):
    """A code set whose members are declared as (stored code, Chinese label)."""

    label: str

    def __new__(cls, code: str, label: str):
        member = str.__new__(cls, code)
        member._value_ = code
        member.label = label
        return member

    @classmethod
    def codes(cls) -> list[str]:
        """The stored codes in declaration order, as plain strings (click.Choice, given members,
        would offer their names: LEQI instead of leqi)."""
        return [member.value for member in cls]

    @classmethod
    def labels(cls) -> dict[str, str]:
        """{code: label}, for a loop over many rows, where a dict lookup beats calling the class."""
        return {member.value: member.label for member in cls}

    @classmethod
    def choices(cls) -> list[tuple[str, str]]:
        """(code, label) in declaration order, for select boxes and radio buttons."""
        return [(member.value, member.label) for member in cls]


class BatchStatus(Labelled):
    """导入批次's 执行状态 (Batch.status), derived from its subtasks once it has any."""

    PENDING = "pending", "待同步"
    PREPROCESSING = "preprocessing", "数据预处理中"
    SYNCING = "syncing", "同步中"
    PARTIAL = "partial", "部分执行成功"
    SUCCEEDED = "succeeded", "全部执行成功"
    FAILED = "failed", "全部执行失败"
    TERMINATED = "terminated", "已终止"

    ACTIVE: ClassVar[frozenset[BatchStatus]]  # still to end: pending, preprocessing, syncing (set below)
    FINISHED: ClassVar[frozenset[BatchStatus]]  # ended: partial, succeeded, failed, terminated
    RETRYABLE: ClassVar[frozenset[BatchStatus]]  # 重试 parses a failed or stopped file batch again


class SubtaskStatus(Labelled):
    """A month's 执行状态 (Subtask.status); a waiting month's label may say more (batches.subtask_label)."""

    PENDING = "pending", "待同步"
    WAITING = "waiting", "等待额度"
    RUNNING = "running", "同步中"
    SUCCEEDED = "succeeded", "执行成功"
    FAILED = "failed", "执行失败"
    TERMINATED = "terminated", "已终止"

    ACTIVE: ClassVar[frozenset[SubtaskStatus]]  # still to run: pending, waiting, running (set below)
    FINISHED: ClassVar[frozenset[SubtaskStatus]]  # ended: succeeded, failed, terminated
    UNSTARTED: ClassVar[frozenset[SubtaskStatus]]  # pending or waiting: its batch is still 待同步
    RETRYABLE: ClassVar[frozenset[SubtaskStatus]]  # 重试 runs a failed or terminated month again, where it stopped


# Groupings: set after the classes, since inside the class body the members are not yet members.
BatchStatus.ACTIVE = frozenset({BatchStatus.PENDING, BatchStatus.PREPROCESSING, BatchStatus.SYNCING})
BatchStatus.FINISHED = frozenset(BatchStatus) - BatchStatus.ACTIVE
BatchStatus.RETRYABLE = frozenset({BatchStatus.FAILED, BatchStatus.TERMINATED})
SubtaskStatus.ACTIVE = frozenset({SubtaskStatus.PENDING, SubtaskStatus.WAITING, SubtaskStatus.RUNNING})
SubtaskStatus.FINISHED = frozenset(SubtaskStatus) - SubtaskStatus.ACTIVE
SubtaskStatus.UNSTARTED = frozenset({SubtaskStatus.PENDING, SubtaskStatus.WAITING})
SubtaskStatus.RETRYABLE = frozenset({SubtaskStatus.FAILED, SubtaskStatus.TERMINATED})


class DataType(Labelled):
    """发票数据类型 of a batch (Batch.data_type)."""

    INVOICES = "invoices", "发票数据"
    USAGE = "usage", "发票用途状态"


class Method(Labelled):
    """导入方式 of a batch (Batch.method)."""

    FILE = "file", "导入电子税局文件"
    DOWNLOAD = "download", "税局下载"


class Channel(Labelled):
    """下载通道 of a 税局下载 batch (Batch.channel), and of an invoice's usage status."""

    LEQI = "leqi", "乐企"
    RPA = "rpa", "RPA"


class Source(Labelled):
    """数据来源 of an invoice in the pool (Invoice.source): the file, or the channel that downloaded it."""

    FILE = "file", Method.FILE.label
    LEQI = Channel.LEQI.value, Channel.LEQI.label
    RPA = Channel.RPA.value, Channel.RPA.label

    @classmethod
    def of(cls, method: str, channel: str | None) -> Source:
        """Where a batch's invoices come from: the file it imported, else the channel it downloaded through."""
        return cls.FILE if method == Method.FILE else cls(channel)


class Role(Labelled):
    """A user's 角色 (User.role): an administrator keeps the settings, finance works with batches and the pool."""

    ADMIN = "admin", "管理员"
    FINANCE = "finance", "财务"


class RunTrigger(Labelled):
    """How an auto-update run started (ScheduleRun.trigger): on the 5th, caught up later, or by 立即执行."""

    DUE = "due", "按时"
    CATCH_UP = "catch_up", "补执行"
    MANUAL = "manual", "手动"


class HealthStatus(Labelled):
    """What one health check found (webapp.health): 正常, 警告 (works, but someone should look), 故障."""

    OK = "ok", "正常"
    WARNING = "warning", "警告"
    FAULT = "fault", "故障"


class HealthCode(Labelled):
    """Why a health check has its status; the label is the Chinese message, with the check's
    parameters filled in by name (webapp.health.Finding.message)."""

    DB_OK = "db_ok", "数据库可连接，结构为最新版本（{revision}）"
    DB_UNREACHABLE = "db_unreachable", "数据库无法连接（{error}），请检查 DATABASE_URL 和数据库服务"
    DB_BEHIND = "db_behind", "数据库结构不是最新（当前 {current}，应为 {head}），请运行 flask --app wsgi db upgrade"
    REDIS_OK = "redis_ok", "任务队列 Redis 可连接、可写入"
    REDIS_UNREACHABLE = "redis_unreachable", "任务队列 Redis 无法连接，批次将在其恢复后执行；请检查 Redis 服务"
    REDIS_DISK = "redis_disk", "任务队列 Redis 因磁盘空间不足无法写入，请清理 {folder} 所在磁盘"
    WORKER_OK = "worker_ok", "后台任务进程在运行（{seconds} 秒前有心跳）"
    WORKER_SILENT = "worker_silent", "后台任务进程 1 分钟内没有心跳，批次不会执行；请检查 worker 进程"
    SCHEDULER_OK = "scheduler_ok", "调度进程在运行（{seconds} 秒前有心跳）"
    SCHEDULER_SILENT = "scheduler_silent", "调度进程没有心跳，自动更新和等待额度的月份不会执行；请检查 scheduler 进程"
    CHANNEL_SANDBOX = "channel_sandbox", ("{channel}连接内置沙箱税局（演示环境），数据不是真实税局数据；正式使用请配置 "
                                          "{setting}")
    CHANNEL_OK = "channel_ok", "{channel}服务可连接，凭证有效"
    CHANNEL_FAILED = "channel_failed", "{channel}服务检查未通过：{reason}"
    DISK_OK = "disk_ok", "{folder} 可用空间 {free_mb} MB"
    DISK_LOW = "disk_low", "磁盘空间不足：{folder} 仅剩 {free_mb} MB 可用（低于 {limit_mb} MB），请清理或扩容"
    DISK_FULL = "disk_full", "磁盘空间不足：{folder} 仅剩 {free_mb} MB 可用，写入失败；请清理或扩容后重试"
    PROCESSES_UNSUPERVISED = "processes_unsupervised", "未由进程守护程序运行（没有 {file}），进程退出后不会自动重启"
    PROCESSES_OK = "processes_ok", "守护的进程都在运行：{names}"
    PROCESS_FATAL = "process_fatal", "进程 {names} 反复退出后已停止重启，请查看其日志并处理后重新启动"
    PROCESS_RESTARTING = "process_restarting", "进程 {names} 一小时内重启 {count} 次以上，请查看其日志"
    PROCESS_DOWN = "process_down", "进程 {names} 未在运行（{states}）"
    BACKUP_OK = "backup_ok", "最近一次成功的备份在 {hours} 小时前"
    BACKUP_NONE = "backup_none", ("还没有成功的备份。请在 系统管理 → 备份 点击“立即备份”，并确认调度进程（scheduler）"
                                  "在运行")
    BACKUP_OLD = "backup_old", ("最近一次成功的备份已是 {days} 天前。请检查 系统管理 → 备份 中的失败原因，"
                                "并确认调度进程（scheduler）和后台进程（worker）在运行")
    CHECK_TIMEOUT = "check_timeout", "检查超过 {seconds} 秒未完成，视为故障"
    CHECK_ERROR = "check_error", "检查本身出错（{error}），请查看日志"


class AlertKind(Labelled):
    """Why an e-mail went to the admins (webapp.health.alerts); one mail per event."""

    BATCH_FAILED = "batch_failed", "自动更新批次执行失败"
    QUOTA_WAIT = "quota_wait", "月份等待乐企额度过久"
    PROCESS_RESTARTS = "process_restarts", "进程反复重启"
    DISK_LOW = "disk_low", "磁盘空间不足"


class BackupStatus(Labelled):
    """A backup run's state (BackupRun.status): 系统管理 → 备份 lists it."""

    PENDING = "pending", "排队中"
    RUNNING = "running", "备份中"
    SUCCEEDED = "succeeded", "成功"
    FAILED = "failed", "失败"


class BackupTrigger(Labelled):
    """Why a backup ran: the nightly schedule or an admin's 立即备份."""

    NIGHTLY = "nightly", "每日自动备份"
    MANUAL = "manual", "立即备份"


class BackupFailure(Labelled):
    """Why a backup failed (BackupRun.failure); the detail (BackupRun.failure_detail) is the error's own text."""

    DISK = "disk", "写入备份文件失败（磁盘空间不足或目录不可写），请检查 DATA_DIR/backups 所在磁盘"
    DATABASE = "database", "读取数据库失败，请检查数据库是否可用"
    LOST = "lost", "备份任务未在一小时内完成（进程被中止或队列丢失），请点击“立即备份”重试"
    RESTORED = "restored", "此条记录来自恢复所用的备份：该备份当时正在进行，其结果见备份文件本身"
    OTHER = "other", "备份出错，请查看详情并联系管理员"


class _Blank(dict):
    """Parameters for a label: one a row lacks (stored by an older version) reads as nothing."""

    def __missing__(self, key: str) -> str:
        return ""


class Reason(Labelled):
    """Why a month or a batch failed, was stopped or waits (Subtask/Batch.error_code), set where it
    happened (docs/rules.md, 失败与等待原因). The label is the sentence a finance user reads, with the
    reason's parameters (error_params) filled in by name (Reason.text); the stored `error` beside it
    keeps the technical text for 详情. Screens, e-mails and the CLI branch on the code, never on words."""

    QUOTA_WAIT = "quota_wait", "乐企额度：{kinds}已达下载次数限制，将于 {day} 自动执行"
    DATA_PREPARING = "data_preparing", "{channel}正在准备下载数据，稍后自动再次获取（不占用下载次数）"
    USAGE_WAIT = "usage_wait", "等待发票数据：同月发票数据同步完成后自动执行"
    CHANNEL_UNAVAILABLE = reasons.CHANNEL_UNAVAILABLE, "{channel}服务暂时不可用{retried}，请稍后点击“重试”"
    CHANNEL_TIMEOUT = reasons.CHANNEL_TIMEOUT, "连接{channel}超时{retried}，请稍后点击“重试”"
    CHANNEL_UNREACHABLE = reasons.CHANNEL_UNREACHABLE, ("无法连接{channel}服务{retried}，请稍后重试；若一直如此，"
                                                        "请联系管理员检查网络")
    CHANNEL_PENDING = reasons.CHANNEL_PENDING, "{channel}仍未处理完成{retried}，请稍后点击“重试”"
    LOGIN_FAILED = reasons.LOGIN_FAILED, "{channel}拒绝了请求，请管理员在“系统管理 → 企业信息”中检查通道地址和凭证"
    CHANNEL_ADDRESS = reasons.CHANNEL_ADDRESS, "{channel}通道地址配置有误，请联系管理员"
    CHANNEL_BAD_ANSWER = reasons.CHANNEL_BAD_ANSWER, "{channel}返回的数据无法识别，请联系管理员检查通道配置"
    CHANNEL_REFUSED = reasons.CHANNEL_REFUSED, "{channel}拒绝了请求：{message}"
    RPA_TASK_FAILED = reasons.RPA_TASK_FAILED, "RPA 任务执行失败，请稍后点击“重试”"
    SERIAL_EXPIRED = "serial_expired", "乐企下载流水号已过期（申请结果只保留 7 天），请点击重试重新申请"
    LEQI_NOT_AUTHORISED = "leqi_not_authorised", ("乐企只能下载企业授权乐企能力（{since}）之后开具的发票，"
                                                  "{first} 至 {last} 共 {count} 个月未申请")
    REJECTED = reasons.REJECTED, "{message}"
    FILE_REFUSED = reasons.FILE_REFUSED, "{message}"
    FILE_UNREADABLE = "file_unreadable", "文件解析失败，请确认是从电子税局“全量发票查询”导出的原始文件"
    STAGED_MISSING = "staged_missing", "该月份的解析数据已不存在，请重新导入文件"
    STAGED_UNREADABLE = "staged_unreadable", ("该月份的暂存数据无法读取（由其他版本的程序写入），未导入任何数据，"
                                              "请重新导入文件")
    PARSE_MEMORY = "parse_memory", "文件解析所需内存超过服务器上限，请缩小开票日期范围分次导出后重新导入"
    PARSE_CRASHED = "parse_crashed", ("文件解析进程连续 {times} 次意外中断（文件可能过大或结构异常），已停止解析。"
                                      "请确认上传的是电子税局“全量发票查询”导出的原始文件，"
                                      "或缩小开票日期范围分次导出后重新导入")
    PROCESS_DIED = "process_died", ("执行进程连续 {times} 次意外中断（已自动重试 {retries} 次），"
                                    "请联系管理员查看服务器日志后点击重试")
    DISK_FULL = "disk_full", "服务器磁盘写入失败，请联系管理员处理后点击“重试”"
    INTERNAL_ERROR = "internal_error", "系统处理出错，请稍后点击“重试”；若反复出现，请联系管理员"
    TERMINATED = "terminated", "已被用户终止"
    UNRECORDED = "unrecorded", "执行失败，未记录原因"

    def text(self, params: dict | None = None) -> str:
        """The sentence a user reads: the label with `params` filled in; a failure the channel client
        retried says how often (params["attempts"])."""
        values = _Blank(params or {})
        values["retried"] = f"（已自动重试 {values['attempts']} 次）" if values.get("attempts") else ""
        return self.label.format_map(values)


class InvoiceStatus(StrEnum, metaclass=_CodeSet):
    """发票状态 as the bureau and its export write it (docs/etax-export.md): stored as given, so the
    value is also what a user reads. The pool, 销项汇总 and the red-flush rules test these four."""

    NORMAL = "正常"
    VOIDED = "已作废"
    FLUSHED_FULL = "已红冲-全额"
    FLUSHED_PARTIAL = "已红冲-部分"


class RedFlushReason(Labelled):
    """红冲原因 of a red-flush draft (docs/codes.md, Full or partial, and who acts): the bureau's
    codes 01–04. What each allows is docs/rules.md, 红冲草稿."""

    INVOICING_ERROR = "01", "开票有误"
    GOODS_RETURNED = "02", "销货退回"
    SERVICE_STOPPED = "03", "服务中止"
    ALLOWANCE = "04", "销售折让"


class UnmatchedRed(Labelled):
    """Why a red invoice counts against its blue invoice as a whole rather than line by line
    (webapp.pool.flushed_lines); the label is shown, `{name}` the red line's goods name."""

    NO_LINES = "no_lines", "红字发票没有明细行"
    LINE_NOT_FOUND = "line_not_found", ("明细“{name}”在蓝字发票中没有税收分类编码、名称、规格型号和税率都相同的行"
                                        "（如详见对应正数发票及清单、另起一行的销售折让）")
    OVER_LINE = "over_line", "明细“{name}”冲红的数量或金额超过蓝字发票对应行的剩余"


class DraftRefusal(Labelled):
    """Why a red-flush draft is not made (docs/rules.md, 红冲草稿); the label is the Chinese message,
    its parameters filled in by name (webapp.pool.redflush_draft.DraftRefused)."""

    NOT_READY = "not_ready", "红冲预检未通过，不能生成草稿：{why}"
    FULL_ONLY = "full_only", "该发票仅可全额红冲（{why}），各行按剩余全额填写，不能指定行"
    WHOLE_ONLY_REASON = "whole_only_reason", ("开票有误只能全额红冲，不能指定行；"
                                              "部分红冲请选择销货退回、服务中止或销售折让")
    NO_LINES = "no_lines", "请至少填写一行的红冲{measure}"
    UNKNOWN_LINE = "unknown_line", "第 {line} 行不是这张发票的可红冲行（可选：{lines}）"
    TWICE = "twice", "第 {line} 行填写了两次"
    BOTH = "both", "第 {line} 行请只填写数量或金额其一（另一项按单价算出）"
    NO_QUANTITY = "no_quantity", "第 {line} 行没有数量或单价，不能按数量红冲，请选择服务中止或销售折让按金额填写"
    QUANTITY_FOR_ALLOWANCE = "quantity_for_allowance", "销售折让只填金额，不填数量（第 {line} 行）"
    QUANTITY_FOR_RETURN = "quantity_for_return", "销货退回按数量红冲，金额由单价算出，请填写数量（第 {line} 行）"
    OVER_QUANTITY = "over_quantity", "第 {line} 行红冲数量 {asked} 超过剩余数量 {left}"
    OVER_AMOUNT = "over_amount", "第 {line} 行红冲金额 {asked} 元超过该行剩余金额 {left} 元"
    NOTHING_LEFT = "nothing_left", "第 {line} 行已无剩余可红冲金额"
    OVER_INVOICE = "over_invoice", ("本次红冲金额合计 {asked} 元超过发票剩余可红冲金额 {left} "
                                    "元（已扣除按整张发票计的红字发票）")
    OVER_INVOICE_TAX = "over_invoice_tax", "本次红冲税额合计 {asked} 元超过发票剩余税额 {left} 元"
    LINES_UNKNOWN = "lines_unknown", ("池中有 {count} 张红字发票无法逐行对应，各行剩余不能确定，不能按行全额填写："
                                      "全额红冲请在税局系统直接选择该蓝字发票全额红冲（确认单无需逐行填写）；"
                                      "可部分红冲时，也可选择销货退回、服务中止或销售折让，按税局系统显示的剩余逐行填写")
    NO_BLUE_LINES = "no_blue_lines", ("发票池中这张发票没有可红冲的明细行，无法逐行生成草稿；"
                                      "全额红冲时可在税局系统选择该蓝字发票直接全额红冲")
    LINE_TAX = "line_tax", "第 {line} 行税额与金额×税率相差 {difference} 元，超过税局允许的 ±0.06 元"
    TAX_TOLERANCE = "tax_tolerance", ("本次红冲税额与金额×税率的合计差 {difference} 元超过税局允许的 ±1.27 元，"
                                      "请分开填写")

    ABOUT_INVOICE: ClassVar[frozenset[DraftRefusal]]  # the invoice's state, not what was asked (set below)


DraftRefusal.ABOUT_INVOICE = frozenset({DraftRefusal.NOT_READY, DraftRefusal.NO_BLUE_LINES})


class DraftForm(Labelled):
    """Where a red-flush draft was made, as the audit log keeps it."""

    PAGE = "page", "发票页面"
    PRINT = "print", "打印页"
    XLSX = "xlsx", "Excel"
    COMMAND = "command", "命令行"


CODE_SETS = (BatchStatus, SubtaskStatus, DataType, Method, Channel, Source, Role, RunTrigger, HealthStatus,
             AlertKind, BackupStatus, BackupTrigger, BackupFailure, RedFlushReason, Reason)  # the templates' globals
