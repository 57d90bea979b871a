"""The sandbox tax bureau (channels/sandbox): its data, both channels, quotas, failures, control API.

Everything goes through HTTP: httpx's WSGI transport for speed, and a real werkzeug server on a
free port where it matters (concurrency, the wire itself). Each test has its own SQLite file.
"""
from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import date
from decimal import Decimal

import httpx
import pytest
from werkzeug.serving import make_server

from channels.sandbox import create_app, data

DEMO = "91330100MA2H4K7Q1X"
SHENZHEN = "91440300MA5SANDB01"
BEIJING = "91110105MA0SANDB02"
DEMO_ACCOUNT = "91330100MA2H4K7Q1X-etax"
ERROR_GOODS = {"(详见销货清单)", "原价合计", "折扣额合计"}


# ------------------------------------------------------------------------------------------
# Fixtures and helpers
# ------------------------------------------------------------------------------------------


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "sandbox.db")


def client_for(db_path: str, **config) -> httpx.Client:
    """A client on a fresh app instance over the shared SQLite file (WSGI, in-process)."""
    app = create_app({"SANDBOX_DB": db_path, **config})
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://sandbox")


@pytest.fixture
def client(db_path):
    with client_for(db_path) as c:
        yield c


@pytest.fixture
def live_url(db_path):
    """The sandbox on a real HTTP server (threaded) on a free port."""
    server = make_server("127.0.0.1", 0, create_app({"SANDBOX_DB": db_path}), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


def leqi(c: httpx.Client, fwbm: str, body: dict) -> dict:
    """One 乐企 call as the product's client makes it."""
    response = c.post(f"/access/v2/invoke/203067/{fwbm}/", json=body, headers={"fwbm": fwbm})
    assert response.status_code == 200, response.text
    return response.json()


def apply(c: httpx.Client, month: str, fplx: str = "81", tax_id: str = DEMO) -> dict:
    """PLFPXZSQ for a whole invoicing month."""
    y, m = int(month[:4]), int(month[5:])
    last = (date(y + m // 12, m % 12 + 1, 1) - date.resolution).day
    return leqi(c, "PLFPXZSQ", {"nsrsbh": tax_id, "kprqq": f"{y}{m:02d}01", "kprqz": f"{y}{m:02d}{last}",
                                "fplx": fplx, "sjlx": "2"})


def control(c: httpx.Client, **settings) -> dict:
    response = c.post("/sandbox/control", json=settings)
    assert response.status_code == 200, response.text
    return response.json()


def fetch_all(c: httpx.Client, lsh: str) -> tuple[list[dict], list[int]]:
    """Poll an application until ready, then every package; returns invoices and package sizes."""
    for _ in range(20):
        answer = leqi(c, "PLFPXZSQFK", {"lsh": lsh, "packageno": 1})
        if answer["code"] != "01":
            break
    assert answer["code"] == "00", answer
    invoices, sizes = list(answer["data"]["fpxx"]), [len(answer["data"]["fpxx"])]
    for n in range(2, answer["data"]["packagecount"] + 1):
        page = leqi(c, "PLFPXZSQFK", {"lsh": lsh, "packageno": n})
        assert page["code"] == "00" and page["data"]["packageno"] == n
        invoices += page["data"]["fpxx"]
        sizes.append(len(page["data"]["fpxx"]))
    return invoices, sizes


def rpa_task(c: httpx.Client, kprqq: str, kprqz: str, kinds: list[str], tax_id: str = DEMO,
             account: str = DEMO_ACCOUNT) -> dict:
    return c.post("/rpa/v1/tasks", json={"kind": "invoices", "nsrsbh": tax_id, "dlzh": account,
                                         "kprqq": kprqq, "kprqz": kprqz, "fplx": kinds}).json()


def rpa_fetch(c: httpx.Client, task_id: str) -> tuple[list[dict], dict]:
    """Poll a task until done, then read every page."""
    for _ in range(20):
        status = c.get(f"/rpa/v1/tasks/{task_id}").json()
        assert status["code"] == "00", status
        if status["data"]["status"] == "done":
            break
    invoices = []
    for n in range(1, status["data"]["pages"] + 1):
        page = c.get(f"/rpa/v1/tasks/{task_id}/pages/{n}").json()
        assert page["code"] == "00" and len(page["data"]["fpxx"]) <= 500
        invoices += page["data"]["fpxx"]
    return invoices, status["data"]


def year(tax_id: str, y: int = 2024) -> list[dict]:
    return [inv for m in range(1, 13) for kind in data.KINDS for inv in data.invoices_for(tax_id, f"{y}-{m:02d}", kind)]


def usage_item(inv: dict) -> dict:
    """A usage query entry for an invoice, as the product builds it."""
    return {"fplx": inv["fplx"], "fpdm": inv["fpdm"], "fphm": inv["sdfphm"] or inv["fphm"],
            "kprq": inv["kprq"][:10].replace("-", "")}


def clear_caches() -> None:
    data._month.cache_clear()
    data._plan.cache_clear()
    data._seller.cache_clear()


@pytest.fixture(scope="module")
def demo_2024():
    return year(DEMO)


# ------------------------------------------------------------------------------------------
# Synthetic data
# ------------------------------------------------------------------------------------------


def test_same_request_gives_the_same_invoices():
    first = json.dumps(data.invoices_for(DEMO, "2024-05", "82"), ensure_ascii=False)
    clear_caches()
    assert json.dumps(data.invoices_for(DEMO, "2024-05", "82"), ensure_ascii=False) == first


def test_same_invoices_in_another_process():
    """No salted hash() anywhere: a fresh interpreter generates byte-identical data."""
    code = ("import json,hashlib;from channels.sandbox import data;"
            f"print(hashlib.sha256(json.dumps(data.invoices_for('{DEMO}','2024-02','04'),ensure_ascii=False)"
            ".encode()).hexdigest())")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "12345", "PATH": ""}).stdout.strip()
    here = hashlib.sha256(json.dumps(data.invoices_for(DEMO, "2024-02", "04"), ensure_ascii=False).encode()).hexdigest()
    assert other == here


def test_a_month_does_not_depend_on_the_kinds_asked_with_it():
    clear_caches()
    alone = json.dumps(data.invoices_for(DEMO, "2024-07", "82"))
    clear_caches()
    for kind in ("81", "04", "10", "01", "08"):
        data.invoices_for(DEMO, "2024-07", kind)
        data.invoices_for(DEMO, "2024-08", kind)
    assert json.dumps(data.invoices_for(DEMO, "2024-07", "82")) == alone


def test_volumes_are_realistic(demo_2024):
    per_month = Counter(inv["kprq"][:7] for inv in demo_2024)
    assert 25_000 <= len(demo_2024) <= 45_000
    assert all(2_400 <= n <= 3_800 for n in per_month.values()), per_month
    digital = sum(1 for inv in demo_2024 if inv["fplx"] in ("81", "82"))
    assert digital / len(demo_2024) > 0.75
    assert 150 <= len(year(SHENZHEN)) <= 700  # a few hundred a year
    beijing = Counter(inv["kprq"][:7] for inv in year(BEIJING))
    assert all(20 <= n <= 100 for n in beijing.values())  # dozens a month


def test_every_kind_present_over_a_year(demo_2024):
    kinds = Counter((inv["fplx"], inv["sfzs"]) for inv in demo_2024)
    for kind in data.KINDS:
        assert kinds[(kind, "Y")] > 0 and kinds[(kind, "N")] > 0, kind
    small = Counter(inv["fplx"] for inv in year(SHENZHEN))
    assert set(small) == set(data.KINDS)


def test_payload_fields_and_value_formats(demo_2024):
    money = re.compile(r"^-?\d+\.\d{2}$")
    for inv in demo_2024[::7]:
        assert set(inv) == {"fpdm", "fphm", "sdfphm", "xfsh", "xfmc", "gfsh", "gfmc", "kprq", "je", "se", "jshj",
                            "fply", "fplx", "fppz", "fpzt", "sfzs", "fxdj", "kpr", "bz", "yfpkey", "mx"}
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", inv["kprq"])
        assert inv["xfsh"] == DEMO and inv["xfmc"] == "杭州示例科技有限公司"
        if inv["fplx"] in ("81", "82"):
            assert re.fullmatch(r"\d{20}", inv["sdfphm"]) and inv["sdfphm"][:2] == inv["kprq"][2:4]
            assert inv["fpdm"] == inv["fphm"] == "" and inv["fply"] == "电子发票服务平台"
        else:
            assert re.fullmatch(r"\d{10}|\d{12}", inv["fpdm"]) and re.fullmatch(r"\d{8}", inv["fphm"])
            assert inv["sdfphm"] == "" and inv["fply"] == "增值税发票管理系统"
        if inv["fplx"] in ("01", "08", "81"):
            assert inv["gfsh"], "专票 buyers have a tax ID"
        assert Decimal(inv["jshj"]) == Decimal(inv["je"]) + Decimal(inv["se"])
        for line in inv["mx"]:
            assert all(money.match(line[f]) for f in ("je", "se", "jshj"))
            assert Decimal(line["jshj"]) == Decimal(line["je"]) + Decimal(line["se"])
            if line["slv"].endswith("%"):
                rate = Decimal(line["slv"][:-1]) / 100
                assert abs(Decimal(line["je"]) * rate - Decimal(line["se"])) <= Decimal("0.06")
            else:
                assert line["slv"] in ("免税", "不征税", "")
            assert line["hxz"] in ("0", "1", "2")
    keys = [data.key_of(inv) for inv in demo_2024]
    assert len(keys) == len(set(keys))


def test_payloads_convert_with_the_product_converter():
    from tests.records_support import invoice_from_payload

    for kind in data.KINDS:
        for inv in data.invoices_for(DEMO, "2024-04", kind):
            record = invoice_from_payload(inv)
            assert record.key == data.key_of(inv)
            assert record.is_red == (inv["sfzs"] == "N")
            if record.is_red:
                assert record.red_of == inv["yfpkey"]


RE_LEGACY = re.compile(r"^对应正数发票代码:(\d{10,12}) ?号码:(\d{8})$")
RE_DIGITAL = re.compile(r"^被红冲蓝字数电(?:发)?票号码：(\d{20}) 红字发票信息确认单编号：\d{20}$")
RE_MIXED = re.compile(r"^被红冲蓝字发票号码：(\d{8}) 被红冲蓝字发票代码：(\d{10,12}) 红字发票信息确认单编号：\d{20}$")


def test_red_invoices_link_to_their_blue_ones(demo_2024):
    by_key = {data.key_of(inv): inv for inv in year(DEMO, 2023) + demo_2024}
    reds = [inv for inv in demo_2024 if inv["sfzs"] == "N"]
    formats, flushes = Counter(), Counter()
    assert len(reds) > 300
    for red in reds:
        blue = by_key[red["yfpkey"]]
        assert blue["sfzs"] == "Y" and blue["kprq"] <= red["kprq"] and red["fpzt"] == "正常"
        assert blue["fpzt"] in ("已红冲-全额", "已红冲-部分")
        assert Decimal(red["je"]) < 0 and Decimal(red["jshj"]) < 0 and red["gfmc"] == blue["gfmc"]
        if blue["fpzt"] == "已红冲-全额":
            assert Decimal(red["jshj"]) == -Decimal(blue["jshj"])
        else:
            assert 0 < -Decimal(red["jshj"]) < Decimal(blue["jshj"])
        flushes[blue["fpzt"]] += 1
        if m := RE_LEGACY.match(red["bz"]):
            formats["legacy"] += 1
            assert f"{m[1]}-{m[2]}" == red["yfpkey"] and red["fplx"] == blue["fplx"]
        elif m := RE_DIGITAL.match(red["bz"]):
            formats["digital"] += 1
            assert m[1] == red["yfpkey"]
        elif m := RE_MIXED.match(red["bz"]):
            formats["mixed"] += 1
            assert f"{m[2]}-{m[1]}" == red["yfpkey"] and red["fplx"] in ("81", "82")
        else:
            pytest.fail(f"unlinked red invoice 备注: {red['bz']!r}")
    assert set(formats) == {"legacy", "digital", "mixed"} and len(flushes) == 2
    flushed = [inv for inv in demo_2024 if inv["fpzt"].startswith("已红冲") and inv["kprq"] < "2024-09"]
    red_of = {red["yfpkey"] for red in reds}
    assert all(data.key_of(blue) in red_of for blue in flushed)


def test_a_later_red_flush_is_not_visible_before_it_happens():
    month = data.invoices_for(DEMO, "2024-05", "82")
    flushed = next(inv for inv in month if inv["fpzt"] == "已红冲-全额")
    red = next(inv for kind in ("82",) for m in ("2024-05", "2024-06", "2024-07", "2024-08")
               for inv in data.invoices_for(DEMO, m, kind) if inv["yfpkey"] == data.key_of(flushed))
    red_day = date.fromisoformat(red["kprq"][:10])
    before = data.invoices_for(DEMO, "2024-05", "82", as_of=red_day - date.resolution)
    seen = next((inv for inv in before if data.key_of(inv) == data.key_of(flushed)), None)
    if seen is not None:  # issued before the red day
        assert seen["fpzt"] == "正常"
    after = data.invoices_for(DEMO, "2024-05", "82", as_of=red_day)
    assert next(inv for inv in after if data.key_of(inv) == data.key_of(flushed))["fpzt"] == "已红冲-全额"
    early = data.invoices_for(DEMO, "2024-05", "82", as_of=date(2024, 5, 10))
    assert early and all(inv["kprq"][:10] <= "2024-05-10" for inv in early)


def test_only_paper_invoices_are_voided(demo_2024):
    voided = [inv for inv in demo_2024 if inv["fpzt"] == "已作废"]
    assert voided and {inv["fplx"] for inv in voided} == {"04", "01"}
    assert all(Decimal(inv["je"]) > 0 and inv["sfzs"] == "Y" for inv in voided)


def test_sales_list_invoices(demo_2024):
    lists = [inv for inv in demo_2024 if any(m["spmc"] == "(详见销货清单)" for m in inv["mx"])]
    assert lists and {inv["fplx"] for inv in lists} <= {"04", "01"}
    with_summary = 0
    for inv in lists:
        head = inv["mx"][0]
        assert head["spmc"] == "(详见销货清单)" and head["ssbm"] == head["sl"] == head["dj"] == ""
        assert (head["je"], head["se"], head["jshj"]) == (inv["je"], inv["se"], inv["jshj"])
        real = [m for m in inv["mx"] if m["spmc"] not in ERROR_GOODS]
        assert len(real) >= 9
        assert sum(Decimal(m["je"]) for m in real) == Decimal(inv["je"])
        assert sum(Decimal(m["se"]) for m in real) == Decimal(inv["se"])
        names = {m["spmc"]: m for m in inv["mx"]}
        if "原价合计" in names:
            with_summary += 1
            assert Decimal(names["原价合计"]["je"]) + Decimal(names["折扣额合计"]["je"]) == Decimal(inv["je"])
            assert Decimal(names["折扣额合计"]["je"]) < 0
    assert with_summary > 0
    assert sum(Decimal(m["je"]) for m in lists[0]["mx"]) != Decimal(lists[0]["je"])  # naive sums double-count


def test_discount_lines_follow_the_discounted_line(demo_2024):
    seen = 0
    for inv in demo_2024:
        for i, line in enumerate(inv["mx"]):
            if line["hxz"] == "1":
                seen += 1
                before = inv["mx"][i - 1]
                assert before["hxz"] == "2" and before["spmc"] == line["spmc"] and before["slv"] == line["slv"]
                assert Decimal(line["je"]) < 0 and line["sl"] == line["dj"] == "" and inv["sfzs"] == "Y"
    assert seen > 100


def test_usage_values_are_stable_and_realistic(demo_2024):
    blues = [inv for inv in demo_2024 if inv["sfzs"] == "Y"][::5]
    leqi_usage = [data.usage_for(data.key_of(inv), "leqi", inv) for inv in blues]
    assert leqi_usage == [data.usage_for(data.key_of(inv), "leqi", inv) for inv in blues]
    fpyt = Counter(u["fpyt"] for u in leqi_usage)
    assert set(fpyt) <= {str(n) for n in range(12)}
    assert (fpyt["0"] + fpyt["1"]) / len(blues) > 0.85 and len(fpyt) >= 8
    special = Counter(u["fpyt"] for u, inv in zip(leqi_usage, blues, strict=False) if inv["fplx"] in ("81", "01", "08"))
    assert special.most_common(1)[0][0] == "1"
    assert {u["xfsyt"] for u in leqi_usage} == {"00", "01"}
    assert Counter(u["hzsdbs"] for u in leqi_usage)["N"] / len(blues) > 0.97


# ------------------------------------------------------------------------------------------
# 乐企
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body, why", [
    ({"nsrsbh": "bad", "kprqq": "20240101", "kprqz": "20240131", "fplx": "81", "sjlx": "2"}, "nsrsbh"),
    ({"nsrsbh": DEMO, "kprqq": "20240101", "kprqz": "20240229", "fplx": "81", "sjlx": "2"}, "同一开票月份"),
    ({"nsrsbh": DEMO, "kprqq": "20240131", "kprqz": "20240101", "fplx": "81", "sjlx": "2"}, "早于"),
    ({"nsrsbh": DEMO, "kprqq": "20240101", "kprqz": "20240131", "fplx": "03", "sjlx": "2"}, "fplx"),
    ({"nsrsbh": DEMO, "kprqq": "20240101", "kprqz": "20240131", "fplx": "81", "sjlx": "1"}, "sjlx"),
    ({"nsrsbh": DEMO, "kprqq": "2024-01-01", "kprqz": "20240131", "fplx": "81", "sjlx": "2"}, "kprqq"),
    ({"nsrsbh": DEMO, "kprqq": "20240230", "kprqz": "20240231", "fplx": "81", "sjlx": "2"}, "有效日期"),
    ({"nsrsbh": DEMO, "kprqq": "20240701", "kprqz": "20240731", "fplx": "81", "sjlx": "2"}, "晚于当前日期"),
])
def test_apply_validates_its_fields(client, body, why):
    control(client, today="2024-06-10")
    answer = leqi(client, "PLFPXZSQ", body)
    assert answer["code"] == "10" and why in answer["msg"]
    assert client.get("/sandbox/stats").json()["quota_log"] == []


def test_leqi_refusals(client):
    control(client, today="2024-06-10")
    assert apply(client, "2024-05", tax_id="91330100MA0000000X")["code"] == "11"
    refused = apply(client, "2024-05", tax_id=BEIJING)
    assert refused["code"] == "12" and "乐企归集能力" in refused["msg"]
    assert leqi(client, "PLFPXZSQFK", {"lsh": "0" * 32, "packageno": 1})["code"] == "15"
    assert leqi(client, "CXZLXZFPXX", {"nsrsbh": DEMO})["code"] == "10"
    assert client.post("/access/v2/invoke/203067/PLFPXZSQ/", content=b"not json").json()["code"] == "10"
    wrong_header = client.post("/access/v2/invoke/203067/PLFPXZSQ/", json={}, headers={"fwbm": "FPZTXXCX"})
    assert wrong_header.json()["code"] == "10"


def test_processing_polls_then_packages(client):
    control(client, today="2024-06-10", processing_polls=2)
    lsh = apply(client, "2024-05", "82")["data"]["lsh"]
    assert re.fullmatch(r"[0-9a-f]{32}", lsh)
    codes = [leqi(client, "PLFPXZSQFK", {"lsh": lsh, "packageno": 1})["code"] for _ in range(3)]
    assert codes == ["01", "01", "00"]
    invoices, sizes = fetch_all(client, lsh)
    expected = data.invoices_for(DEMO, "2024-05", "82", as_of=date(2024, 6, 10))
    assert [data.key_of(i) for i in invoices] == [data.key_of(i) for i in expected]
    assert len(sizes) == math.ceil(len(expected) / 500) >= 4 and all(s <= 500 for s in sizes)
    assert sizes[:-1] == [500] * (len(sizes) - 1)
    first = leqi(client, "PLFPXZSQFK", {"lsh": lsh, "packageno": 1})["data"]
    assert (first["nsrsbh"], first["fplx"], first["packageno"]) == (DEMO, "82", 1)
    assert leqi(client, "PLFPXZSQFK", {"lsh": lsh, "packageno": len(sizes) + 1})["code"] == "10"


def test_current_month_returns_only_invoices_issued_so_far(client):
    control(client, today="2024-06-10", processing_polls=0)
    invoices, _ = fetch_all(client, apply(client, "2024-06", "82")["data"]["lsh"])
    assert invoices and max(inv["kprq"] for inv in invoices) < "2024-06-11"


def test_an_application_without_invoices(client):
    control(client, today="2024-06-10", processing_polls=0)
    lsh = apply(client, "2022-12", "82")["data"]["lsh"]  # before the 乐企 authorisation (2023-01-01)
    answer = leqi(client, "PLFPXZSQFK", {"lsh": lsh, "packageno": 1})
    assert answer["code"] == "00" and answer["data"]["packagecount"] == 0 and answer["data"]["fpxx"] == []


def test_leqi_returns_only_invoices_since_the_authorisation_date(client):
    control(client, today="2024-06-10", processing_polls=0)
    invoices, _ = fetch_all(client, apply(client, "2024-03", "82", tax_id=SHENZHEN)["data"]["lsh"])
    everything = data.invoices_for(SHENZHEN, "2024-03", "82")
    assert any(inv["kprq"] < "2024-03-15" for inv in everything)
    assert [data.key_of(i) for i in invoices] == [data.key_of(i) for i in everything if i["kprq"] >= "2024-03-15"]
    rpa_invoices, _ = rpa_fetch(client, rpa_task(client, "20240301", "20240331", ["82"], SHENZHEN,
                                                 "91440300MA5SANDB01-etax")["data"]["task_id"])
    assert len(rpa_invoices) == len(everything)  # the robot has no authorisation cut-off


def test_results_expire_after_seven_days(client):
    control(client, today="2024-06-10", processing_polls=0)
    lsh = apply(client, "2024-05", "81")["data"]["lsh"]
    control(client, today="2024-06-17")
    assert leqi(client, "PLFPXZSQFK", {"lsh": lsh, "packageno": 1})["code"] == "00"
    control(client, today="2024-06-18")
    assert leqi(client, "PLFPXZSQFK", {"lsh": lsh, "packageno": 1})["code"] == "15"


# -- quotas ----------------------------------------------------------------------------------


def test_quota_one_application_a_day(client):
    control(client, today="2024-06-10")
    assert apply(client, "2024-05", "81")["code"] == "00"
    refused = apply(client, "2024-05", "81")
    assert refused["code"] == "13" and "每天只能申请1次" in refused["msg"]
    assert apply(client, "2024-05", "82")["code"] == "00"  # another type
    assert apply(client, "2024-04", "81")["code"] == "00"  # another invoicing month
    assert apply(client, "2024-05", "81", tax_id=SHENZHEN)["code"] == "00"  # another company
    control(client, today="2024-06-11")
    assert apply(client, "2024-05", "81")["code"] == "00"  # the next day


def test_quota_five_a_month_for_the_current_invoicing_month(client):
    for day in range(1, 6):
        control(client, today=f"2024-06-{day:02d}")
        assert apply(client, "2024-06", "82")["code"] == "00", day
    control(client, today="2024-06-06")
    refused = apply(client, "2024-06", "82")
    assert refused["code"] == "13" and "当前开票月份" in refused["msg"] and "5次" in refused["msg"]
    control(client, today="2024-06-30")
    assert apply(client, "2024-06", "82")["code"] == "13"
    control(client, today="2024-07-01")  # June is now a past month, and July a new calendar month
    assert apply(client, "2024-06", "82")["code"] == "00"


def test_quota_three_a_month_for_a_past_invoicing_month(client):
    for day in (10, 11, 12):
        control(client, today=f"2024-06-{day}")
        assert apply(client, "2024-03", "01")["code"] == "00"
    control(client, today="2024-06-13")
    refused = apply(client, "2024-03", "01")
    assert refused["code"] == "13" and "历史开票月份" in refused["msg"] and "3次" in refused["msg"]
    assert apply(client, "2024-02", "01")["code"] == "00"  # another past month has its own count
    control(client, today="2024-07-01")
    assert apply(client, "2024-03", "01")["code"] == "00"  # next calendar month
    log = client.get("/sandbox/stats").json()["quota_log"]
    assert [(row["inv_month"], row["applied_on"]) for row in log if row["inv_month"] == "2024-03"] == [
        ("2024-03", "2024-06-10"), ("2024-03", "2024-06-11"), ("2024-03", "2024-06-12"), ("2024-03", "2024-07-01")]


def test_quota_counts_the_current_month_rule_by_the_sandbox_clock(client):
    """Three applications in May for May (current), then in June May is past: 3 a month again."""
    for day in (1, 2, 3, 4):
        control(client, today=f"2024-05-{day:02d}")
        assert apply(client, "2024-05", "08")["code"] == "00"
    for day in (3, 4, 5):
        control(client, today=f"2024-06-{day:02d}")
        assert apply(client, "2024-05", "08")["code"] == "00"
    control(client, today="2024-06-06")
    assert "3次" in apply(client, "2024-05", "08")["msg"]


def _apply_at_once(clients: list[httpx.Client]) -> list[str]:
    """Every client applies for the same unit at the same moment; returns the codes."""
    barrier = threading.Barrier(len(clients))
    codes: list[str] = []

    def one(c: httpx.Client) -> None:
        barrier.wait()
        codes.append(apply(c, "2024-05", "81")["code"])

    threads = [threading.Thread(target=one, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return codes


def test_concurrent_applications_through_separate_app_instances(db_path):
    clients = [client_for(db_path) for _ in range(8)]
    control(clients[0], today="2024-06-10")
    codes = _apply_at_once(clients)
    assert sorted(codes) == ["00"] + ["13"] * 7
    assert len(clients[0].get("/sandbox/stats").json()["quota_log"]) == 1


def test_concurrent_applications_over_real_http(live_url):
    clients = [httpx.Client(base_url=live_url, timeout=30) for _ in range(8)]
    control(clients[0], today="2024-06-10")
    assert sorted(_apply_at_once(clients)) == ["00"] + ["13"] * 7


def _apply_in_child(db_path: str, barrier, results) -> None:
    """A forked process with its own sandbox app, as an RQ job would have."""
    with client_for(db_path) as c:
        barrier.wait()
        results.put(apply(c, "2024-05", "10")["code"])


def test_concurrent_applications_from_forked_processes(db_path):
    ctx = multiprocessing.get_context("fork")
    with client_for(db_path) as c:
        control(c, today="2024-06-10")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_apply_in_child, args=(db_path, barrier, results)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert sorted(results.get(timeout=5) for _ in procs) == ["00", "13", "13", "13"]


# -- usage -----------------------------------------------------------------------------------


def test_usage_code_sets_differ_between_channels(client):
    control(client, today="2024-06-10")
    month = [inv for kind in ("81", "82") for inv in data.invoices_for(DEMO, "2024-03", kind)]
    blues = [inv for inv in month if inv["sfzs"] == "Y"][:600]
    leqi_answers, rpa_answers = [], []
    for start in range(0, len(blues), 100):
        items = [usage_item(inv) for inv in blues[start:start + 100]]
        a = leqi(client, "FPZTXXCX", {"nsrsbh": DEMO, "fpxx": items})
        b = client.post("/rpa/v1/usage", json={"nsrsbh": DEMO, "dlzh": DEMO_ACCOUNT, "fpxx": items}).json()
        assert a["code"] == b["code"] == "00"
        leqi_answers += a["data"]["fpxx"]
        rpa_answers += b["data"]["fpxx"]
    assert [a["fphm"] for a in leqi_answers] == [inv["sdfphm"] for inv in blues]  # request order
    assert {a["rzzt"] for a in leqi_answers} == {"01", "02", "03"}
    assert {a["rzzt"] for a in rpa_answers} == {"01", "02", "03", "06"}
    for a, b in zip(leqi_answers, rpa_answers, strict=False):
        assert (a["fpyt"], a["xfsyt"], a["fpzt"], a["hzsdbs"]) == (b["fpyt"], b["xfsyt"], b["fpzt"], b["hzsdbs"])
        assert {"01": {"01"}, "02": {"02", "03"}, "03": {"06"}}[a["rzzt"]] >= {b["rzzt"]}
    statuses = {inv["fpzt"]: a["fpzt"] for inv, a in zip(blues, leqi_answers, strict=False)}
    assert statuses["正常"] == "0" and statuses["已红冲-全额"] == "8" and statuses["已红冲-部分"] == "7"


def test_usage_of_unknown_and_red_invoices_and_the_counters(client):
    control(client, today="2024-06-10")
    month = data.invoices_for(DEMO, "2024-03", "82")
    blue = next(inv for inv in month if inv["sfzs"] == "Y")
    red = next(inv for inv in month if inv["sfzs"] == "N")
    unknown = {"fplx": "82", "fpdm": "", "fphm": "24330000000000000000", "kprq": "20240301"}
    wrong_day = {**usage_item(blue), "kprq": "20240302" if blue["kprq"][:10] != "2024-03-02" else "20240303"}
    answer = leqi(client, "FPZTXXCX", {"nsrsbh": DEMO, "fpxx": [usage_item(blue), usage_item(red), unknown, wrong_day]})
    fpxx = answer["data"]["fpxx"]
    assert fpxx[0]["fpyt"] is not None and fpxx[1]["fpyt"] == "0" and fpxx[1]["rzzt"] == "01"
    for missing in fpxx[2:]:
        assert missing["fpyt"] is None and missing["msg"] == "未查询到该发票"
    usage = client.get("/sandbox/stats").json()["usage_items"]
    assert usage["leqi"]["total"] == 4 and usage["leqi"]["red"] == 1
    assert usage["leqi"]["by_tax_id"][DEMO] == {"total": 4, "red": 1}


def test_usage_request_limits(client):
    items = [usage_item(inv) for inv in data.invoices_for(DEMO, "2024-03", "82")[:101]]
    assert leqi(client, "FPZTXXCX", {"nsrsbh": DEMO, "fpxx": items})["code"] == "10"
    assert leqi(client, "FPZTXXCX", {"nsrsbh": DEMO, "fpxx": []})["code"] == "10"
    bad_day = [{"fplx": "82", "fphm": "1", "kprq": "x"}]
    assert leqi(client, "FPZTXXCX", {"nsrsbh": DEMO, "fpxx": bad_day})["code"] == "10"
    assert leqi(client, "FPZTXXCX", {"nsrsbh": BEIJING, "fpxx": items[:1]})["code"] == "12"


# ------------------------------------------------------------------------------------------
# RPA
# ------------------------------------------------------------------------------------------


def test_rpa_task_runs_then_pages(client):
    control(client, today="2024-06-10", processing_polls=3)
    task_id = rpa_task(client, "20240501", "20240531", ["81", "04", "82"])["data"]["task_id"]
    assert client.get(f"/rpa/v1/tasks/{task_id}/pages/1").json()["code"] == "01"
    states = [client.get(f"/rpa/v1/tasks/{task_id}").json()["data"]["status"] for _ in range(4)]
    assert states == ["running", "running", "running", "done"]
    invoices, status = rpa_fetch(client, task_id)
    expected = [inv for kind in ("81", "04", "82")
                for inv in data.invoices_for(DEMO, "2024-05", kind, as_of=date(2024, 6, 10))]
    assert status["total"] == len(invoices) == len(expected) and status["pages"] == math.ceil(len(expected) / 500)
    assert {data.key_of(i) for i in invoices} == {data.key_of(i) for i in expected}
    assert client.get(f"/rpa/v1/tasks/{task_id}/pages/{status['pages'] + 1}").json()["code"] == "10"
    assert client.get("/rpa/v1/tasks/nope").json()["code"] == "15"
    assert client.get("/rpa/v1/tasks/nope/pages/1").json()["code"] == "15"


def test_rpa_tasks_over_several_months_and_kinds_agree_with_single_ones(client):
    control(client, today="2024-06-10", processing_polls=0)
    both, _ = rpa_fetch(client, rpa_task(client, "20240201", "20240331", ["81", "82"], SHENZHEN,
                                         "91440300MA5SANDB01-etax")["data"]["task_id"])
    alone, _ = rpa_fetch(client, rpa_task(client, "20240201", "20240331", ["82"], SHENZHEN,
                                          "91440300MA5SANDB01-etax")["data"]["task_id"])
    assert [i for i in both if i["fplx"] == "82"] == alone


@pytest.mark.parametrize("account, headers, code", [
    ("wrong-account", {}, "14"),
    ("", {}, "14"),
    (DEMO_ACCOUNT, {"X-Etax-Password": "wrong"}, "14"),
    (DEMO_ACCOUNT, {"X-Etax-Password": "sandbox"}, "00"),
    (DEMO_ACCOUNT, {}, "00"),
])
def test_rpa_account_check(client, account, headers, code):
    body = {"kind": "invoices", "nsrsbh": DEMO, "dlzh": account, "kprqq": "20240101", "kprqz": "20240131",
            "fplx": ["82"]}
    answer = client.post("/rpa/v1/tasks", json=body, headers=headers).json()
    assert answer["code"] == code
    if code == "14":
        assert "电子税局账号" in answer["msg"]
    usage = client.post("/rpa/v1/usage", json={"nsrsbh": DEMO, "dlzh": account, "fpxx": [
        usage_item(data.invoices_for(DEMO, "2024-01", "82")[0])]}, headers=headers).json()
    assert usage["code"] == code


def test_rpa_refusals(client):
    control(client, today="2024-06-10")
    assert rpa_task(client, "20240101", "20240131", ["82"], tax_id="91330100MA0000000X")["code"] == "11"
    client.post("/sandbox/companies", json={"tax_id": "91330100MA0NOACCT1", "name": "无账号公司"})
    assert rpa_task(client, "20240101", "20240131", ["82"], "91330100MA0NOACCT1", "x")["code"] == "14"
    assert rpa_task(client, "20230101", "20240131", ["82"])["code"] == "10"  # more than a year
    assert rpa_task(client, "20240101", "20240131", [])["code"] == "10"
    assert rpa_task(client, "20240101", "20240131", ["99"])["code"] == "10"
    assert client.post("/rpa/v1/tasks", json={"kind": "usage"}).json()["code"] == "10"


# ------------------------------------------------------------------------------------------
# Failure injection, latency, counters, control API
# ------------------------------------------------------------------------------------------


def test_failure_injection_has_no_side_effects(client):
    control(client, today="2024-06-10", fail_rate=1.0)
    responses = [client.post("/access/v2/invoke/203067/PLFPXZSQ/", json={
        "nsrsbh": DEMO, "kprqq": "20240501", "kprqz": "20240531", "fplx": "81", "sjlx": "2"}) for _ in range(20)]
    kinds = Counter("http503" if r.status_code == 503 else r.json()["code"] for r in responses)
    assert set(kinds) == {"http503", "20"}
    stats = client.get("/sandbox/stats").json()
    assert stats["quota_log"] == [] and stats["applications"] == 0
    assert stats["requests"]["by_service_code"]["leqi.PLFPXZSQ"] == dict(kinds)
    control(client, fail_rate=None)
    assert apply(client, "2024-05", "81")["code"] == "00"


def test_failure_injection_limited_to_named_services(client):
    control(client, today="2024-06-10", fail_rate=1.0, fail_services=["FPZTXXCX", "rpa.usage"])
    assert apply(client, "2024-05", "81")["code"] == "00"
    item = usage_item(data.invoices_for(DEMO, "2024-05", "81")[0])
    usage = client.post("/access/v2/invoke/203067/FPZTXXCX/", json={"nsrsbh": DEMO, "fpxx": [item]})
    assert usage.status_code == 503 or usage.json()["code"] == "20"
    assert rpa_task(client, "20240501", "20240531", ["81"])["code"] == "00"
    rpa_usage = client.post("/rpa/v1/usage", json={"nsrsbh": DEMO, "dlzh": DEMO_ACCOUNT, "fpxx": [item]})
    assert rpa_usage.status_code == 503 or rpa_usage.json()["code"] == "20"


def test_failure_sequence_is_deterministic_and_near_the_rate(tmp_path):
    def outcomes(path: str) -> list[str]:
        with client_for(path, SANDBOX_FAIL_RATE="0.3") as c:
            c.post("/sandbox/control", json={"today": "2024-06-10"})
            out = []
            for _ in range(200):
                r = c.post("/rpa/v1/tasks", json={"kind": "invoices", "nsrsbh": DEMO, "dlzh": DEMO_ACCOUNT,
                                                  "kprqq": "20240501", "kprqz": "20240531", "fplx": ["81"]})
                out.append("503" if r.status_code == 503 else r.json()["code"])
            return out

    first, second = outcomes(str(tmp_path / "a.db")), outcomes(str(tmp_path / "b.db"))
    assert first == second
    failed = sum(1 for code in first if code != "00") / len(first)
    assert 0.2 < failed < 0.4


def test_latency(db_path):
    with client_for(db_path, SANDBOX_LATENCY_MS="150") as c:
        started = time.perf_counter()
        assert apply(c, "2022-05", "81")["code"] == "00"
        assert time.perf_counter() - started >= 0.15
        control(c, latency_ms=0)
        started = time.perf_counter()
        c.get("/rpa/v1/tasks/none")
        assert time.perf_counter() - started < 0.15


def test_config_defaults_yield_to_control_overrides(db_path):
    with client_for(db_path, SANDBOX_FAIL_RATE=1, SANDBOX_PROCESSING_POLLS="4") as c:
        assert c.get("/sandbox/control").json()["settings"]["processing_polls"] == 4
        assert c.get("/rpa/v1/tasks/x").status_code in (200, 503)
        control(c, fail_rate=0)
        assert c.get("/rpa/v1/tasks/x").json()["code"] == "15"
        with client_for(db_path, SANDBOX_FAIL_RATE=1) as other:  # another instance, same file
            assert other.get("/rpa/v1/tasks/x").json()["code"] == "15"


def test_counters_per_service_tax_id_and_code(client):
    control(client, today="2024-06-10", processing_polls=0)
    lsh = apply(client, "2024-05", "81")["data"]["lsh"]
    apply(client, "2024-05", "81")
    apply(client, "2024-05", "81", tax_id=BEIJING)
    leqi(client, "PLFPXZSQFK", {"lsh": lsh, "packageno": 1})
    rpa_task(client, "20240501", "20240531", ["81"])
    requests = client.get("/sandbox/stats").json()["requests"]
    assert requests["total"] == 5
    assert requests["by_service"] == {"leqi.PLFPXZSQ": 3, "leqi.PLFPXZSQFK": 1, "rpa.tasks": 1}
    assert requests["by_service_code"]["leqi.PLFPXZSQ"] == {"00": 1, "13": 1, "12": 1}
    assert requests["by_tax_id"] == {DEMO: 4, BEIJING: 1}  # the feedback call is counted for its lsh's company
    assert requests["by_code"] == {"00": 3, "13": 1, "12": 1}


def test_reset_keeps_companies(client):
    control(client, today="2024-06-10")
    client.post("/sandbox/companies", json={"tax_id": "91330100MA0RESET01", "name": "重置测试公司",
                                            "leqi_enabled": True, "leqi_since": "2024-01-01"})
    assert apply(client, "2024-05", "81", tax_id="91330100MA0RESET01")["code"] == "00"
    assert client.post("/sandbox/reset").json() == {"reset": True}
    stats = client.get("/sandbox/stats").json()
    assert stats["requests"]["total"] == 0 and stats["quota_log"] == [] and stats["applications"] == 0
    assert stats["settings"]["today"] == "2024-06-10"
    assert apply(client, "2024-05", "81", tax_id="91330100MA0RESET01")["code"] == "00"  # quota log cleared
    client.post("/sandbox/reset", json={"settings": True})
    assert client.get("/sandbox/control").json()["settings"]["today"] is None


def test_register_and_update_companies(client):
    control(client, today="2024-06-10", processing_polls=0)
    tax_id = "91320500MA0NEWCO01"
    saved = client.post("/sandbox/companies", json={"tax_id": tax_id, "name": "苏州新沙箱有限公司",
                                                    "leqi_enabled": False, "rpa_account": "new-etax",
                                                    "volume": {"82": 40, "81": 5}}).json()["company"]
    assert saved["volume"] == {"82": 40, "81": 5} and saved["leqi_enabled"] is False
    assert apply(client, "2024-05", "82", tax_id=tax_id)["code"] == "12"
    client.post("/sandbox/companies", json={"tax_id": tax_id, "leqi_enabled": True, "leqi_since": "20240101"})
    invoices, _ = fetch_all(client, apply(client, "2024-05", "82", tax_id=tax_id)["data"]["lsh"])
    assert 20 <= len(invoices) <= 70 and {i["xfmc"] for i in invoices} == {"苏州新沙箱有限公司"}
    listed = {c["tax_id"]: c for c in client.get("/sandbox/companies").json()["companies"]}
    assert listed[tax_id]["rpa_account"] == "new-etax" and listed[tax_id]["leqi_since"] == "2024-01-01"
    assert client.post("/sandbox/companies", json={"tax_id": "x"}).status_code == 400
    assert client.post("/sandbox/companies", json={"tax_id": tax_id, "volume": "huge"}).status_code == 400
    assert client.post("/sandbox/control", json={"fail_rate": 2}).status_code == 400
    assert client.post("/sandbox/control", json={"today": "soon"}).status_code == 400
    assert client.post("/sandbox/control", json={"speed": 1}).status_code == 400


def test_default_companies_are_seeded(client):
    companies = {c["tax_id"]: c for c in client.get("/sandbox/companies").json()["companies"]}
    demo = companies[DEMO]
    assert (demo["name"], demo["leqi_enabled"], demo["leqi_since"], demo["rpa_account"]) == (
        "杭州示例科技有限公司", True, "2023-01-01", DEMO_ACCOUNT)
    assert companies[SHENZHEN]["name"] == "深圳沙箱贸易有限公司"
    assert companies[BEIJING]["leqi_enabled"] is False


def test_create_app_without_arguments_reads_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SANDBOX_DB", raising=False)
    monkeypatch.setenv("SANDBOX_PROCESSING_POLLS", "3")
    app = create_app()
    assert app.config["SANDBOX_DB"] == str(tmp_path / "data" / "sandbox.db")
    assert (tmp_path / "data" / "sandbox.db").exists()
    with app.test_client() as c:
        assert c.get("/sandbox/control").get_json()["settings"]["processing_polls"] == 3
    monkeypatch.setenv("SANDBOX_DB", str(tmp_path / "other.db"))
    assert create_app().config["SANDBOX_DB"] == str(tmp_path / "other.db")


# ------------------------------------------------------------------------------------------
# Over real HTTP, with the product's own clients
# ------------------------------------------------------------------------------------------


def test_product_clients_download_over_real_http(live_url):
    from channels.leqi import LeqiClient
    from channels.records import UsageQuery
    from channels.rpa import RpaClient
    from tests.records_support import leqi_download, rpa_download

    with httpx.Client(base_url=live_url) as c:
        control(c, today="2024-06-10", processing_polls=1, latency_ms=5)
    no_wait = {"sleep": lambda seconds: None}
    with LeqiClient(live_url, "app", "secret", **no_wait) as lq, RpaClient(live_url, "key", **no_wait) as robot:
        records = list(leqi_download(lq, DEMO, date(2024, 5, 1), date(2024, 5, 31), "81"))
        robot_records = list(rpa_download(robot, DEMO, DEMO_ACCOUNT, date(2024, 5, 1), date(2024, 5, 31), ["81"]))
        assert len(records) > 500 and [r.key for r in records] == [r.key for r in robot_records]
        blues = [r for r in records if not r.is_red][:150]
        queries = [UsageQuery(r.key, r.type_code, r.code, r.digital_number or r.number,
                              r.issued_at.strftime("%Y%m%d")) for r in blues]
        leqi_status = lq.query_usage(DEMO, queries)
        robot_status = robot.query_usage(DEMO, DEMO_ACCOUNT, queries)
        assert [s.vat_usage for s in leqi_status] == [s.vat_usage for s in robot_status]
        assert all(s.vat_usage is not None for s in leqi_status)
    with httpx.Client(base_url=live_url) as c:
        stats = c.get("/sandbox/stats").json()
    assert stats["usage_items"]["leqi"]["red"] == 0 and stats["usage_items"]["rpa"]["total"] == 150
    assert stats["requests"]["by_service_code"]["leqi.PLFPXZSQFK"]["01"] == 1
