"""The 乐企 and RPA channel clients: payload conversion, the envelope, retries, and end-to-end
downloads against the sandbox tax bureau (in-process through httpx.WSGITransport, and over real
HTTP). httpx.MockTransport is used only for envelope cases the sandbox cannot produce."""
from __future__ import annotations

import copy
import gc
import json
from datetime import date, datetime
from decimal import Decimal

import httpx
import pytest

from channels.http import ApiClient, ChannelRejected, Pending, chunked, with_retries
from channels.leqi import LeqiClient
from channels.payload import (
    staged_invoice,
    usage_from_answers,
    usage_from_payload,
)
from channels.records import HEADER_COLUMNS, LINE_COLUMNS, SourceRejected, TransientError, UsageQuery
from channels.rpa import RpaClient
from tests.records_support import (
    invoice_from_payload,
    leqi_download,
    leqi_fetch,
    records_from_payloads,
    rpa_download,
    stage,
)

DEMO_TAX_ID = "91330100MA2H4K7Q1X"

DIGITAL = {
    "fpdm": "", "fphm": "", "sdfphm": "24332000000012345678",
    "xfsh": DEMO_TAX_ID, "xfmc": "杭州演示科技有限公司", "gfsh": "91330100MA27XXXX1A",
    "gfmc": "浙江购方贸易有限公司", "kprq": "2024-01-05 10:11:12",
    "je": "1000.00", "se": "130.00", "jshj": "1130.00",
    "fply": "电子发票服务平台", "fplx": "81", "fppz": "数电票(增值税专用发票)",
    "fpzt": "已红冲-部分", "sfzs": "Y", "fxdj": "正常", "kpr": "张三", "bz": "合同 A-17\n/n 第二行",
    "yfpkey": "",
    "mx": [
        {"xh": 1, "spmc": "*蔬菜*鲜蔬菜", "ssbm": "1010112000000000000", "tdyw": "", "ggxh": "500g",
         "dw": "千克", "sl": "300884.955752212389381", "dj": "0.00332353", "je": "1000.00", "slv": "13%",
         "se": "130.00", "jshj": "1130.00", "hxz": "2"},
        {"xh": 2, "spmc": "*蔬菜*鲜蔬菜", "ssbm": "1010112000000000000", "tdyw": "", "ggxh": "", "dw": "",
         "sl": "", "dj": "", "je": "-100.00", "slv": "13%", "se": "-13.00", "jshj": "-113.00", "hxz": "1"},
        {"xh": 3, "spmc": "*信息技术服务*软件服务", "ssbm": "3040201000000000000", "tdyw": "建筑服务发票",
         "ggxh": "", "dw": "", "sl": "1", "dj": "100.00", "je": "100.00", "slv": "免税", "se": "0.00",
         "jshj": "100.00", "hxz": "0"},
    ],
}

LEGACY_RED = {
    "fpdm": "032371908644", "fphm": "00948791", "sdfphm": "",
    "xfsh": DEMO_TAX_ID, "xfmc": "杭州演示科技有限公司", "gfsh": "", "gfmc": "李四",
    "kprq": "2023-11-30 23:59:59", "je": "-50.00", "se": "-6.50", "jshj": "-56.50",
    "fply": "增值税发票管理系统", "fplx": "04", "fppz": "增值税普通发票", "fpzt": "正常", "sfzs": "N",
    "fxdj": "正常", "kpr": "", "bz": "对应正数发票代码:032371908644 号码:00948700 退货",
    "yfpkey": "",
    "mx": [{"xh": 1, "spmc": "*家具*椅子", "ssbm": "", "tdyw": "", "ggxh": "", "dw": "把", "sl": "-1",
            "dj": "50.00", "je": "-50.00", "slv": "13%", "se": "-6.50", "jshj": "-56.50", "hxz": "0"}],
}


def payload(base: dict, **changes) -> dict:
    """A deep copy of a fixture payload with some top-level fields changed."""
    result = copy.deepcopy(base)
    result.update(changes)
    return result


# ---------------------------------------------------------------------------------------------
# Payload → InvoiceRecord
# ---------------------------------------------------------------------------------------------


def test_digital_invoice_every_header_field():
    record = invoice_from_payload(DIGITAL)
    assert record.key == record.digital_number == "24332000000012345678"
    assert record.code is None and record.number is None
    assert (record.seller_tax_id, record.seller_name) == (DEMO_TAX_ID, "杭州演示科技有限公司")
    assert (record.buyer_tax_id, record.buyer_name) == ("91330100MA27XXXX1A", "浙江购方贸易有限公司")
    assert record.issued_at == datetime(2024, 1, 5, 10, 11, 12) and record.month == "2024-01"
    assert (record.amount, record.tax, record.total) == (
        Decimal("1000.00"), Decimal("130.00"), Decimal("1130.00"))
    assert isinstance(record.amount, Decimal)
    assert record.origin == "电子发票服务平台"
    assert record.type_name == "数电发票（增值税专用发票）" and record.type_code == "81"
    assert record.status == "已红冲-部分" and record.is_red is False and record.red_of is None
    assert (record.risk_level, record.issuer) == ("正常", "张三")
    assert record.remark == "合同 A-17\n/n 第二行"


def test_digital_invoice_every_line_field():
    first, discount, exempt = invoice_from_payload(DIGITAL).lines
    assert (first.line_no, first.name, first.tax_code) == (1, "*蔬菜*鲜蔬菜", "1010112000000000000")
    assert (first.special_type, first.spec, first.unit) == (None, "500g", "千克")
    assert first.quantity == Decimal("300884.955752212389381")  # every digit kept
    assert str(first.unit_price) == "0.00332353"
    assert (first.amount, first.tax_rate, first.tax, first.total) == (
        Decimal("1000.00"), "13%", Decimal("130.00"), Decimal("1130.00"))
    assert first.is_discount is False  # hxz 2 is the discounted line, not the discount
    assert discount.is_discount is True and discount.amount == Decimal("-100.00")
    assert discount.quantity is None and discount.unit_price is None and discount.spec is None
    assert exempt.tax_rate == "免税" and exempt.special_type == "建筑服务发票" and exempt.is_discount is False


@pytest.mark.parametrize("field, sent, kept", [
    ("je", "1000.00", "1000.00"), ("je", "1.5", "1.50"), ("je", " 2.00", "2.00"), ("je", "1,234.50", "1234.50"),
    ("je", "-0.00", "-0.00"), ("je", "2.675", "2.68"), ("jshj", "", None), ("jshj", "--", None),
    ("sl", "300884.955752212389381", "300884.955752212389381"), ("sl", "1E+3", "1E+3"), ("sl", "0.0000001", "1E-7"),
    ("sl", "00.5", "0.5"), ("sl", " 2", "2"), ("sl", "", None), ("slv", " 13% ", "13%"), ("slv", "0.13", "13%"),
    ("kprq", "2024/1/5", "2024-01-05 00:00:00.000000"),
    ("kprq", "2024-01-05T10:11:12+08:00", "2024-01-05 10:11:12.000000"),
])
def test_staged_rows_hold_what_the_export_rules_make_of_each_value(field, sent, kept):
    """The download writes the wire's text as the file import's rules would (the same Decimal
    printed back, the same timestamp), whether the value was already canonical or not."""
    if field in ("sl", "slv"):
        changed = payload(DIGITAL, mx=[{**DIGITAL["mx"][0], field: sent}])
    else:
        changed = payload(DIGITAL, **{field: sent})
    header, [line, *_] = staged_invoice(changed)
    row, columns = (line, LINE_COLUMNS) if field in ("sl", "slv") else (header, HEADER_COLUMNS)
    column = {"je": "amount", "jshj": "total", "sl": "quantity", "slv": "tax_rate", "kprq": "issued_at"}[field]
    assert row[columns.index(column)] == kept
    assert stage([invoice_from_payload(changed)]) == [staged_invoice(changed)]


def test_records_are_the_staged_rows_read_back():
    for sent in (DIGITAL, LEGACY_RED):
        assert stage([invoice_from_payload(sent)]) == [staged_invoice(sent)]
        assert list(records_from_payloads([sent], DEMO_TAX_ID, "RPA")) == [invoice_from_payload(sent)]


def test_legacy_red_invoice_links_to_its_blue_from_the_remark():
    record = invoice_from_payload(LEGACY_RED)
    assert record.key == "032371908644-00948791"
    assert (record.code, record.number, record.digital_number) == ("032371908644", "00948791", None)
    assert record.is_red is True and record.buyer_tax_id is None and record.issuer is None
    assert record.red_of == "032371908644-00948700"
    assert record.amount == Decimal("-50.00") and record.lines[0].quantity == Decimal("-1")


@pytest.mark.parametrize("remark, blue", [
    ("被红冲蓝字数电发票号码：24332000000012340000 红字发票信息确认单编号：24330000000000000001",
     "24332000000012340000"),
    ("被红冲蓝字数电票号码:24332000000012340001 收款人:王五", "24332000000012340001"),
    ("被红冲蓝字发票号码：00948700 被红冲蓝字发票代码：032371908644 红字发票信息确认单编号：1",
     "032371908644-00948700"),
    ("对应正数发票代码:032371908644号码:00948700", "032371908644-00948700"),
])
def test_red_link_from_each_remark_wording(remark, blue):
    assert invoice_from_payload(payload(LEGACY_RED, bz=remark)).red_of == blue


def test_red_link_from_yfpkey_wins_over_the_remark():
    red = payload(LEGACY_RED, yfpkey="24332000000099999999")
    assert invoice_from_payload(red).red_of == "24332000000099999999"
    assert invoice_from_payload(payload(LEGACY_RED, yfpkey="", bz="")).red_of is None


def test_blue_invoice_never_carries_a_red_link():
    blue = payload(DIGITAL, yfpkey="24332000000099999999", bz="对应正数发票代码:032371908644号码:00948700")
    assert invoice_from_payload(blue).red_of is None


def test_paper_digital_invoice_keys_on_the_digital_number():
    paper = payload(DIGITAL, fpdm="144031900111", fphm="12345678", fplx="86", fppz="数电纸质发票(普通发票)")
    record = invoice_from_payload(paper)
    assert record.key == "24332000000012345678"
    assert (record.code, record.number) == ("144031900111", "12345678")
    assert record.type_name == "数电纸质发票（普通发票）"


def test_type_name_falls_back_to_the_type_code():
    assert invoice_from_payload(payload(DIGITAL, fppz="")).type_name == "数电发票（增值税专用发票）"


def test_missing_mx_means_no_lines_and_missing_xh_means_position():
    assert invoice_from_payload(payload(DIGITAL, mx=[])).lines == []
    lines = copy.deepcopy(DIGITAL["mx"])
    for line in lines:
        del line["xh"]
    assert [line.line_no for line in invoice_from_payload(payload(DIGITAL, mx=lines)).lines] == [1, 2, 3]


def bad_line(**changes) -> list:
    """DIGITAL's lines with the second one changed."""
    lines = copy.deepcopy(DIGITAL["mx"])
    lines[1].update(changes)
    return lines


@pytest.mark.parametrize("changes, expected", [
    ({"je": 1000.0}, "“金额”应为金额字符串"),
    ({"je": "一千"}, "“金额”不是数字：一千"),
    ({"se": None}, "“税额”缺失"),
    ({"jshj": 1130}, "“价税合计”应为金额字符串"),
    ({"kprq": "2024-13-45"}, "“开票日期”不是日期"),
    ({"kprq": ""}, "“开票日期”为空"),
    ({"xfsh": ""}, "“销方识别号”为空"),
    ({"sfzs": "是"}, "“是否正数发票”应为 Y 或 N"),
    ({"fppz": "", "fplx": ""}, "“发票票种”为空"),
    ({"mx": "none"}, "“明细”应为列表"),
    ({"mx": bad_line(sl="2.5kg")}, "“第 2 行明细的数量”不是数字：2.5kg"),
    ({"mx": bad_line(je=None)}, "“第 2 行明细的金额”缺失"),
    ({"mx": bad_line(xh="二")}, "“第 2 行明细的序号”不是整数"),
    ({"mx": bad_line(slv=0.13)}, "“第 2 行明细的税率”应为字符串"),
])
def test_bad_payload_is_rejected_naming_the_invoice(changes, expected):
    with pytest.raises(SourceRejected) as caught:
        invoice_from_payload(payload(DIGITAL, **changes))
    message = str(caught.value)
    assert "24332000000012345678" in message and expected in message


def test_payload_without_any_number_or_not_an_object_is_rejected():
    with pytest.raises(SourceRejected, match="无号码.*缺少号码"):
        invoice_from_payload(payload(DIGITAL, sdfphm=""))
    with pytest.raises(SourceRejected, match="032371908644-00948791"):
        invoice_from_payload(payload(LEGACY_RED, je="x"))
    with pytest.raises(SourceRejected, match="应为对象"):
        invoice_from_payload(["not", "an", "invoice"])


def test_records_refuse_another_sellers_invoice_and_prefix_the_channel():
    foreign = payload(DIGITAL, xfsh="91110000000000000X")
    with pytest.raises(SourceRejected, match="^乐企：.*销方税号 91110000000000000X 与所查询企业"):
        list(records_from_payloads([DIGITAL, foreign], DEMO_TAX_ID, "乐企"))
    with pytest.raises(SourceRejected, match="^RPA：税局返回的发票 24332000000012345678 数据有误"):
        list(records_from_payloads([payload(DIGITAL, je="")], DEMO_TAX_ID, "RPA"))
    with pytest.raises(SourceRejected, match="fpxx 应为列表"):
        list(records_from_payloads(None, DEMO_TAX_ID, "RPA"))


def test_usage_payloads_known_and_unknown():
    known = usage_from_payload({"fphm": "1", "fpdm": "", "fpyt": "1", "xfsyt": "00", "rzzt": "02",
                                "fpzt": "0", "hzsdbs": "Y"}, "K1")
    assert (known.key, known.vat_usage, known.excise_usage, known.entry_status) == ("K1", "1", "00", "02")
    assert known.invoice_status == "0" and known.red_lock is True
    unknown = usage_from_payload({"fphm": "2", "fpyt": None, "msg": "未查询到该发票"}, "K2")
    assert (unknown.vat_usage, unknown.excise_usage, unknown.entry_status, unknown.red_lock) == (
        None, None, None, None)
    assert usage_from_payload({"fpyt": 0, "hzsdbs": "N"}, "K3").vat_usage == "0"
    assert usage_from_payload({"hzsdbs": "N"}, "K3").red_lock is False


def test_usage_answers_must_match_the_queries():
    queries = [UsageQuery("A", "81", None, "24332000000000000001", "20240105"),
               UsageQuery("B", "04", "032371908644", "00948791", "20240106")]
    answers = [{"fphm": "24332000000000000001", "fpyt": "0"}, {"fphm": "00948791", "fpyt": "1"}]
    assert [s.key for s in usage_from_answers(answers, queries, "乐企")] == ["A", "B"]
    with pytest.raises(SourceRejected, match="查询 2 张发票的用途状态，返回了 1 条"):
        usage_from_answers(answers[:1], queries, "乐企")
    with pytest.raises(SourceRejected, match="顺序错乱"):
        usage_from_answers(answers[::-1], queries, "乐企")
    with pytest.raises(SourceRejected, match="^RPA：税局返回的发票 B 用途状态格式错误：unknown$") as caught:
        usage_from_answers([answers[0], "unknown"], queries, "RPA")
    assert (caught.value.reason, caught.value.params) == ("channel_bad_answer", {"channel": "RPA"})


def test_chunked():
    assert list(chunked(range(5), 2)) == [[0, 1], [2, 3], [4]]
    assert list(chunked([], 100)) == []


# ---------------------------------------------------------------------------------------------
# The envelope (httpx.MockTransport: the HTTP layer's own test double)
# ---------------------------------------------------------------------------------------------


def mock_client(handler, cls=LeqiClient, **kwargs) -> ApiClient:
    """A real client whose transport answers with `handler`; no sleeping between retries."""
    kwargs.setdefault("sleep", lambda seconds: None)
    kwargs["transport"] = httpx.MockTransport(handler)
    if cls is LeqiClient:
        return LeqiClient("http://leqi.test", "app-1", "secret-1", **kwargs)
    return RpaClient("http://rpa.test", "key-1", **kwargs)


def envelope(code: str, msg: str = "", data: object = None, status: int = 200) -> httpx.Response:
    """A PROTOCOL.md envelope as the transport would deliver it."""
    return httpx.Response(status, json={"code": code, "msg": msg, "data": data})


def test_success_returns_data_and_sends_the_leqi_headers_and_path():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return envelope("00", "成功", {"lsh": "L" * 32})

    client = mock_client(handler)
    assert client.apply(DEMO_TAX_ID, date(2024, 1, 1), date(2024, 1, 31), "81") == "L" * 32
    (request,) = seen
    assert request.method == "POST" and request.url.path == "/access/v2/invoke/203067/PLFPXZSQ/"
    assert request.headers["fwbm"] == "PLFPXZSQ"
    assert (request.headers["X-App-Id"], request.headers["X-App-Secret"]) == ("app-1", "secret-1")
    assert json.loads(request.content) == {"nsrsbh": DEMO_TAX_ID, "kprqq": "20240101", "kprqz": "20240131",
                                           "fplx": "81", "sjlx": "2"}


@pytest.mark.parametrize("code, msg", [
    ("10", "参数错误：kprqq"), ("11", "非沙箱税号"), ("12", "未开通乐企归集能力"),
    ("13", "同一开票月份同一发票类型每天只能申请 1 次"), ("14", "电子税局账号或密码错误"),
    ("15", "流水号不存在或已过期"), ("99", "未知错误"),
])
def test_permanent_codes_become_source_rejected_with_the_message(code, msg):
    client = mock_client(lambda request: envelope(code, msg))
    with pytest.raises(SourceRejected) as caught:
        client.call("GET", "/x")
    assert str(caught.value) == f"乐企：{msg}"
    assert isinstance(caught.value, ChannelRejected) and caught.value.code == code


@pytest.mark.parametrize("response, error, text", [
    (envelope("01", "处理中"), Pending, "乐企：处理中"),
    (envelope("20", "系统繁忙"), TransientError, "乐企：系统繁忙"),
    (envelope("20"), TransientError, "乐企：系统繁忙"),
    (httpx.Response(500, text="boom"), TransientError, "HTTP 500"),
    (httpx.Response(503), TransientError, "HTTP 503"),
    (httpx.Response(429), TransientError, "HTTP 429"),
])
def test_transient_answers(response, error, text):
    with pytest.raises(error, match=text):
        mock_client(lambda request: response).call("GET", "/x")


@pytest.mark.parametrize("exc, text", [
    (httpx.ReadTimeout("slow"), "请求超时"), (httpx.ConnectTimeout("slow"), "请求超时"),
    (httpx.ConnectError("refused"), "无法连接"), (httpx.RemoteProtocolError("eof"), "无法连接"),
])
def test_network_errors_are_transient(exc, text):
    def handler(request):
        raise exc

    with pytest.raises(TransientError, match=text):
        mock_client(handler).call("GET", "/x")


@pytest.mark.parametrize("response, text", [
    (httpx.Response(404, text="not found"), "HTTP 404"),
    (httpx.Response(401), "HTTP 401"),
    (httpx.Response(200, text="<html>网关</html>"), "不是有效的 JSON"),
    (httpx.Response(200, json=["00"]), "缺少 code"),
    (envelope("00", "成功", ["not", "an", "object"]), "data 应为对象"),
    (envelope("00", "成功", None), "data 应为对象"),
])
def test_answers_outside_the_contract_are_rejected(response, text):
    with pytest.raises(SourceRejected, match=text):
        mock_client(lambda request: response, cls=RpaClient).call("GET", "/x")


@pytest.mark.parametrize("body", [
    '{"code": "00", "msg": "成功", "data": {"n": 1}}'.encode("utf-16"),  # another Unicode encoding
    b'{"code": "00", "msg": "ok", "data": {"n": NaN}}',  # not JSON, yet Python's reader takes it
])
def test_envelopes_the_fast_reader_refuses_are_read_as_before(body):
    data = mock_client(lambda request: httpx.Response(200, content=body), cls=RpaClient).call("GET", "/x")
    assert set(data) == {"n"}


def test_failed_rpa_task_and_bad_counts_are_refused():
    """The sandbox never fails a task nor miscounts, so these answers are staged."""
    def rpa_handler(request):
        if request.method == "POST":
            return envelope("00", "成功", {"task_id": "T1"})
        return envelope("00", "成功", {"status": "failed", "pages": None, "total": None, "error": "验证码识别失败"})

    client = mock_client(rpa_handler, cls=RpaClient)
    with pytest.raises(SourceRejected, match="^RPA：任务执行失败：验证码识别失败$"):
        list(rpa_download(client, DEMO_TAX_ID, DEMO_ACCOUNT, *JANUARY, "81"))
    leqi = mock_client(lambda request: envelope("00", "成功", {"packagecount": "3", "fpxx": []}))
    with pytest.raises(SourceRejected, match="packagecount='3'"):
        list(leqi_fetch(leqi, "L1"))


def test_unusable_base_url_is_a_configuration_error_not_transient():
    client = LeqiClient("sandbox", "a", "b")
    with pytest.raises(SourceRejected, match="通道地址配置错误"):
        client.call("POST", "/x")


def _raise(exc):
    """A transport handler that fails as the network would."""
    def handler(request):
        raise exc
    return handler


@pytest.mark.parametrize("handler, cls, code, shown", [
    (lambda request: httpx.Response(503), LeqiClient, "channel_unavailable",
     "乐企服务暂时不可用（已自动重试 3 次），请稍后点击“重试”"),
    (lambda request: envelope("20", "系统繁忙"), RpaClient, "channel_unavailable",
     "RPA服务暂时不可用（已自动重试 3 次），请稍后点击“重试”"),
    (_raise(httpx.ReadTimeout("slow")), RpaClient, "channel_timeout",
     "连接RPA超时（已自动重试 3 次），请稍后点击“重试”"),
    (_raise(httpx.ConnectError("refused")), LeqiClient, "channel_unreachable",
     "无法连接乐企服务（已自动重试 3 次），请稍后重试；若一直如此，请联系管理员检查网络"),
    (lambda request: envelope("01", "处理中"), LeqiClient, "channel_pending",
     "乐企仍未处理完成（已自动重试 3 次），请稍后点击“重试”"),
    (lambda request: httpx.Response(401), LeqiClient, "login_failed",
     "乐企拒绝了请求，请管理员在“系统管理 → 企业信息”中检查通道地址和凭证"),
    (lambda request: httpx.Response(200, text="<html>网关</html>"), RpaClient, "channel_bad_answer",
     "RPA返回的数据无法识别，请联系管理员检查通道配置"),
    (lambda request: envelope("00", "成功", None), LeqiClient, "channel_bad_answer",
     "乐企返回的数据无法识别，请联系管理员检查通道配置"),
    (lambda request: envelope("12", "未开通乐企归集能力"), LeqiClient, "channel_refused",
     "乐企拒绝了请求：未开通乐企归集能力"),
    (lambda request: envelope("99"), LeqiClient, "channel_refused", "乐企拒绝了请求：请联系管理员"),
])
def test_each_channel_failure_carries_its_reason_code_and_the_screen_reads_the_code(handler, cls, code, shown):
    """The reason is set where the failure is raised (docs/rules.md, 失败与等待原因): what a user reads
    is the code's sentence, the technical message kept whole for 详情."""
    from webapp.batches import raised_values
    from webapp.batches.facts import reason_text

    client = mock_client(handler, cls=cls, attempts=3)
    with pytest.raises((SourceRejected, TransientError)) as caught:
        client.retrying(lambda: client.call("GET", "/x"))
    stored = raised_values(caught.value)
    assert stored["error_code"] == code and stored["error"] == str(caught.value)
    assert reason_text(stored["error_code"], stored["error_params"], stored["error"]) == (shown, str(caught.value))


def test_every_code_the_channels_raise_has_its_sentence():
    """channels/reasons.py names the codes the channels set; each is a Reason with a label."""
    import channels.reasons
    from webapp.statuses import Reason

    codes = {value for name, value in vars(channels.reasons).items() if name.isupper()}
    assert codes and codes <= set(Reason.codes())


# ---------------------------------------------------------------------------------------------
# Retries
# ---------------------------------------------------------------------------------------------


class Flaky:
    """Fails with `error` the first `failures` times, then returns 'ok'; counts calls."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


def test_retries_back_off_exponentially_until_success():
    slept: list[float] = []
    fn = Flaky(3, TransientError("乐企：系统繁忙"))
    assert with_retries(fn, attempts=6, backoff=0.5, sleep=slept.append) == "ok"
    assert fn.calls == 4 and slept == [0.5, 1.0, 2.0]


def test_retries_give_up_after_the_last_attempt_saying_the_service_stayed_unavailable():
    slept: list[float] = []
    fn = Flaky(99, TransientError("乐企：系统繁忙"))
    with pytest.raises(TransientError) as caught:
        with_retries(fn, attempts=3, backoff=1, sleep=slept.append)
    assert fn.calls == 3 and slept == [1, 2]
    assert str(caught.value) == "乐企：系统繁忙（已尝试 3 次，服务仍不可用，请稍后重试）"
    assert not isinstance(caught.value, Pending)


def test_pending_stays_pending_after_the_last_poll_and_waits_are_capped():
    slept: list[float] = []
    with pytest.raises(Pending, match="已查询 4 次仍未处理完成"):
        with_retries(Flaky(99, Pending("乐企：处理中")), attempts=4, backoff=10, sleep=slept.append,
                     max_delay=25)
    assert slept == [10, 20, 25]


def test_refusals_are_never_retried():
    fn = Flaky(1, SourceRejected("乐企：未开通乐企归集能力"))
    with pytest.raises(SourceRejected):
        with_retries(fn, attempts=6, backoff=0.5, sleep=lambda s: None)
    assert fn.calls == 1


def test_client_calls_retry_through_the_transport():
    answers = iter([httpx.Response(502), envelope("20", "系统繁忙"),
                    envelope("00", "成功", {"fpxx": [{"fphm": "00948791", "fpyt": "1"}]})])
    client = mock_client(lambda request: next(answers))
    query = UsageQuery("K", "04", "032371908644", "00948791", "20231130")
    assert client.query_usage(DEMO_TAX_ID, [query])[0].vat_usage == "1"


def test_leqi_apply_is_one_attempt_even_when_busy():
    calls = []

    def handler(request):
        calls.append(request.url.path)
        return envelope("20", "系统繁忙")

    with pytest.raises(TransientError, match="^乐企：系统繁忙$"):
        mock_client(handler).apply(DEMO_TAX_ID, date(2024, 1, 1), date(2024, 1, 31), "81")
    assert calls == ["/access/v2/invoke/203067/PLFPXZSQ/"]


def test_leqi_apply_refuses_ranges_across_months():
    client = mock_client(lambda request: envelope("00", "成功", {"lsh": "x"}))
    with pytest.raises(ValueError):
        client.apply(DEMO_TAX_ID, date(2024, 1, 1), date(2024, 2, 1), "81")


def test_rpa_without_account_is_refused_before_any_request():
    client = mock_client(lambda request: pytest.fail("no request expected"), cls=RpaClient)
    for account in (None, "", "  "):
        with pytest.raises(SourceRejected, match="^未配置默认电子税局账号"):
            rpa_download(client, DEMO_TAX_ID, account, date(2024, 1, 1), date(2024, 1, 31), ["81"])
        with pytest.raises(SourceRejected, match="^未配置默认电子税局账号"):
            client.query_usage(DEMO_TAX_ID, account, [])


# ---------------------------------------------------------------------------------------------
# End to end against the sandbox tax bureau
# ---------------------------------------------------------------------------------------------

KINDS = ["10", "08", "04", "01", "82", "81"]
JANUARY = (date(2024, 1, 1), date(2024, 1, 31))
DEMO_ACCOUNT = "91330100MA2H4K7Q1X-etax"
NO_LEQI_TAX_ID = "91110105MA0SANDB02"  # a default sandbox company without 乐企归集能力
ANY_QUERY = UsageQuery("K", "81", None, "2" * 20, "20240105")
ERROR_GOODS = {"(详见销货清单)", "原价合计", "折扣额合计", "详见对应正数发票及清单"}


class Bureau:
    """One sandbox tax bureau (its own SQLite file) and clients talking to it.

    `base_url` None means in-process through httpx.WSGITransport; otherwise real HTTP. Sleeps
    between retries are recorded instead of waited.
    """

    def __init__(self, app, base_url: str | None = None) -> None:
        self.app, self.base_url = app, base_url
        self.slept: list[float] = []
        self.control_client = httpx.Client(**self._endpoint())
        self.control(today="2024-06-15")  # January 2024 is a past invoicing month

    def _endpoint(self) -> dict:
        """httpx.Client arguments reaching this bureau."""
        if self.base_url:
            return {"base_url": self.base_url}
        return {"base_url": "http://sandbox", "transport": httpx.WSGITransport(app=self.app)}

    def control(self, **settings) -> dict:
        """POST /sandbox/control; returns the effective settings."""
        response = self.control_client.post("/sandbox/control", json=settings)
        assert response.status_code == 200, response.text
        return response.json()["settings"]

    def stats(self) -> dict:
        """GET /sandbox/stats."""
        return self.control_client.get("/sandbox/stats").json()

    def requests(self, service: str) -> dict[str, int]:
        """Requests per answer code for one service, e.g. 'leqi.PLFPXZSQ'."""
        return self.stats()["requests"]["by_service_code"].get(service, {})

    def leqi(self, **kwargs) -> LeqiClient:
        """A 乐企 client for this bureau."""
        endpoint = self._endpoint()
        return LeqiClient(endpoint["base_url"], "sandbox-app", "sandbox-secret",
                          transport=endpoint.get("transport"), sleep=self.slept.append, **kwargs)

    def rpa(self, **kwargs) -> RpaClient:
        """An RPA client for this bureau."""
        endpoint = self._endpoint()
        return RpaClient(endpoint["base_url"], "sandbox-key", transport=endpoint.get("transport"),
                         sleep=self.slept.append, **kwargs)


@pytest.fixture
def sandbox_app(tmp_path):
    """A fresh sandbox bureau with its own state file (default companies seeded)."""
    from channels.sandbox import create_app

    return create_app({"SANDBOX_DB": str(tmp_path / "sandbox.db")})


@pytest.fixture
def bureau(sandbox_app):
    """The sandbox in-process, through httpx.WSGITransport."""
    return Bureau(sandbox_app)


@pytest.fixture
def live_bureau(sandbox_app):
    """The same sandbox served over real HTTP on a free loopback port."""
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, sandbox_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Bureau(sandbox_app, f"http://127.0.0.1:{server.server_port}")
    server.shutdown()
    thread.join(10)


def leqi_month(client: LeqiClient, tax_id: str = DEMO_TAX_ID) -> list:
    """January 2024, every kind, one application per kind (the quota unit)."""
    return [record for kind in KINDS for record in leqi_download(client, tax_id, *JANUARY, kind)]


def assert_valid_january(records: list) -> None:
    """What the job layer relies on, invoice by invoice."""
    assert records
    for record in records:
        assert record.key == (record.digital_number or f"{record.code}-{record.number}")
        assert record.seller_tax_id == DEMO_TAX_ID and record.month == "2024-01"
        assert record.type_code in KINDS and record.type_name
        assert record.lines and record.origin in ("电子发票服务平台", "增值税发票管理系统")
        goods = [line for line in record.lines if line.name not in ERROR_GOODS]
        assert sum(line.amount for line in goods) == record.amount
        assert record.total == record.amount + record.tax
        if record.is_red:
            assert record.amount < 0 and record.red_of
        else:
            assert record.amount > 0 and record.red_of is None


def test_both_channels_download_the_same_month(bureau):
    leqi_records = leqi_month(bureau.leqi())
    rpa_records = list(rpa_download(bureau.rpa(), DEMO_TAX_ID, DEMO_ACCOUNT, *JANUARY, KINDS))
    assert len(leqi_records) == len(rpa_records) > 1000
    assert sorted(leqi_records, key=lambda r: r.key) == sorted(rpa_records, key=lambda r: r.key)
    assert len({r.key for r in leqi_records}) == len(leqi_records)
    assert_valid_january(rpa_records)
    assert any(r.is_red for r in rpa_records) and any(l.is_discount for r in rpa_records for l in r.lines)
    assert {r.type_code for r in rpa_records} == set(KINDS)
    assert bureau.requests("leqi.PLFPXZSQ") == {"00": 6}
    assert bureau.requests("leqi.PLFPXZSQFK")["01"] == 6  # each application was 处理中 once, polled again
    assert bureau.requests("rpa.task") == {"00": 2}  # running once, then done
    assert bureau.slept and all(seconds == 0.5 for seconds in bureau.slept)
    assert gc.isenabled()  # paused only while each page was read


def test_both_channels_over_real_http(live_bureau):
    leqi_records = list(leqi_download(live_bureau.leqi(), DEMO_TAX_ID, *JANUARY, "81"))
    rpa_records = list(rpa_download(live_bureau.rpa(), DEMO_TAX_ID, DEMO_ACCOUNT, *JANUARY, ["81"]))
    assert len(leqi_records) == len(rpa_records) > 500  # more than one 500-invoice package
    assert [r.key for r in leqi_records] == [r.key for r in rpa_records]
    assert_valid_january(leqi_records)
    assert live_bureau.requests("leqi.PLFPXZSQFK")["00"] == 2


def test_real_http_timeouts_and_refused_connections_are_transient(live_bureau):
    live_bureau.control(latency_ms=400)
    client = live_bureau.rpa(timeout=0.1, attempts=2)
    with pytest.raises(TransientError, match="^RPA：请求超时（已尝试 2 次，服务仍不可用"):
        client.query_usage(DEMO_TAX_ID, DEMO_ACCOUNT, [ANY_QUERY])
    live_bureau.control(latency_ms=0)
    closed = LeqiClient("http://127.0.0.1:9", "a", "b", attempts=2, sleep=lambda s: None)
    with pytest.raises(TransientError, match="^乐企：无法连接服务"):
        closed.query_usage(DEMO_TAX_ID, [ANY_QUERY])


def test_quota_refusal_surfaces_with_the_sandbox_message(bureau):
    client = bureau.leqi()
    assert client.apply(DEMO_TAX_ID, *JANUARY, "81")
    with pytest.raises(SourceRejected) as caught:
        leqi_download(client, DEMO_TAX_ID, *JANUARY, "81")  # refused at the call, before iterating
    assert caught.value.code == "13"
    assert str(caught.value) == ("乐企：下载次数超出限制：同一开票月份、同一发票类型的销项发票每天只能申请1次"
                                 "（开票月份 2024-01，发票类型 81）")
    assert bureau.requests("leqi.PLFPXZSQ") == {"00": 1, "13": 1}


def test_injected_failures_are_retried_and_downloads_complete(bureau):
    clean = len(list(rpa_download(bureau.rpa(), DEMO_TAX_ID, DEMO_ACCOUNT, *JANUARY, ["81", "04"])))
    bureau.control(fail_rate=0.4, fail_services=["leqi.PLFPXZSQFK", "leqi.FPZTXXCX", "rpa"])
    leqi, rpa = bureau.leqi(attempts=10), bureau.rpa(attempts=10)
    records = [r for kind in ("81", "04") for r in leqi_download(leqi, DEMO_TAX_ID, *JANUARY, kind)]
    assert len(records) == clean
    assert len(list(rpa_download(rpa, DEMO_TAX_ID, DEMO_ACCOUNT, *JANUARY, ["81", "04"]))) == clean
    blue = [usage_query(r) for r in records if not r.is_red][:150]
    assert len(leqi.query_usage(DEMO_TAX_ID, blue)) == 150
    assert len(rpa.query_usage(DEMO_TAX_ID, DEMO_ACCOUNT, blue)) == 150
    by_code = bureau.stats()["requests"]["by_code"]
    injected = by_code.get("20", 0) + by_code.get("http503", 0)
    assert injected >= 3  # each one was retried: every download above completed in full
    assert bureau.requests("leqi.PLFPXZSQ") == {"00": 2}


def test_apply_is_never_retried(bureau):
    bureau.control(fail_rate=1.0, fail_services=["PLFPXZSQ"])
    with pytest.raises(TransientError) as caught:
        leqi_download(bureau.leqi(attempts=6), DEMO_TAX_ID, *JANUARY, "81")
    assert "已尝试" not in str(caught.value)
    assert sum(bureau.requests("leqi.PLFPXZSQ").values()) == 1
    assert bureau.slept == [] and bureau.stats()["quota_log"] == []  # and no quota was spent


def test_still_processing_can_be_fetched_later_without_a_new_application(bureau):
    bureau.control(processing_polls=5)
    client = bureau.leqi(attempts=3)
    lsh = client.apply(DEMO_TAX_ID, *JANUARY, "01")
    with pytest.raises(Pending, match="已查询 3 次仍未处理完成"):
        list(leqi_fetch(client, lsh))
    assert bureau.slept == [0.5, 1.0]
    records = list(leqi_fetch(bureau.leqi(poll_attempts=10), lsh, DEMO_TAX_ID))
    assert records and {r.type_code for r in records} == {"01"}
    assert bureau.requests("leqi.PLFPXZSQ") == {"00": 1}
    assert bureau.requests("leqi.PLFPXZSQFK") == {"01": 5, "00": 1}


def test_leqi_returns_nothing_before_the_authorisation_date_where_rpa_does(bureau):
    small = "91440300MA5SANDB01"  # 乐企 authorised on 2024-03-15 (docs/rules.md, 乐企 authorisation)
    assert list(leqi_download(bureau.leqi(), small, *JANUARY, "82")) == []
    assert bureau.requests("leqi.PLFPXZSQFK") == {"01": 1, "00": 1}
    assert list(rpa_download(bureau.rpa(), small, f"{small}-etax", *JANUARY, ["82"]))


def test_rpa_polls_a_running_task(bureau):
    bureau.control(processing_polls=3)
    records = list(rpa_download(bureau.rpa(), DEMO_TAX_ID, DEMO_ACCOUNT, *JANUARY, ["01"]))
    assert records and bureau.requests("rpa.task") == {"00": 4}
    assert bureau.slept == [0.5, 1.0, 2.0]


@pytest.mark.parametrize("call, message", [
    (lambda b: leqi_download(b.leqi(), "91330100SANDBOX999", *JANUARY, "81"),
     "乐企：非沙箱税号：纳税人 91330100SANDBOX999 不存在"),
    (lambda b: leqi_download(b.leqi(), NO_LEQI_TAX_ID, *JANUARY, "81"),
     f"乐企：纳税人 {NO_LEQI_TAX_ID} 未开通乐企归集能力（203067）"),
    (lambda b: b.leqi().query_usage(NO_LEQI_TAX_ID, [ANY_QUERY]),
     f"乐企：纳税人 {NO_LEQI_TAX_ID} 未开通乐企归集能力（203067）"),
    (lambda b: list(leqi_fetch(b.leqi(), "0" * 32)), f"乐企：流水号不存在或已过期：{'0' * 32}"),
    (lambda b: rpa_download(b.rpa(), DEMO_TAX_ID, "someone-else", *JANUARY, KINDS),
     "RPA：电子税局账号或密码错误，登录失败"),
    (lambda b: b.rpa().query_usage(DEMO_TAX_ID, "someone-else", [ANY_QUERY]),
     "RPA：电子税局账号或密码错误，登录失败"),
    (lambda b: rpa_download(b.rpa(), "91330100SANDBOX999", "x", *JANUARY, KINDS),
     "RPA：非沙箱税号：纳税人 91330100SANDBOX999 不存在"),
])
def test_refusals_are_clear_and_not_retried(bureau, call, message):
    with pytest.raises(SourceRejected) as caught:
        call(bureau)
    assert str(caught.value) == message
    assert bureau.slept == [] and bureau.stats()["requests"]["total"] == 1


def usage_query(record) -> UsageQuery:
    """How the job layer asks about an invoice: 数电 by the 20-digit number, legacy by code and number."""
    issued_on = record.issued_at.strftime("%Y%m%d")
    if record.digital_number:
        return UsageQuery(record.key, record.type_code, None, record.digital_number, issued_on)
    return UsageQuery(record.key, record.type_code, record.code, record.number, issued_on)


def test_usage_in_chunks_of_100_in_each_channels_code_set(bureau):
    downloaded = rpa_download(bureau.rpa(), DEMO_TAX_ID, DEMO_ACCOUNT, *JANUARY, ["81", "04"])
    records = [r for r in downloaded if not r.is_red]
    queries = [usage_query(r) for r in records[:249]]
    queries.append(UsageQuery("unknown", "81", None, "2" * 20, "20240105"))
    leqi = bureau.leqi().query_usage(DEMO_TAX_ID, queries)
    rpa = bureau.rpa().query_usage(DEMO_TAX_ID, DEMO_ACCOUNT, queries)
    assert [s.key for s in leqi] == [s.key for s in rpa] == [q.key for q in queries]
    assert bureau.requests("leqi.FPZTXXCX") == {"00": 3} and bureau.requests("rpa.usage") == {"00": 3}
    assert (leqi[-1].vat_usage, leqi[-1].entry_status, rpa[-1].vat_usage) == (None, None, None)
    known = list(zip(leqi[:-1], rpa[:-1], strict=False))
    assert all(a.vat_usage is not None and a.vat_usage == b.vat_usage for a, b in known)
    assert {a.entry_status for a, _ in known} <= {"01", "02", "03"}
    assert {b.entry_status for _, b in known} <= {"01", "02", "03", "06"}
    assert "06" in {b.entry_status for _, b in known}  # the e-tax code set, not 乐企's
    assert all(isinstance(a.red_lock, bool) for a, _ in known)


def test_make_clients_uses_one_in_process_sandbox_by_default(tmp_path):
    from channels.clients import make_clients

    leqi, rpa = make_clients({"SANDBOX_DB": str(tmp_path / "sb.db"), "CHANNEL_BACKOFF": 0})
    assert str(leqi.http.base_url) == str(rpa.http.base_url) == "http://sandbox"
    assert leqi.http._transport is rpa.http._transport
    leqi.http.post("/sandbox/control", json={"today": "2024-06-15"})
    assert len(list(leqi_download(leqi, DEMO_TAX_ID, *JANUARY, "01"))) == len(
        list(rpa_download(rpa, DEMO_TAX_ID, DEMO_ACCOUNT, *JANUARY, ["01"])))


def test_make_clients_with_real_urls_and_credentials():
    from channels.clients import make_clients

    leqi, rpa = make_clients({
        "LEQI_BASE_URL": "https://leqi.example", "LEQI_APP_ID": "id", "LEQI_APP_SECRET": "s",
        "RPA_BASE_URL": "https://rpa.example", "RPA_API_KEY": "k", "CHANNEL_TIMEOUT": "7"})
    assert str(leqi.http.base_url) == "https://leqi.example"
    assert str(rpa.http.base_url) == "https://rpa.example"
    assert leqi.http.headers["X-App-Id"] == "id" and rpa.http.headers["X-Api-Key"] == "k"
    assert leqi.http.timeout.read == 7 and not isinstance(leqi.http._transport, httpx.WSGITransport)
    with pytest.raises(ValueError, match="SANDBOX_DB"):
        make_clients({})
