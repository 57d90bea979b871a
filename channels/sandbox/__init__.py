"""The sandbox tax bureau: 乐企 and the RPA robot service over real HTTP (channels/PROTOCOL.md).

A small Flask app of its own, not the product's: run it with
``flask --app channels.sandbox run --port 5099``, or serve it in-process through
``httpx.WSGITransport(app=create_app({...}))``. Invoices come from ``data`` (deterministic per
tax ID, month and type); everything that changes (companies, applications, tasks, quota log,
counters, control settings) lives in ``state``'s SQLite file, so any number of app instances in
any number of processes behave as one bureau.

Both channels go through one path (``_serve``): latency, failure injection, the envelope and the
request counters are written once. Beyond the bureau's own calls, ``/sandbox/*`` is a control API
for tests and demos: stats, settings (latency, failures, polls, the sandbox's clock), companies
and reset.

Configuration (``create_app(config)``, else environment variables of the same name):
``SANDBOX_DB`` (default ``$DATA_DIR/sandbox.db``, else ``./instance/sandbox.db``),
``SANDBOX_LATENCY_MS``, ``SANDBOX_FAIL_RATE``, ``SANDBOX_FAIL_SERVICES`` (comma-separated),
``SANDBOX_PROCESSING_POLLS`` and ``SANDBOX_TODAY``; ``lowercase_ids`` (control API only) makes the
bureau write tax IDs in lower case. They are defaults: a value set through
``POST /sandbox/control`` is stored in the database and wins, for every instance.
"""
from __future__ import annotations

import hashlib
import math
import time
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path

import orjson
from flask import Blueprint, Flask, current_app, g, jsonify, request

import settings
from channels.months import month_of, months_between
from channels.sandbox import data
from channels.sandbox.state import SandboxState, parse_day

CAPABILITY = "203067"
PACKAGE_SIZE = 500  # 乐企 package and RPA page size
USAGE_LIMIT = 100  # invoices per usage query
RESULT_DAYS = 7  # an application's result stays available this long
MAX_TASK_DAYS = 366  # the e-tax bureau queries at most a year at a time
_SETTING_KEYS = {"SANDBOX_LATENCY_MS": "latency_ms", "SANDBOX_FAIL_RATE": "fail_rate",
                 "SANDBOX_FAIL_SERVICES": "fail_services", "SANDBOX_PROCESSING_POLLS": "processing_polls",
                 "SANDBOX_TODAY": "today"}


def create_app(config: dict | None = None) -> Flask:
    """The sandbox bureau app; `config` overrides the environment (see the module docstring)."""
    app = Flask(__name__)
    app.config.from_mapping(settings.sandbox_config(_SETTING_KEYS))
    app.config.update(config or {})
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    defaults = {setting: app.config[key] for key, setting in _SETTING_KEYS.items()
                if app.config.get(key) not in (None, "")}
    app.extensions["sandbox_state"] = SandboxState(app.config["SANDBOX_DB"], defaults)
    app.register_blueprint(leqi)
    app.register_blueprint(rpa)
    app.register_blueprint(control)
    return app


def known_companies(db_path: str | Path) -> list[dict]:
    """The tax IDs this sandbox knows (tax_id, name, leqi_enabled, leqi_since, rpa_account), for a
    host to tell its users which ones to test with (docs/rules.md, 沙箱)."""
    return SandboxState(db_path).companies()


def _state() -> SandboxState:
    """This app's handle on the shared state."""
    return current_app.extensions["sandbox_state"]


# ------------------------------------------------------------------------------------------
# What both channels share: envelope, latency, failure injection, counting, validation
# ------------------------------------------------------------------------------------------


class BureauError(Exception):
    """A non-00 answer (PROTOCOL.md code table) with its Chinese message."""

    def __init__(self, code: str, msg: str) -> None:
        """Keep the code and message for the envelope."""
        super().__init__(msg)
        self.code, self.msg = code, msg


def _envelope(code: str, msg: str, payload: dict | None, status: int = 200):
    """The protocol's one response shape; orjson writes a page of 500 invoices about nine times
    faster than Flask's encoder (the demo year: 0.05 s against 0.45 s of CPU), and the in-process
    sandbox's answers should cost the host little."""
    body = orjson.dumps({"code": code, "msg": msg, "data": payload})
    return current_app.response_class(body, status=status, mimetype="application/json")


def _serve(channel: str, service: str, tax_id: str | None, handler: Callable[[], dict]):
    """Answer one bureau call: wait, maybe fail on purpose, run the handler, count the outcome.

    Failures are injected before the handler runs, so an injected failure has no side effect
    (no quota spent, no poll counted), as when a real gateway drops a request.
    """
    g.settings = settings = _state().settings()
    if settings["latency_ms"]:
        time.sleep(settings["latency_ms"] / 1000)
    g.extra_counts = []
    failure = _injected_failure(settings, channel, service)
    if failure == "503":
        _count(channel, service, tax_id, "http503")
        return _envelope("20", "服务暂时不可用", None, 503)
    if failure == "20":
        code, msg, payload = "20", "系统繁忙，请稍后重试", None
    else:
        try:
            code, msg, payload = "00", "成功", handler()
        except BureauError as refusal:
            code, msg, payload = refusal.code, refusal.msg, None
    _count(channel, service, tax_id, code)
    return _envelope(code, msg, payload)


def _today() -> date:
    """The bureau's today for this request: the `today` setting, else the real date."""
    override = g.settings["today"]
    return date.fromisoformat(override) if override else date.today()


def _count(channel: str, service: str, tax_id: str | None, code: str) -> None:
    """One request counted per (channel, service, tax ID, code), plus what the handler counted."""
    rows = [("requests", channel, service, tax_id or "", code, 1), *getattr(g, "extra_counts", [])]
    _state().count(rows)


def _injected_failure(settings: dict, channel: str, service: str) -> str | None:
    """'503', '20' or None, from the shared deterministic sequence, for targeted services only."""
    rate = settings["fail_rate"]
    targets = set(settings["fail_services"])
    if rate <= 0 or (targets and not targets & {service, f"{channel}.{service}", channel}):
        return None
    ticket = _state().next_failure_ticket()
    digest = hashlib.blake2b(f"failure|{ticket}".encode(), digest_size=9).digest()
    if int.from_bytes(digest[:8], "big") / 2 ** 64 >= rate:
        return None
    return "503" if digest[8] & 1 else "20"


def _body() -> dict:
    """The JSON object sent; anything else is a parameter error."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BureauError("10", "参数错误：请求体须为 JSON 对象")
    return body


def _peek_tax_id() -> str | None:
    """The nsrsbh of a request body, for counting even requests that fail before validation."""
    body = request.get_json(silent=True)
    value = body.get("nsrsbh") if isinstance(body, dict) else None
    return value.strip().upper() if isinstance(value, str) else None


def _tax_id(body: dict) -> str:
    """nsrsbh: 15-20 letters or digits."""
    value = body.get("nsrsbh")
    if not isinstance(value, str) or not (15 <= len(value.strip()) <= 20 and value.strip().isalnum()):
        raise BureauError("10", "参数错误：nsrsbh（纳税人识别号）格式错误")
    return value.strip().upper()


def _day(body: dict, field: str) -> date:
    """A YYYYMMDD date field."""
    value = body.get(field)
    if not isinstance(value, str) or len(value) != 8 or not value.isdigit():
        raise BureauError("10", f"参数错误：{field} 应为 YYYYMMDD 格式的日期")
    try:
        return parse_day(value)
    except ValueError:
        raise BureauError("10", f"参数错误：{field} 不是有效日期（{value}）") from None


def _kind(value: object, field: str = "fplx") -> str:
    """One of the six kinds this product downloads (发票种类)."""
    if value not in data.KINDS:
        raise BureauError("10", f"参数错误：{field} 不支持（{value!r}），可选 {', '.join(data.KINDS)}")
    return value


def _date_range(body: dict, today: date) -> tuple[date, date]:
    """kprqq..kprqz, in order and not starting in the bureau's future."""
    first, last = _day(body, "kprqq"), _day(body, "kprqz")
    if last < first:
        raise BureauError("10", "参数错误：开票日期止（kprqz）早于开票日期起（kprqq）")
    if first > today:
        raise BureauError("10", f"参数错误：开票日期起（{first:%Y%m%d}）晚于当前日期（{today:%Y%m%d}）")
    return first, last


def _company(tax_id: str) -> dict:
    """A registered sandbox company, else code 11."""
    company = _state().company(tax_id)
    if company is None:
        raise BureauError("11", f"非沙箱税号：纳税人 {tax_id} 不存在")
    return company


def _bureau_now() -> datetime | None:
    """The moment no answer goes beyond, to the minute: the host's clock when one is given
    (SANDBOX_CLOCK: the product's own clock when the sandbox runs in-process), else the real time
    unless a `today` is set (a test's day then stands for all of it)."""
    clock = current_app.config.get("SANDBOX_CLOCK")
    if clock is None and g.settings["today"]:
        return None
    return (clock() if clock else datetime.now()).replace(second=0, microsecond=0)


def _capped(as_of: date) -> date | datetime:
    """`as_of` (a day), cut at the bureau's now: it never shows an invoice dated after now."""
    moment = _bureau_now()
    return moment if moment is not None and moment < datetime.combine(as_of, datetime.max.time()) else as_of


def _invoices(company: dict, first: date, last: date, kinds: list[str], as_of: date) -> list[dict]:
    """A company's invoices of `kinds` issued first..last, as the bureau saw them on `as_of`
    (and never one dated after now)."""
    invoices = _cached_invoices(company["tax_id"], company["name"], _volume_key(company["volume"]),
                                company.get("industry"), first, last, tuple(kinds), _capped(as_of))
    if g.settings["lowercase_ids"]:
        return [_lowercase_ids(invoice) for invoice in invoices]
    return list(invoices)


def _lowercase_ids(invoice: dict) -> dict:
    """A copy of the invoice (the cached one stays as it is) with xfsh and gfsh in lower case."""
    return {**invoice, "xfsh": invoice["xfsh"].lower(), "gfsh": invoice["gfsh"].lower()}


def _volume_key(volume: object) -> object:
    """A volume in hashable form (for the cache below)."""
    return tuple(sorted(volume.items())) if isinstance(volume, dict) else volume


@lru_cache(maxsize=8)
def _cached_invoices(tax_id: str, name: str, volume: object, industry: str | None, first: date, last: date,
                     kinds: tuple[str, ...], as_of: date | datetime) -> tuple[dict, ...]:
    """One download's invoices, month by month and kind by kind; cached so paging is cheap."""
    volume = dict(volume) if isinstance(volume, tuple) else volume
    low, high = first.isoformat(), last.isoformat()
    out: list[dict] = []
    for month in months_between(month_of(first), month_of(last)):
        for kind in kinds:
            out.extend(inv for inv in data.invoices_for(tax_id, month, kind, name=name, volume=volume,
                                                        industry=industry, as_of=as_of)
                       if low <= inv["kprq"][:10] <= high)
    return tuple(out)


def _page(items: list[dict], number: object, field: str) -> tuple[list[dict], int]:
    """(page `number` of PACKAGE_SIZE items, page count); an empty result has page 1 and 0 pages."""
    if isinstance(number, str) and number.isdigit():
        number = int(number)
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise BureauError("10", f"参数错误：{field} 应为从 1 开始的整数")
    count = math.ceil(len(items) / PACKAGE_SIZE)
    if number > max(count, 1):
        raise BureauError("10", f"参数错误：{field}={number} 超出范围（共 {count} 个）")
    return items[(number - 1) * PACKAGE_SIZE:number * PACKAGE_SIZE], count


def _usage_answers(channel: str, service: str, company: dict, body: dict) -> dict:
    """Usage status for ≤100 invoices, in request order, in `channel`'s code set.

    Red invoices are answered too (a real bureau would), and counted, so tests can prove the
    product never asks for them (docs/rules.md, 用途状态).
    """
    items = body.get("fpxx")
    if not isinstance(items, list) or not 1 <= len(items) <= USAGE_LIMIT:
        raise BureauError("10", f"参数错误：fpxx 应为 1 到 {USAGE_LIMIT} 张发票的列表")
    today = _today()
    queries = [_usage_item(item, pos) for pos, item in enumerate(items, start=1)]
    answers, red = [], 0
    for fplx, fpdm, fphm, issued in queries:
        invoice = _known_invoice(company, fplx, fpdm, fphm, issued, today)
        red += bool(invoice and invoice["sfzs"] == "N")
        answers.append(_usage_answer(channel, fpdm, fphm, invoice))
    g.extra_counts += [("usage_items", channel, service, company["tax_id"], "", len(items)),
                       ("usage_red", channel, service, company["tax_id"], "", red)]
    return {"fpxx": answers}


def _usage_item(item: object, pos: int) -> tuple[str, str, str, date]:
    """(fplx, fpdm, fphm, kprq) of one usage query entry."""
    if not isinstance(item, dict):
        raise BureauError("10", f"参数错误：fpxx 第 {pos} 项应为对象")
    fplx, fpdm, fphm = (item.get(k) if item.get(k) is not None else "" for k in ("fplx", "fpdm", "fphm"))
    if not all(isinstance(v, str) for v in (fplx, fpdm, fphm)) or not fphm:
        raise BureauError("10", f"参数错误：fpxx 第 {pos} 项的 fplx、fpdm、fphm 应为字符串且 fphm 不能为空")
    try:
        issued = _day(item, "kprq")
    except BureauError as bad:
        raise BureauError("10", f"{bad.msg}（fpxx 第 {pos} 项）") from None
    return fplx, fpdm, fphm, issued


def _known_invoice(company: dict, fplx: str, fpdm: str, fphm: str, issued: date, today: date) -> dict | None:
    """The invoice a usage query names, if the bureau knows it today."""
    key = f"{fpdm}-{fphm}" if fpdm else fphm
    return data.find_invoice(company["tax_id"], fplx, key, issued, name=company["name"],
                             volume=company["volume"], industry=company.get("industry"), as_of=_capped(today))


def _usage_answer(channel: str, fpdm: str, fphm: str, invoice: dict | None) -> dict:
    """One answer entry; an unknown invoice has null statuses and says so."""
    if invoice is None:
        return {"fphm": fphm, "fpdm": fpdm, "fpyt": None, "xfsyt": None, "rzzt": None, "fpzt": None,
                "hzsdbs": None, "msg": "未查询到该发票"}
    return {"fphm": fphm, "fpdm": fpdm, **data.usage_for(data.key_of(invoice), channel, invoice)}


# ------------------------------------------------------------------------------------------
# 乐企 (capability 203067)
# ------------------------------------------------------------------------------------------

leqi = Blueprint("leqi", __name__)


@leqi.post("/access/v2/invoke/<capability>/<fwbm>/", strict_slashes=False)
@leqi.post("/access/sandbox/v2/invoke/<capability>/<fwbm>/", strict_slashes=False)
def leqi_invoke(capability: str, fwbm: str):
    """Every 乐企 call: one path, the service code in the path and the fwbm header."""
    service = fwbm.upper()
    tax_id = _peek_tax_id()
    if service == "PLFPXZSQFK":
        tax_id = _application_tax_id()
    return _serve("leqi", service, tax_id, lambda: _leqi_dispatch(capability, service))


def _application_tax_id() -> str | None:
    """The tax ID behind a feedback call's lsh (the request itself does not carry one)."""
    body = request.get_json(silent=True)
    lsh = body.get("lsh") if isinstance(body, dict) else None
    application = _state().application(lsh) if isinstance(lsh, str) else None
    return application["tax_id"] if application else None


def _leqi_dispatch(capability: str, service: str) -> dict:
    """Route to the service's handler after checking capability and header."""
    if capability != CAPABILITY:
        raise BureauError("10", f"参数错误：能力编码 {capability} 不支持（沙箱仅提供 {CAPABILITY} 乐企归集能力）")
    header = request.headers.get("fwbm")
    if header is not None and header.upper() != service:
        raise BureauError("10", f"参数错误：请求头 fwbm（{header}）与服务编码（{service}）不一致")
    handler = LEQI_SERVICES.get(service)
    if handler is None:
        raise BureauError("10", f"参数错误：服务编码 {service} 不支持")
    return handler(_body())


def _leqi_company(tax_id: str) -> dict:
    """A registered company with 乐企归集能力 authorised, else code 11 or 12."""
    company = _company(tax_id)
    if not company["leqi_enabled"]:
        raise BureauError("12", f"纳税人 {tax_id} 未开通乐企归集能力（{CAPABILITY}）")
    return company


def leqi_apply(body: dict) -> dict:
    """PLFPXZSQ: one invoicing month and one type; quota checked and spent atomically."""
    tax_id = _tax_id(body)
    today = _today()
    first, last = _date_range(body, today)
    if month_of(first) != month_of(last):
        raise BureauError("10", "参数错误：kprqq 与 kprqz 须在同一开票月份内")
    fplx = _kind(body.get("fplx"))
    if str(body.get("sjlx")) != "2":
        raise BureauError("10", "参数错误：sjlx 仅支持 2（销项票）")
    _leqi_company(tax_id)
    lsh = uuid.uuid4().hex
    refusal = _state().apply(lsh, tax_id, first, last, fplx, today, g.settings["processing_polls"])
    if refusal:
        raise BureauError("13", refusal)
    return {"lsh": lsh}


def leqi_feedback(body: dict) -> dict:
    """PLFPXZSQFK: 处理中 for the first polls, then packages of ≤500 invoices."""
    lsh = body.get("lsh")
    application = _state().poll_application(lsh) if isinstance(lsh, str) and lsh else None
    if application is None or _expired(application):
        raise BureauError("15", f"流水号不存在或已过期：{lsh}")
    if application["polls"] <= application["ready_after"]:
        raise BureauError("01", "处理中，请稍后再查询")
    company = _company(application["tax_id"])
    fpxx, count = _page(_application_invoices(application, company), body.get("packageno"), "packageno")
    return {"lsh": lsh, "nsrsbh": company["tax_id"], "fplx": application["fplx"], "packagecount": count,
            "packageno": int(body["packageno"]), "fpxx": fpxx}


def _expired(application: dict) -> bool:
    """Results stay available for RESULT_DAYS days after the application (bureau time)."""
    return date.fromisoformat(application["applied_on"]) + timedelta(days=RESULT_DAYS) < _today()


def _application_invoices(application: dict, company: dict) -> list[dict]:
    """What an application returns: only invoices issued since the 乐企 authorisation date."""
    first = date.fromisoformat(application["kprqq"])
    if company.get("leqi_since"):
        first = max(first, date.fromisoformat(company["leqi_since"]))
    last = date.fromisoformat(application["kprqz"])
    if first > last:
        return []
    return _invoices(company, first, last, [application["fplx"]], date.fromisoformat(application["applied_on"]))


def leqi_usage(body: dict) -> dict:
    """FPZTXXCX: usage status in the 乐企 code set (rzzt 01/02/03)."""
    return _usage_answers("leqi", "FPZTXXCX", _leqi_company(_tax_id(body)), body)


LEQI_SERVICES: dict[str, Callable[[dict], dict]] = {
    "PLFPXZSQ": leqi_apply, "PLFPXZSQFK": leqi_feedback, "FPZTXXCX": leqi_usage,
}


# ------------------------------------------------------------------------------------------
# RPA robot service
# ------------------------------------------------------------------------------------------

rpa = Blueprint("rpa", __name__, url_prefix="/rpa/v1")


@rpa.post("/tasks")
def rpa_create_task():
    """Start a download task for a date range and several kinds."""
    return _serve("rpa", "tasks", _peek_tax_id(), lambda: _create_task(_body()))


@rpa.get("/tasks/<task_id>")
def rpa_task_status(task_id: str):
    """A task's status: running for the first polls, then done with its page count."""
    return _serve("rpa", "task", _task_tax_id(task_id), lambda: _task_status(task_id))


@rpa.get("/tasks/<task_id>/pages/<int:number>")
def rpa_task_page(task_id: str, number: int):
    """One page of a done task's invoices."""
    return _serve("rpa", "page", _task_tax_id(task_id), lambda: _task_page(task_id, number))


@rpa.post("/usage")
def rpa_usage():
    """Usage status in the e-tax code set (rzzt 01/02/03/06)."""
    return _serve("rpa", "usage", _peek_tax_id(), lambda: _rpa_usage(_body()))


def _task_tax_id(task_id: str) -> str | None:
    """The tax ID a task belongs to, for counting."""
    task = _state().task(task_id)
    return task["tax_id"] if task else None


def _rpa_company(body: dict) -> dict:
    """A registered company whose default e-tax account is the one sent, else code 11 or 14.

    The robot logs in with the account (dlzh); the password, when a client sends it as
    X-Etax-Password, must match too. PROTOCOL.md does not carry it, so the account alone is enough.
    """
    company = _company(_tax_id(body))
    account = body.get("dlzh")
    account = account.strip() if isinstance(account, str) else ""
    if not account:
        raise BureauError("14", "电子税局账号未配置：请求未提供 dlzh")
    if not company.get("rpa_account"):
        raise BureauError("14", f"纳税人 {company['tax_id']} 未配置电子税局账号")
    password = request.headers.get("X-Etax-Password")
    wrong_password = password is not None and bool(company.get("rpa_password")) and password != company["rpa_password"]
    if account != company["rpa_account"] or wrong_password:
        raise BureauError("14", "电子税局账号或密码错误，登录失败")
    return company


def _create_task(body: dict) -> dict:
    """Validate, log in (account check), record the task."""
    if body.get("kind") != "invoices":
        raise BureauError("10", "参数错误：kind 仅支持 invoices")
    today = _today()
    first, last = _date_range(body, today)
    if (last - first).days >= MAX_TASK_DAYS:
        raise BureauError("10", f"参数错误：开票日期跨度不能超过 {MAX_TASK_DAYS} 天")
    kinds = body.get("fplx")
    if not isinstance(kinds, list) or not kinds:
        raise BureauError("10", "参数错误：fplx 应为非空的发票类型列表")
    kinds = list(dict.fromkeys(_kind(kind) for kind in kinds))
    company = _rpa_company(body)
    task_id = uuid.uuid4().hex
    _state().create_task(task_id, company["tax_id"], first, last, kinds, today, g.settings["processing_polls"])
    return {"task_id": task_id}


def _task_status(task_id: str) -> dict:
    """Count a poll; report running until the task's polls are used up."""
    task = _state().poll_task(task_id)
    if task is None:
        raise BureauError("15", f"任务不存在或已过期：{task_id}")
    if task["polls"] <= task["ready_after"]:
        return {"status": "running", "pages": None, "total": None, "error": None}
    invoices = _task_invoices(task)
    return {"status": "done", "pages": math.ceil(len(invoices) / PACKAGE_SIZE), "total": len(invoices), "error": None}


def _task_page(task_id: str, number: int) -> dict:
    """A page of a done task; asking before it is done is 处理中."""
    task = _state().task(task_id)
    if task is None:
        raise BureauError("15", f"任务不存在或已过期：{task_id}")
    if task["polls"] <= task["ready_after"]:
        raise BureauError("01", "任务执行中，请稍后再查询")
    fpxx, count = _page(_task_invoices(task), number, "页码")
    return {"page": number, "pages": count, "fpxx": fpxx}


def _task_invoices(task: dict) -> list[dict]:
    """Everything the robot found: all kinds asked for, no 乐企 authorisation cut-off."""
    return _invoices(_company(task["tax_id"]), date.fromisoformat(task["kprqq"]),
                     date.fromisoformat(task["kprqz"]), task["fplx"], date.fromisoformat(task["applied_on"]))


def _rpa_usage(body: dict) -> dict:
    """Log in, then answer like FPZTXXCX but in the e-tax 入账 code set."""
    return _usage_answers("rpa", "usage", _rpa_company(body), body)


# ------------------------------------------------------------------------------------------
# Control API (not part of any real bureau)
# ------------------------------------------------------------------------------------------

control = Blueprint("control", __name__, url_prefix="/sandbox")


def _bad_request(message: str):
    """Control API errors are plain HTTP 400s: callers are tests and people, not channel clients."""
    return jsonify({"error": message}), 400


@control.get("/stats")
def stats():
    """Request counters (per service, tax ID, code), usage items asked (red ones apart), quota log."""
    return jsonify(_state().stats())


@control.get("/control")
def get_settings():
    """The effective control settings."""
    return jsonify({"settings": _state().settings(), "today": _state().today().isoformat()})


def _apply_json(apply, answer):
    """A control call: a JSON object body handed to `apply`; bad input is a 400 saying why."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _bad_request("body must be a JSON object")
    try:
        result = apply(body)
    except (TypeError, ValueError) as bad:
        return _bad_request(str(bad))
    return jsonify(answer(result))


@control.post("/control")
def set_settings():
    """Set latency_ms, fail_rate, fail_services, processing_polls, today, lowercase_ids (null clears one)."""
    return _apply_json(_state().update_settings,
                       lambda settings: {"settings": settings, "today": _state().today().isoformat()})


@control.get("/companies")
def list_companies():
    """Every registered sandbox company."""
    return jsonify({"companies": _state().companies()})


@control.post("/companies")
def save_company():
    """Register or update a company: tax_id, name, leqi_enabled, leqi_since, rpa_account,
    rpa_password, volume (profile name or {type: monthly count}), industry."""
    return _apply_json(_state().save_company, lambda company: {"company": company})


@control.post("/reset")
def reset():
    """Clear counters, applications, tasks and the quota log; keep companies ({"settings": true}
    also clears the control overrides)."""
    body = request.get_json(silent=True) or {}
    _state().reset(settings=bool(isinstance(body, dict) and body.get("settings")))
    return jsonify({"reset": True})
