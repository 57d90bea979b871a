"""The HTTP layer both channel clients share: one envelope rule, one retry rule (PROTOCOL.md).

Every failure ends as one of two exceptions from channels.records: TransientError (worth trying
again later: 处理中, 系统繁忙, 5xx, timeouts, connection errors) or SourceRejected (the source
said no, or answered outside the contract; the message is shown to the user). The job layer
needs nothing else to decide between retrying a subtask and failing it.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import httpx
import orjson
import tenacity

from channels import reasons
from channels.records import ChannelRejected, Pending, TransientError

T = TypeVar("T")

CODE_OK = "00"
CODE_PENDING = "01"
CODE_BUSY = "20"
CODE_UNKNOWN_REF = "15"  # 流水号/任务不存在或已过期: what a probe for a made-up reference expects
PROBE_REF = "health-check"  # the made-up reference a probe asks for (no quota, no side effect)
PROBE_TIMEOUT = 5.0  # seconds: `flask doctor` and /healthz must answer fast
DEFAULT_TIMEOUT = 30.0
MAX_DELAY = 60.0  # one wait never exceeds a minute, however many attempts a caller allows


class ApiClient:
    """An httpx.Client for one channel plus the envelope and retry rules; subclasses add calls."""

    label = "税局接口"  # names the channel in every message the user sees

    def __init__(self, base_url: str, *, headers: dict[str, str] | None = None,
                 timeout: float = DEFAULT_TIMEOUT, transport: httpx.BaseTransport | None = None,
                 attempts: int = 6, backoff: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """`transport` is httpx.WSGITransport for the in-process sandbox; None means real HTTP."""
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.http = httpx.Client(base_url=base_url, headers=headers or {}, timeout=timeout,
                                 transport=transport)
        self.attempts, self.backoff, self.sleep = attempts, backoff, sleep

    def close(self) -> None:
        """Release the connection pool."""
        self.http.close()

    def __enter__(self):
        """Use as a context manager to close the pool when done."""
        return self

    def __exit__(self, *exc_info) -> None:
        """Close on leaving the with-block."""
        self.close()

    def call(self, method: str, path: str, *, json: object = None,
             headers: dict[str, str] | None = None) -> dict:
        """One request, one attempt: the envelope's data on code 00, else the right exception."""
        return self.unwrap(self.send(method, path, json=json, headers=headers))

    def send(self, method: str, path: str, **kwargs) -> httpx.Response:
        """The raw exchange; network trouble is transient, a malformed base URL is not."""
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.UnsupportedProtocol as exc:
            raise ChannelRejected(f"{self.label}：通道地址配置错误（{exc}）",
                                  **self.why(reasons.CHANNEL_ADDRESS)) from exc
        except httpx.TimeoutException as exc:
            raise TransientError(f"{self.label}：请求超时", **self.why(reasons.CHANNEL_TIMEOUT)) from exc
        except httpx.TransportError as exc:
            raise TransientError(f"{self.label}：无法连接服务（{type(exc).__name__}）",
                                 **self.why(reasons.CHANNEL_UNREACHABLE)) from exc

    def unwrap(self, response: httpx.Response) -> dict:
        """Apply PROTOCOL.md's code table to one response."""
        status = response.status_code
        if status >= 500 or status == 429:
            raise TransientError(f"{self.label}：服务暂时不可用（HTTP {status}）",
                                 **self.why(reasons.CHANNEL_UNAVAILABLE))
        if status != 200:
            raise ChannelRejected(f"{self.label}：接口返回 HTTP {status}，请检查通道地址和凭证配置",
                                  **self.why(reasons.LOGIN_FAILED))
        envelope = self._envelope(response)
        code, msg = str(envelope.get("code")), str(envelope.get("msg") or "")
        if code == CODE_OK:
            return self._data(envelope)
        if code == CODE_PENDING:
            raise Pending(f"{self.label}：{msg or '处理中'}", **self.why(reasons.CHANNEL_PENDING))
        if code == CODE_BUSY:
            raise TransientError(f"{self.label}：{msg or '系统繁忙'}", **self.why(reasons.CHANNEL_UNAVAILABLE))
        raise ChannelRejected(f"{self.label}：{msg or f'请求被拒绝（代码 {code}）'}", code,
                              **self.why(reasons.CHANNEL_REFUSED, message=msg or "请联系管理员"))

    def _envelope(self, response: httpx.Response) -> dict:
        """The JSON envelope, or a refusal naming the breach (a proxy's HTML page, say).

        orjson reads a page of 500 invoices about a quarter faster than the standard library (the
        demo year: 0.32 s against 0.43 s of CPU); what it refuses (another Unicode encoding than
        UTF-8, NaN) goes to httpx's own reader, as it always did."""
        try:
            envelope = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            envelope = self._json(response)
        if not isinstance(envelope, dict) or "code" not in envelope:
            raise ChannelRejected(f"{self.label}：返回内容不符合接口协议（缺少 code）",
                                  **self.why(reasons.CHANNEL_BAD_ANSWER))
        return envelope

    def _json(self, response: httpx.Response) -> object:
        """The body by httpx's reader (charset detection, the standard library's JSON)."""
        try:
            return response.json()
        except ValueError:
            raise ChannelRejected(f"{self.label}：返回内容不是有效的 JSON，请检查通道地址配置",
                                  **self.why(reasons.CHANNEL_BAD_ANSWER)) from None

    def _data(self, envelope: dict) -> dict:
        """A success's data object; anything but an object breaks the contract."""
        data = envelope.get("data")
        if not isinstance(data, dict):
            raise ChannelRejected(f"{self.label}：返回内容不符合接口协议（data 应为对象）",
                                  **self.why(reasons.CHANNEL_BAD_ANSWER))
        return data

    def why(self, reason: str, **params) -> dict:
        """An error's reason and parameters, naming this channel (channels.records.Reasoned)."""
        return {"reason": reason, "channel": self.label, **params}

    def probe(self) -> None:
        """Whether the service answers and takes our credentials, at no cost: ask for a reference
        that does not exist (PROBE_REF). 不存在 (code 15) is the expected answer; anything else
        (a refusal, HTTP 401/403, a timeout) is raised as the client's usual exception."""
        try:
            method, path, kwargs = self.probe_request()
            self.call(method, path, **kwargs)
        except ChannelRejected as exc:
            if exc.code != CODE_UNKNOWN_REF:
                raise

    def probe_request(self) -> tuple:
        """(method, path, keyword arguments) of the channel's read-only call for PROBE_REF."""
        raise NotImplementedError

    def retrying(self, fn: Callable[[], T], attempts: int | None = None) -> T:
        """fn with this client's retry policy (or a longer one for polling)."""
        return with_retries(fn, attempts or self.attempts, self.backoff, self.sleep)


def with_retries(fn: Callable[[], T], attempts: int, backoff: float,
                 sleep: Callable[[float], None] = time.sleep, max_delay: float = MAX_DELAY) -> T:
    """Call fn until it stops raising TransientError, waiting backoff·2ⁿ (at most max_delay) between
    attempts: PROTOCOL.md's retry rule, through tenacity.

    SourceRejected passes straight through: retrying a refusal only wastes the user's time.
    After the last attempt the error is raised again with the attempt count, keeping the
    Pending class so the caller still knows the result was merely not ready.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    retrying = tenacity.Retrying(retry=tenacity.retry_if_exception_type(TransientError),
                                 stop=tenacity.stop_after_attempt(attempts),
                                 wait=tenacity.wait_exponential(multiplier=backoff, max=max_delay),
                                 sleep=sleep, reraise=True)
    try:
        return retrying(fn)
    except TransientError as exc:
        raise _exhausted(exc, attempts) from exc


def _exhausted(exc: TransientError, attempts: int) -> TransientError:
    """The final error, saying how long we tried: the user sees it on the failed subtask."""
    if isinstance(exc, Pending):
        return Pending(f"{exc}（已查询 {attempts} 次仍未处理完成，请稍后重试）", **_counted(exc, attempts))
    return TransientError(f"{exc}（已尝试 {attempts} 次，服务仍不可用，请稍后重试）", **_counted(exc, attempts))


def _counted(exc: TransientError, attempts: int) -> dict:
    """The error's reason and parameters, with how often it was tried (the sentence says so)."""
    return {"reason": exc.reason, **exc.params, "attempts": attempts}


def count_field(value: object, field: str, label: str) -> int:
    """A count the paging loop depends on (packagecount, pages): a non-negative int, else refused."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ChannelRejected(f"{label}：返回的数量无效（{field}={value!r}）", reason=reasons.CHANNEL_BAD_ANSWER,
                              channel=label)
    return value


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most `size` items (the protocol's 100-invoice request limit)."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
