"""What the batch screens say about a batch, worked out for a whole page in two queries.

The list and the detail page both show: a progress bar with one segment per subtask status,
why 总份数 and 成功份数 differ, why months failed (in words a finance user reads, rendered from
each month's reason code, the technical text kept for 详情), and until when a batch waits for the
乐企 quota. The statuses (docs/rules.md, 批次状态), the reasons (docs/rules.md, 失败与等待原因) and
their labels are in webapp.statuses; this module only reads.
"""
from __future__ import annotations

import zlib
from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select

from webapp.extensions import db
from webapp.models import Batch, Subtask
from webapp.statuses import BatchStatus, DataType, Reason, SubtaskStatus

# Progress-bar segments in the order they are drawn: finished work first, then what is still to run;
# the bar says the subtask statuses shorter than their own labels (成功, not 执行成功). Months still to
# run are drawn hatched (app.css), apart from the ended ones, so a bar is solid end to end only when
# every month ended.
SEGMENTS = ((SubtaskStatus.SUCCEEDED, "成功"), (SubtaskStatus.FAILED, "失败"), (SubtaskStatus.TERMINATED, "已终止"),
            (SubtaskStatus.WAITING, "等待"), (SubtaskStatus.RUNNING, "同步中"), (SubtaskStatus.PENDING, "待同步"))


def reason_text(code: str | None, params: dict | None, error: str | None) -> tuple[str, str | None]:
    """Why a batch or a month failed or waits, as (what a finance user reads, the technical text
    for 详情 or None): the sentence of its reason code with its parameters (docs/rules.md, 失败与等待原因);
    the stored text goes under 详情 when it says more than the sentence. A row without a code (none
    is left after 0021, except from a version this one does not know) shows its text as stored."""
    if code not in Reason:
        return error or "", None
    summary = Reason(code).text(params) or error or Reason.UNRECORDED.label
    return summary, (error if error and error != summary else None)


def row_reason(row: Batch | Subtask) -> tuple[str, str | None]:
    """reason_text of a batch or a month (the templates' one call)."""
    return reason_text(row.error_code, row.error_params, row.error)


@dataclass
class Failure:
    """One reason, the months it hit, and the distinct technical texts behind it."""

    summary: str
    periods: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)


@dataclass
class BatchFacts:
    """Per batch: subtasks and copies per status, failures grouped by reason, what it waits for."""

    counts: dict[str, int] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    successes: dict[str, int] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    quota_until: tuple[datetime, datetime] | None = None  # earliest and latest release of a quota wait
    waiting_notes: list[str] = field(default_factory=list)  # other waits, as the job said them
    first_pending: int | None = None  # the lowest id of its months still queued (待同步)
    queued_ahead: int = 0  # other batches' months queued or running before its first one

    @property
    def subtasks(self) -> int:
        return sum(self.counts.values())

    @property
    def unfetched(self) -> int:
        """Months that ended without their data (执行失败, 已终止): 总份数 and 成功份数 leave them out."""
        return sum(self.counts.get(status, 0) for status in SubtaskStatus.RETRYABLE)

    def segments(self) -> list[tuple[str, str, int, float]]:
        """(status, label, count, percent of the bar) for each status the batch has."""
        n = self.subtasks
        return [(status, label, self.counts[status], 100 * self.counts[status] / n)
                for status, label in SEGMENTS if self.counts.get(status)]

    def signature(self, batch: Batch) -> str:
        """A short fingerprint of what the batch's row shows: the poll re-sends only rows whose changed."""
        shown = (str(batch.status), batch.total, batch.success, sorted(self.counts.items()), self.quota_until,
                 [(f.summary, len(f.periods)) for f in self.failures], self.waiting_notes[:1], self.queued_ahead)
        return format(zlib.crc32(repr(shown).encode()), "08x")

    def hover(self) -> str:
        """The bar's tooltip: every count, e.g. 成功 2 · 已终止 10（共 12 个月份）."""
        return " · ".join(f"{label} {count}"
                          for _, label, count, _ in self.segments()) + f"（共 {self.subtasks} 个月份）"


def page_facts(batch_ids: list[int]) -> dict[int, BatchFacts]:
    """BatchFacts for every batch of a page: one grouped query, and one of the problem subtasks when a
    month failed or waits."""
    facts: dict[int, BatchFacts] = {batch_id: BatchFacts() for batch_id in batch_ids}
    if not batch_ids:
        return facts
    grouped = db.session.execute(
        select(Subtask.batch_id, Subtask.status, func.count(), func.sum(Subtask.total), func.sum(Subtask.success),
               func.min(Subtask.id))
        .where(Subtask.batch_id.in_(batch_ids)).group_by(Subtask.batch_id, Subtask.status))
    for batch_id, status, count, total, success, first in grouped:
        one = facts[batch_id]
        one.counts[status], one.totals[status], one.successes[status] = count, int(total or 0), int(success or 0)
        if status == SubtaskStatus.PENDING:
            one.first_pending = first
    _count_queued_ahead([one for one in facts.values()
                         if one.first_pending and not one.counts.get(SubtaskStatus.RUNNING)])
    if not any(one.counts.get(SubtaskStatus.FAILED) or one.counts.get(SubtaskStatus.WAITING) for one in facts.values()):
        return facts  # no month failed or waits: the second query would find nothing
    problems = db.session.execute(
        select(Subtask.batch_id, Subtask.period, Subtask.status, Subtask.error_code, Subtask.error_params,
               Subtask.error, Subtask.not_before)
        .where(Subtask.batch_id.in_(batch_ids), Subtask.status.in_((SubtaskStatus.FAILED, SubtaskStatus.WAITING)))
        .order_by(Subtask.batch_id, Subtask.period))
    for batch_id, period, status, code, params, error, not_before in problems:
        _add_problem(facts[batch_id], period, status, (code, params, error), not_before)
    return facts


POLL_SECONDS = 2  # while a month runs or is about to
POLL_WAITING_SECONDS = 30  # while everything running only waits (quota, the bureau preparing data)


def poll_every(live: list[Batch], facts: dict[int, BatchFacts]) -> int:
    """Seconds between a page's polls of its running batches (each page polls once, whatever it shows):
    POLL_SECONDS while a month of theirs runs or is about to, or a file is parsed; POLL_WAITING_SECONDS
    while they only wait, which may last hours."""
    busy = any(b.status == BatchStatus.PREPROCESSING or facts[b.id].counts.get(SubtaskStatus.RUNNING)
               or facts[b.id].counts.get(SubtaskStatus.PENDING)
               for b in live)
    return POLL_SECONDS if busy else POLL_WAITING_SECONDS


def _count_queued_ahead(queued: list[BatchFacts]) -> None:
    """For batches none of whose months runs yet: how many months of other batches are queued or running
    before their first one (the worker takes months in the order they were created), in one query.

    Why: a batch waiting behind another company's work otherwise sits at 待同步 with no hint (docs/rules.md, 批次状态).
    """
    if not queued:
        return
    last = max(one.first_pending for one in queued)
    ahead = list(db.session.scalars(select(Subtask.id).where(
        Subtask.status.in_((SubtaskStatus.PENDING, SubtaskStatus.RUNNING)), Subtask.id < last).order_by(Subtask.id)))
    for one in queued:
        one.queued_ahead = bisect_left(ahead, one.first_pending)


def _add_problem(one: BatchFacts, period: str, status: str, reason: tuple, not_before: datetime | None) -> None:
    """File a failed or waiting month under its reason (months with the same reason share one line);
    `reason` is the month's (error_code, error_params, error)."""
    code = reason[0] or (Reason.UNRECORDED if status == SubtaskStatus.FAILED and not reason[2] else None)
    summary, detail = reason_text(code, *reason[1:])
    if status == SubtaskStatus.WAITING:
        if code == Reason.QUOTA_WAIT and not_before:
            low, high = one.quota_until or (not_before, not_before)
            one.quota_until = (min(low, not_before), max(high, not_before))
        elif summary and summary not in one.waiting_notes:
            one.waiting_notes.append(summary)
        return
    failure = next((f for f in one.failures if f.summary == summary), None)
    if failure is None:
        failure = Failure(summary)
        one.failures.append(failure)
    failure.periods.append(period)
    if detail and detail not in failure.details:
        failure.details.append(detail)


def periods_text(periods: list[str], shown: int = 3) -> str:
    """Months as a short list: 2024-01、2024-02、2024-03 等 12 个月份."""
    text = "、".join(periods[:shown])
    return f"{text} 等 {len(periods)} 个月份" if len(periods) > shown else text


def waiting_text(one: BatchFacts) -> str | None:
    """已排队，等待额度至 <date> for a quota wait; another wait as the job said it; else, when other batches'
    months go first, how many."""
    if one.quota_until:
        low, high = one.quota_until
        text = f"已排队，等待额度至 {low:%Y-%m-%d}"
        return text + (f"（最晚 {high:%Y-%m-%d}）" if high.date() != low.date() else "")
    if one.waiting_notes:
        return one.waiting_notes[0]
    return f"排队中：前面还有 {one.queued_ahead:,} 个任务" if one.queued_ahead else None


def counts_scope(unfetched: int) -> str:
    """What 总份数 and 成功份数 leave out: they count only the months that ran, so a batch with failed
    or terminated months says so beside its counts (docs/rules.md, 批次状态); empty when every month ran."""
    return f"{unfetched} 个月份未获取" if unfetched else ""


def mismatch(batch: Batch, one: BatchFacts) -> list[str]:
    """Why 总份数 and 成功份数 differ, in plain Chinese; empty when they agree."""
    if batch.total == batch.success:
        return []
    reasons = []
    unit = "张发票未获取到用途状态" if batch.data_type == DataType.USAGE else "份未导入"
    active = sum(one.counts.get(s, 0) for s in SubtaskStatus.ACTIVE)
    if active:
        reasons.append(f"还有 {active} 个月份未执行完成")
    for status in (SubtaskStatus.FAILED, SubtaskStatus.TERMINATED):
        if one.counts.get(status):
            missing = one.totals.get(status, 0) - one.successes.get(status, 0)
            reasons.append(f"{one.counts[status]} 个月份{status.label}" + (f"，其中 {missing:,} {unit}"
                                                                           if missing else ""))
    unanswered = one.totals.get(SubtaskStatus.SUCCEEDED, 0) - one.successes.get(SubtaskStatus.SUCCEEDED, 0)
    if unanswered > 0:
        reasons.append(f"税局未返回 {unanswered:,} 张发票的用途状态（"
                       f"已查询 {one.totals[SubtaskStatus.SUCCEEDED]:,} 张，"
                       f"返回 {one.successes[SubtaskStatus.SUCCEEDED]:,} 张）" if batch.data_type == DataType.USAGE
                       else f"{unanswered:,} 份未写入发票池")
    return reasons


def created_notice(batches: list[Batch], facts: dict[int, BatchFacts]) -> list[tuple[str, str, str]]:
    """What the notice after creating batches says now, per batch: (batch_no, css class, text)."""
    lines = []
    for batch in batches:
        one = facts.get(batch.id, BatchFacts())
        if batch.status in BatchStatus.ACTIVE:
            waiting = waiting_text(one) if not one.counts.get(SubtaskStatus.RUNNING) else None
            lines.append((batch.batch_no, "info", waiting or "正在执行"))
        elif batch.status == BatchStatus.SUCCEEDED:
            lines.append((batch.batch_no, "ok", BatchStatus.SUCCEEDED.label))
        else:
            reason = one.failures[0].summary if one.failures else row_reason(batch)[0]
            lines.append((batch.batch_no, "error", BatchStatus(batch.status).label + (f"：{reason}" if reason else "")))
    return lines


def unanswered_keys(batch_id: int) -> list[tuple[str, list[str]]]:
    """(month, invoice keys) the bureau returned no usage status for, month by month."""
    rows = db.session.execute(select(Subtask.period, Subtask.unanswered_keys).where(
        Subtask.batch_id == batch_id, Subtask.unanswered_keys.is_not(None)).order_by(Subtask.period))
    return [(period, keys.split("\n")) for period, keys in rows if keys]
