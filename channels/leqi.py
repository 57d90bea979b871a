"""The 乐企 client: capability 203067 (乐企归集能力) as PROTOCOL.md describes it.

A download is an application (PLFPXZSQ) that returns a serial number, then packages fetched by
that number (PLFPXZSQFK). Applications are counted against the bureau's quota, so apply() is
never retried here: a retry the bureau had in fact accepted would spend a second application.
Everything else is read-only and retried with backoff.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import date

import httpx

from channels import reasons
from channels.http import DEFAULT_TIMEOUT, PROBE_REF, ApiClient, ChannelRejected, chunked, count_field
from channels.months import month_of
from channels.payload import staged_from_payloads, usage_from_answers, usage_request_item, wire_date
from channels.records import StagedInvoice, UsageQuery, UsageStatus, gc_paused

CAPABILITY = "203067"
SJLX_OUTPUT = "2"  # 销项
USAGE_CHUNK = 100


class LeqiClient(ApiClient):
    """乐企归集能力 over HTTP; one instance per configured app (X-App-Id / X-App-Secret)."""

    label = "乐企"

    def __init__(self, base_url: str, app_id: str, app_secret: str, *,
                 timeout: float = DEFAULT_TIMEOUT, transport: httpx.BaseTransport | None = None,
                 attempts: int = 6, backoff: float = 0.5, sleep: Callable[[float], None] = time.sleep,
                 poll_attempts: int | None = None) -> None:
        """poll_attempts bounds the wait for 处理中 on package 1 (default: attempts)."""
        super().__init__(base_url, headers={"X-App-Id": app_id, "X-App-Secret": app_secret},
                         timeout=timeout, transport=transport, attempts=attempts, backoff=backoff,
                         sleep=sleep)
        self.poll_attempts = poll_attempts or attempts

    def invoke(self, fwbm: str, body: dict) -> dict:
        """One 乐企 service call (one attempt): POST /access/v2/invoke/203067/{fwbm}/ with header fwbm."""
        return self.call("POST", f"/access/v2/invoke/{CAPABILITY}/{fwbm}/", json=body,
                         headers={"fwbm": fwbm})

    def probe_request(self) -> tuple:
        """PLFPXZSQFK for a serial number that does not exist: read-only, spends no quota."""
        return "POST", f"/access/v2/invoke/{CAPABILITY}/PLFPXZSQFK/", {
            "json": {"lsh": PROBE_REF, "packageno": 1}, "headers": {"fwbm": "PLFPXZSQFK"}}

    def apply(self, tax_id: str, start: date, end: date, type_code: str) -> str:
        """PLFPXZSQ for one invoicing month and one type; returns the serial number (lsh).

        One attempt only: each accepted application consumes quota, and a timeout may hide an
        accepted one. TransientError reaches the caller, who decides whether to spend another.
        """
        _check_month(start, end)
        data = self.invoke("PLFPXZSQ", {"nsrsbh": tax_id, "kprqq": wire_date(start), "kprqz": wire_date(end),
                                        "fplx": type_code, "sjlx": SJLX_OUTPUT})
        lsh = data.get("lsh")
        if not isinstance(lsh, str) or not lsh:
            raise ChannelRejected(f"{self.label}：下载申请成功但未返回流水号", **self.why(reasons.CHANNEL_BAD_ANSWER))
        return lsh

    def fetch_rows(self, lsh: str, tax_id: str | None = None) -> Iterator[StagedInvoice]:
        """The application's invoices as the pool's staged rows (no per-invoice objects made), package
        by package, waiting out 处理中 on the first.

        Lazy: each package is requested when the previous one has been consumed. Every invoice
        must be a sale of `tax_id` (default: the nsrsbh the package names).
        """
        with gc_paused():
            first = self.retrying(lambda: self._package(lsh, 1), self.poll_attempts)
            count = count_field(first.get("packagecount"), "packagecount", self.label)
            seller = tax_id or str(first.get("nsrsbh") or "")
            rows = staged_from_payloads(first.get("fpxx"), seller, self.label) if count else []
        yield from rows
        for number in range(2, count + 1):
            with gc_paused():
                package = self.retrying(lambda n=number: self._package(lsh, n))
                rows = staged_from_payloads(package.get("fpxx"), seller, self.label)
            yield from rows

    def _package(self, lsh: str, number: int) -> dict:
        """One PLFPXZSQFK package, checked to be the package asked for."""
        data = self.invoke("PLFPXZSQFK", {"lsh": lsh, "packageno": number})
        if data.get("packageno", number) != number:
            raise ChannelRejected(f"{self.label}：请求第 {number} 包，返回了第 {data.get('packageno')} 包",
                                  **self.why(reasons.CHANNEL_BAD_ANSWER))
        return data

    def query_usage(self, tax_id: str, queries: list[UsageQuery]) -> list[UsageStatus]:
        """FPZTXXCX in chunks of 100, each retried; answers in the 乐企 code set, in query order."""
        statuses: list[UsageStatus] = []
        for chunk in chunked(queries, USAGE_CHUNK):
            body = {"nsrsbh": tax_id, "fpxx": [usage_request_item(query) for query in chunk]}
            data = self.retrying(lambda body=body: self.invoke("FPZTXXCX", body))
            statuses.extend(usage_from_answers(data.get("fpxx"), chunk, self.label))
        return statuses


def _check_month(start: date, end: date) -> None:
    """The quota unit is one invoicing month: a range across months is the caller's bug."""
    if end < start or month_of(start) != month_of(end):
        raise ValueError(f"乐企下载申请须在同一开票月份内：{start} ~ {end}")

