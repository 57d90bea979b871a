"""The RPA robot client (PROTOCOL.md): an asynchronous task per download, logged in as the
company's default e-tax account (dlzh).

RPA has no quota, so every call, task submission included, is retried: a duplicated task costs
the robot some time, never the company a download.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import date

import httpx

from channels import reasons
from channels.http import DEFAULT_TIMEOUT, PROBE_REF, ApiClient, ChannelRejected, Pending, chunked, count_field
from channels.payload import staged_from_payloads, usage_from_answers, usage_request_item, wire_date
from channels.records import (
    SourceRejected,
    StagedInvoice,
    UsageQuery,
    UsageStatus,
    gc_paused,
)

USAGE_CHUNK = 100
NO_ACCOUNT = "未配置默认电子税局账号，请在企业信息中设置默认电子税局账号后再使用 RPA 通道"


class RpaClient(ApiClient):
    """The RPA robot service over HTTP, authenticated by X-Api-Key."""

    label = "RPA"

    def __init__(self, base_url: str, api_key: str, *, timeout: float = DEFAULT_TIMEOUT,
                 transport: httpx.BaseTransport | None = None, attempts: int = 6,
                 backoff: float = 0.5, sleep: Callable[[float], None] = time.sleep,
                 poll_attempts: int | None = None) -> None:
        """poll_attempts bounds the wait for a running task (default: attempts)."""
        super().__init__(base_url, headers={"X-Api-Key": api_key}, timeout=timeout,
                         transport=transport, attempts=attempts, backoff=backoff, sleep=sleep)
        self.poll_attempts = poll_attempts or attempts

    def probe_request(self) -> tuple:
        """The status of a task that does not exist: read-only, starts no robot."""
        return "GET", f"/rpa/v1/tasks/{PROBE_REF}", {}

    def submit(self, tax_id: str, account: str | None, start: date, end: date, type_codes: list[str]) -> str:
        """Start a robot download task (a wrong account raises here); returns its task id, which the
        caller keeps so a long-running task is polled again later instead of submitted again."""
        account = _require_account(account)
        type_codes = [type_codes] if isinstance(type_codes, str) else list(type_codes)
        body = {"kind": "invoices", "nsrsbh": tax_id, "dlzh": account, "kprqq": wire_date(start),
                "kprqz": wire_date(end), "fplx": type_codes}
        data = self.retrying(lambda: self.call("POST", "/rpa/v1/tasks", json=body))
        task_id = data.get("task_id")
        if not isinstance(task_id, str) or not task_id:
            raise ChannelRejected(f"{self.label}：任务提交成功但未返回任务编号", **self.why(reasons.CHANNEL_BAD_ANSWER))
        return task_id

    def fetch_rows(self, task_id: str, tax_id: str) -> Iterator[StagedInvoice]:
        """A task's invoices as the pool's staged rows once it is done; Pending while the robot still
        works on it."""
        return self._results(task_id, tax_id)

    def _results(self, task_id: str, tax_id: str) -> Iterator[StagedInvoice]:
        """Every page of a task once it is done, each page requested when the last is consumed."""
        pages = self.retrying(lambda: self._finished(task_id), self.poll_attempts)
        for number in range(1, pages + 1):
            with gc_paused():
                page = self.retrying(lambda n=number: self._page(task_id, n))
                rows = staged_from_payloads(page.get("fpxx"), tax_id, self.label)
            yield from rows

    def _finished(self, task_id: str) -> int:
        """The page count of a done task; running is Pending (polled), failed is a refusal."""
        data = self.call("GET", f"/rpa/v1/tasks/{task_id}")
        status = data.get("status")
        if status == "running":
            raise Pending(f"{self.label}：任务 {task_id} 执行中", **self.why(reasons.CHANNEL_PENDING))
        if status == "failed":
            raise ChannelRejected(f"{self.label}：任务执行失败：{data.get('error') or '未说明原因'}",
                                  **self.why(reasons.RPA_TASK_FAILED))
        if status != "done":
            raise ChannelRejected(f"{self.label}：任务状态无法识别（{status!r}）",
                                  **self.why(reasons.CHANNEL_BAD_ANSWER))
        return count_field(data.get("pages"), "pages", self.label)

    def _page(self, task_id: str, number: int) -> dict:
        """One result page, checked to be the page asked for."""
        data = self.call("GET", f"/rpa/v1/tasks/{task_id}/pages/{number}")
        if data.get("page", number) != number:
            raise ChannelRejected(f"{self.label}：请求第 {number} 页，返回了第 {data.get('page')} 页",
                                  **self.why(reasons.CHANNEL_BAD_ANSWER))
        return data

    def query_usage(self, tax_id: str, account: str | None,
                    queries: list[UsageQuery]) -> list[UsageStatus]:
        """Usage status in chunks of 100, retried; answers in the e-tax code set, in query order."""
        account = _require_account(account)
        statuses: list[UsageStatus] = []
        for chunk in chunked(queries, USAGE_CHUNK):
            body = {"nsrsbh": tax_id, "dlzh": account, "fpxx": [usage_request_item(q) for q in chunk]}
            data = self.retrying(lambda body=body: self.call("POST", "/rpa/v1/usage", json=body))
            statuses.extend(usage_from_answers(data.get("fpxx"), chunk, self.label))
        return statuses


def _require_account(account: str | None) -> str:
    """The robot logs in as the company's default e-tax account; without one it cannot start."""
    account = (account or "").strip()
    if not account:
        raise SourceRejected(NO_ACCOUNT)
    return account
