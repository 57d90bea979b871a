"""Every stored code set and its Chinese label, in one place: code, templates, exports and the CLI
all read them here.

Why one module: the statuses and names the screens show used to live as label dicts, hand-written tuples and string literals across the domain, the jobs and the templates,
so a new status or a renamed label had to be found in each copy. Each set is a StrEnum whose
values are the strings the database stores (no migration: a member is its string, so columns stay
String and rows compare, hash and serialise as before); `.label` is what a user reads. Groupings
the code needs (which statuses are still active, which are finished, which 重试 runs again) are
class-level frozensets beside the members.
"""
from __future__ import annotations

from enum import EnumType, StrEnum
from typing import ClassVar


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


CODE_SETS = (BatchStatus, SubtaskStatus, DataType, Method, Channel, Source, Role, RunTrigger)  # the templates' globals
