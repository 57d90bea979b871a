"""Migrations on a database that holds rows: 0013 turns the joined lists into JSON lists and back,
and SQLite's table copies keep every subtask (SQLite here; PostgreSQL casts in the same migration);
0014 drops the pool indexes no query uses, and the look-ups they served still find their rows; 0015
puts every stored tax ID in its canonical form, merging the rows two spellings made; 0020 gives the
toll invoices imported without a code their code 59; 0021 gives each stored failure and wait its reason
code (SQLite, and PostgreSQL in a database of its own when TEST_DATABASE_URL names a server)."""
from __future__ import annotations

import os

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, select, text

from tests.servers import scratch_postgresql
from webapp.extensions import db
from webapp.models import Batch, ScheduleRun
from wsgi import create_app

SPECIAL, ORDINARY = "数电发票（增值税专用发票）", "数电发票（普通发票）"
JOINED = [(f"{SPECIAL}、{ORDINARY}", "81,82"), ("全部", ""), ("", None)]  # a download of two kinds, of all, a file


def _seed() -> None:
    """Rows as a 0012 database holds them: three batches with a month each, a schedule with two runs."""
    run = db.session.execute
    run(text("INSERT INTO org (id, name, timezone) VALUES (1, 'o', 'Asia/Shanghai')"))
    run(text("INSERT INTO company (id, org_id, tax_id, name, leqi_enabled) VALUES (1, 1, 'T1', 'c', false)"))
    run(text("INSERT INTO \"user\" (id, org_id, username, password_hash, role, active) "
             "VALUES (1, 1, 'u', 'x', 'admin', true)"))
    for n, (kinds, codes) in enumerate(JOINED, 1):
        run(text("INSERT INTO batch (id, batch_no, org_id, company_id, tax_id, seller_name, data_type, method, kinds, "
                 "type_codes, status, total, success, filtered_lines, created_by_id, creator_name, created_at) "
                 "VALUES (:n, :no, 1, 1, 'T1', 'c', 'invoices', 'download', :kinds, :codes, 'succeeded', 0, 0, 0, 1, "
                 "'u', '2026-01-01 00:00:00')"), {"n": n, "no": f"B{n}", "kinds": kinds, "codes": codes})
        run(text("INSERT INTO subtask (batch_id, period, status, total, success, filtered_lines, attempts) "
                 "VALUES (:n, '2026-01', 'succeeded', 0, 0, 0, 0)"), {"n": n})
    run(text("INSERT INTO schedule (id, org_id, created_by_id, invoices, usage, enabled, created_at) "
             "VALUES (1, 1, 1, true, false, true, '2026-01-01 00:00:00')"))
    run(text("INSERT INTO schedule_run (id, schedule_id, period, started_at, trigger, batch_nos) VALUES "
             "(1, 1, '2025-12', '2026-01-05 00:30:00', 'due', 'B1,B2'), "
             "(2, 1, '2025-11', '2026-01-05 00:30:00', 'due', '')"))
    db.session.commit()


def _as_lists() -> tuple[list, list, int]:
    """What the app reads: each batch's kinds and type codes, each run's batch numbers, the subtask count."""
    db.session.remove()
    batches = [(b.kinds, b.type_codes) for b in db.session.scalars(select(Batch).order_by(Batch.id))]
    runs = [r.batch_nos for r in db.session.scalars(select(ScheduleRun).order_by(ScheduleRun.id))]
    return batches, runs, db.session.scalar(text("SELECT count(*) FROM subtask"))


def _as_text() -> tuple[list, list, int]:
    """The same columns as the 0012 schema keeps them, as text."""
    db.session.remove()
    batches = [tuple(r) for r in db.session.execute(text("SELECT kinds, type_codes FROM batch ORDER BY id"))]
    runs = db.session.scalars(text("SELECT batch_nos FROM schedule_run ORDER BY id")).all()
    return batches, runs, db.session.scalar(text("SELECT count(*) FROM subtask"))


def test_joined_lists_become_json_lists_and_back_keeping_every_row(tmp_path):
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'migrated.db'}"})
    listed = ([([SPECIAL, ORDINARY], ["81", "82"]), (["全部"], []), ([], [])], [["B1", "B2"], []], 3)
    with app.app_context():
        upgrade(revision="0012")
        _seed()
        upgrade()
        assert _as_lists() == listed
        downgrade(revision="0012")
        # no type codes come back as NULL: "every kind", as a file batch always said it
        assert _as_text() == ([(f"{SPECIAL}、{ORDINARY}", "81,82"), ("全部", None), ("", None)], ["B1,B2", ""], 3)
        upgrade()
        assert _as_lists() == listed
        db.session.remove()
        db.engine.dispose()


DROPPED_IN_0014 = {("invoice", "ix_invoice_buyer_tax_id"), ("invoice", "ix_invoice_code_number"),
                   ("invoice_line", "ix_invoice_line_invoice_key")}


def _indexes() -> set[tuple[str, str]]:
    inspector = inspect(db.engine)
    return {(table, index["name"]) for table in ("invoice", "invoice_line") for index in inspector.get_indexes(table)}


def test_indexes_no_query_uses_are_dropped_and_their_lookups_still_find_the_rows(tmp_path):
    from webapp.pool import find_invoice, invoice_lines

    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'migrated.db'}"})
    with app.app_context():
        upgrade(revision="0013")
        assert DROPPED_IN_0014 <= _indexes()
        # a 数电纸质 invoice: its key is the 数电 number, a red invoice's 备注 names it by 发票代码-发票号码
        db.session.execute(text(
            "INSERT INTO invoice (key, tax_id, code, number, digital_number, issued_at, month, amount, tax, type_name, "
            "status, is_red, source, synced_at) VALUES ('24330000000000000001', 'T1', '033001', '0001', "
            "'24330000000000000001', '2026-01-05 10:00:00', '2026-01', 100, 13, '数电纸质发票（增值税专用发票）', "
            "'正常', false, 'file', '2026-01-06 00:00:00')"))
        db.session.execute(text("INSERT INTO invoice_line (invoice_key, line_no, name, amount, tax, is_discount) "
                                "VALUES ('24330000000000000001', 1, '*服务*服务费', 100, 13, false)"))
        db.session.commit()
        upgrade()
        assert not DROPPED_IN_0014 & _indexes()
        assert find_invoice("033001-0001", ["T1"]).key == "24330000000000000001"
        assert [line.name for line in invoice_lines("24330000000000000001")] == ["*服务*服务费"]
        downgrade(revision="0013")
        assert DROPPED_IN_0014 <= _indexes()
        db.session.remove()
        db.engine.dispose()


# ---- 0015: canonical tax IDs (README, Access: a tax ID is kept upper case without spaces) ----

CANONICAL, LOWER = "91330100MA2H4K7Q1X", "91330100ma2h4k7q1x"
OTHER_LOWER, BUYER = "91110000ab0000000x", "91110105MA01XYZ12K"


@pytest.fixture(params=["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else []))
def empty_database(request, tmp_path):
    """An empty database of the test's own: a SQLite file, or a PostgreSQL database created on
    TEST_DATABASE_URL's server (never that database, which the session's other tests share)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrated.db'}"
        return
    with scratch_postgresql(os.environ["TEST_DATABASE_URL"], f"migration_test_{os.getpid()}") as url:
        yield url


def _seed_spellings() -> None:
    """A 0014 database where a lower-case export left its marks: one company under two spellings
    (the lower-case one with the RPA account and the grants), another only in lower case, an invoice,
    its source row, its month's kept figures and a day's 乐企 application under both spellings."""
    run = db.session.execute
    run(text("INSERT INTO org (id, name, timezone) VALUES (1, 'o', 'Asia/Shanghai')"))
    run(text("INSERT INTO company (id, org_id, tax_id, name, leqi_enabled, etax_account) VALUES "
             "(1, 1, :canonical, '杭州示例', false, NULL), (2, 1, :spaced, '杭州示例（旧）', true, 'acct'), "
             "(3, 1, :other, '北京示例', false, NULL)"),
        {"canonical": CANONICAL, "spaced": f" {LOWER}", "other": OTHER_LOWER})
    run(text("INSERT INTO \"user\" (id, org_id, username, password_hash, role, active) VALUES "
             "(1, 1, 'u1', 'x', 'finance', true), (2, 1, 'u2', 'x', 'admin', true)"))
    run(text("INSERT INTO user_company (user_id, company_id) VALUES (1, 2), (2, 1), (2, 2)"))
    for n, company, tax_id in ((1, 2, LOWER), (2, 3, OTHER_LOWER)):
        run(text("INSERT INTO batch (id, batch_no, org_id, company_id, tax_id, seller_name, data_type, method, kinds, "
                 "type_codes, status, total, success, filtered_lines, creator_name, created_at) VALUES (:n, :no, 1, "
                 ":company, :tax_id, 'c', 'invoices', 'file', '[]', '[]', 'succeeded', 1, 1, 0, 'u', "
                 "'2024-04-01 00:00:00')"), {"n": n, "no": f"B{n}", "company": company, "tax_id": tax_id})
    for key, seller, buyer in (("24330000000000000001", LOWER, BUYER.lower()),
                               ("24330000000000000002", CANONICAL, None)):
        run(text("INSERT INTO invoice (key, tax_id, buyer_tax_id, digital_number, issued_at, month, amount, tax, "
                 "type_name, type_code, status, is_red, source, batch_id, synced_at) VALUES (:key, :seller, :buyer, "
                 ":key, '2024-03-05 10:00:00', '2024-03', 100, 13, '数电发票（普通发票）', '82', '正常', false, "
                 "'file', 1, '2024-04-01 00:00:00')"), {"key": key, "seller": seller, "buyer": buyer})
    run(text("INSERT INTO invoice_line (invoice_key, line_no, name, amount, tax, is_discount) "
             "VALUES ('24330000000000000001', 1, '*服务*服务费', 100, 13, false)"))
    run(text("INSERT INTO invoice_source (invoice_key, source, tax_id, month, first_seen_at, last_seen_at, "
             "buyer_tax_id) VALUES ('24330000000000000001', 'file', :seller, '2024-03', '2024-04-01 00:00:00', "
             "'2024-04-01 00:00:00', :buyer)"), {"seller": LOWER, "buyer": BUYER.lower()})
    # each spelling's kept figures counted only its own invoice, and look current
    figures = ('{"cells": {"82": [1, null, null, 0, 1]}, "types": {"数电发票（普通发票）": [1, 0, 0]}, '
               '"amount": 10000, "tax": 1300, "lines": 0}')
    run(text("INSERT INTO invoice_month_summary (tax_id, month, version, stats_version, stats) VALUES "
             "(:lower, '2024-03', 4, 4, :figures), (:canonical, '2024-03', 2, 2, :figures)"),
        {"lower": LOWER, "canonical": CANONICAL, "figures": figures})
    run(text("INSERT INTO quota_use (id, tax_id, invoice_month, type_code, requested_on, requested_at, serial, "
             "fetched) VALUES (1, :lower, '2024-03', '81', '2024-04-01', '2024-04-01 09:00:00', 'S1', true), "
             "(2, :canonical, '2024-03', '81', '2024-04-01', '2024-04-01 09:00:00', NULL, false), "
             "(3, :lower, '2024-03', '82', '2024-04-01', '2024-04-01 09:00:00', 'S3', false)"),
        {"lower": LOWER, "canonical": CANONICAL})
    db.session.commit()


def _rows(sql: str) -> list[tuple]:
    return [tuple(row) for row in db.session.execute(text(sql))]


def test_tax_ids_become_canonical_and_two_spellings_merge_without_losing_data(empty_database):
    from webapp.pool import find_invoice, invoice_lines, pool_stats

    app = create_app({"SQLALCHEMY_DATABASE_URI": empty_database})
    with app.app_context():
        upgrade(revision="0014")
        _seed_spellings()
        upgrade()
        db.session.remove()
        # one company: the canonical row, with the RPA account and 乐企 of the other spelling
        assert [(i, t, bool(leqi), account) for i, t, leqi, account in _rows(
            "SELECT id, tax_id, leqi_enabled, etax_account FROM company ORDER BY id")] == [
            (1, CANONICAL, True, "acct"), (3, OTHER_LOWER.upper(), False, None)]
        assert _rows("SELECT user_id, company_id FROM user_company ORDER BY user_id") == [(1, 1), (2, 1)]
        assert _rows("SELECT company_id, tax_id FROM batch ORDER BY id") == [(1, CANONICAL), (3, OTHER_LOWER.upper())]
        assert _rows("SELECT tax_id, buyer_tax_id FROM invoice ORDER BY key") == [(CANONICAL, BUYER), (CANONICAL, None)]
        assert _rows("SELECT tax_id, buyer_tax_id FROM invoice_source") == [(CANONICAL, BUYER)]
        assert [(t, m) for t, m, _ in _rows("SELECT tax_id, month, version FROM invoice_month_summary")] == [
            (CANONICAL, "2024-03")]
        assert [(t, c, s, bool(f)) for t, c, s, f in _rows(
            "SELECT tax_id, type_code, serial, fetched FROM quota_use ORDER BY type_code")] == [
            (CANONICAL, "81", "S1", True), (CANONICAL, "82", "S3", False)]
        # what a user then sees: both invoices under the company, counted again
        stats = pool_stats(CANONICAL)
        assert stats["invoices"] == 2 and stats["amount"] == "200.00"
        assert find_invoice("24330000000000000001", [CANONICAL]).buyer_tax_id == BUYER
        assert [line.name for line in invoice_lines("24330000000000000001")] == ["*服务*服务费"]
        db.session.remove()
        db.engine.dispose()


def test_one_tax_id_spelled_twice_in_two_orgs_stops_the_migration_saying_why(empty_database, capfd):
    app = create_app({"SQLALCHEMY_DATABASE_URI": empty_database})
    with app.app_context():
        upgrade(revision="0014")
        db.session.execute(text("INSERT INTO org (id, name, timezone) VALUES (1, 'o', 'Asia/Shanghai'), "
                                "(2, 'p', 'Asia/Shanghai')"))
        db.session.execute(text("INSERT INTO company (id, org_id, tax_id, name, leqi_enabled) VALUES "
                                "(1, 1, :canonical, 'a', false), (2, 2, :lower, 'b', false)"),
                           {"canonical": CANONICAL, "lower": LOWER})
        db.session.commit()
        with pytest.raises(SystemExit):  # flask db upgrade logs the reason and exits 1
            upgrade()
        said = capfd.readouterr().err
        assert "在多个组织中以不同写法登记" in said and "再执行 flask db upgrade" in said
        db.session.remove()
        assert _rows("SELECT tax_id FROM company ORDER BY id") == [(CANONICAL,), (LOWER,)]
        db.session.remove()
        db.engine.dispose()


TOLL, STRANGER = "数电发票（通行费发票）", "数电发票（某种新票种）"


def test_toll_invoices_imported_without_a_code_get_59_and_their_months_are_counted_again(empty_database):
    """0020: a 0019 pool holds 数电发票（通行费发票） without a code (imported before the kind was known);
    upgraded, the 票种 filter finds them and the month's kept figures count them under 59, while a
    kind no table knows keeps its name and no code. Downgraded, the codes are gone again."""
    from webapp.pool.month_stats import month_stats
    from webapp.pool.search import PoolFilter, pool_query

    app = create_app({"SQLALCHEMY_DATABASE_URI": empty_database})
    with app.app_context():
        upgrade(revision="0019")
        _seed_kinds()
        upgrade()
        db.session.remove()
        assert _rows("SELECT key, type_code FROM invoice ORDER BY key") == [
            ("26370000000000000001", "59"), ("26370000000000000002", None), ("26370000000000000003", "82")]
        summaries = _rows("SELECT month, version FROM invoice_month_summary ORDER BY month")
        assert summaries == [("2026-01", 4), ("2026-02", 3)]
        found = db.session.scalars(pool_query(PoolFilter(type_code="59"), ["T1"])).all()
        assert [invoice.key for invoice in found] == ["26370000000000000001"]
        assert set(month_stats("T1", "2026-01", "2026-01")["2026-01"]["cells"]) == {"59", ""}
        downgrade(revision="0019")
        db.session.remove()
        assert _rows("SELECT type_code FROM invoice ORDER BY key") == [(None,), (None,), ("82",)]
        db.session.remove()
        db.engine.dispose()


def _seed_kinds() -> None:
    """A 0019 pool: in 2026-01 a toll invoice and an invoice of a kind no table knows, both without a
    code; in 2026-02 a 数电 normal invoice; each month's figures kept and current."""
    run = db.session.execute
    run(text("INSERT INTO org (id, name, timezone) VALUES (1, 'o', 'Asia/Shanghai')"))
    run(text("INSERT INTO company (id, org_id, tax_id, name, leqi_enabled) VALUES (1, 1, 'T1', 'c', false)"))
    run(text("INSERT INTO batch (id, batch_no, org_id, company_id, tax_id, seller_name, data_type, method, kinds, "
             "type_codes, status, total, success, filtered_lines, creator_name, created_at) VALUES (1, 'B1', 1, 1, "
             "'T1', 'c', 'invoices', 'file', '[]', '[]', 'succeeded', 3, 3, 0, 'u', '2026-03-01 00:00:00')"))
    for n, name, code, month in ((1, TOLL, None, "2026-01"), (2, STRANGER, None, "2026-01"),
                                 (3, "数电发票（普通发票）", "82", "2026-02")):
        run(text("INSERT INTO invoice (key, tax_id, digital_number, issued_at, month, amount, tax, type_name, "
                 "type_code, status, is_red, source, batch_id, synced_at) VALUES (:key, 'T1', :key, :issued, :month, "
                 "100, 3, :name, :code, '正常', false, 'file', 1, '2026-03-01 00:00:00')"),
            {"key": f"263700000000000000{n:02d}", "issued": f"{month}-05 10:00:00", "month": month, "name": name,
             "code": code})
    run(text("INSERT INTO invoice_month_summary (tax_id, month, version, stats_version, stats) VALUES "
             "('T1', '2026-01', 3, 3, '{}'), ('T1', '2026-02', 3, 3, '{}')"))
    db.session.commit()


# ---- 0021: reason codes beside the stored messages (docs/rules.md, 失败与等待原因) ----

# (batch's data type, month's status, message as an older version stored it, the code, its parameters,
# what the batch page then says of the month)
OLD_MESSAGES = [
    ("invoices", "waiting", "乐企额度：数电发票（增值税专用发票）已达下载次数限制，将于 2026-01-06 自动执行",
     "quota_wait", {"kinds": "数电发票（增值税专用发票）", "day": "2026-01-06"}, "等待额度"),
    ("invoices", "waiting", "乐企额度不足，已排队", "quota_wait", {"kinds": "", "day": "2026-01-07"}, "等待额度"),
    ("invoices", "waiting", "RPA正在准备下载数据，稍后自动再次获取（不占用下载次数）", "data_preparing",
     {"channel": "RPA"}, "等待税局数据"),
    ("usage", "waiting", "等待发票数据：同月发票数据同步完成后自动执行", "usage_wait", None, "等待发票数据"),
    ("invoices", "failed", "乐企：服务暂时不可用（HTTP 503）（已尝试 3 次，服务仍不可用，请稍后重试）",
     "channel_unavailable", {"channel": "乐企", "attempts": 3},
     "乐企服务暂时不可用（已自动重试 3 次），请稍后点击“重试”"),
    ("invoices", "failed", "RPA：请求超时", "channel_timeout", {"channel": "RPA"}, "连接RPA超时，请稍后点击“重试”"),
    ("invoices", "failed", "乐企：接口返回 HTTP 401，请检查通道地址和凭证配置", "login_failed", {"channel": "乐企"},
     "乐企拒绝了请求，请管理员在“系统管理 → 企业信息”中检查通道地址和凭证"),
    ("invoices", "failed", "RPA：返回内容不是有效的 JSON，请检查通道地址配置", "channel_bad_answer", {"channel": "RPA"},
     "RPA返回的数据无法识别，请联系管理员检查通道配置"),
    ("invoices", "failed", "乐企：未开通乐企归集能力", "channel_refused",
     {"channel": "乐企", "message": "未开通乐企归集能力"}, "乐企拒绝了请求：未开通乐企归集能力"),
    ("invoices", "failed", "内部错误：KeyError，详情见服务器日志", "internal_error", {"error": "KeyError"},
     "系统处理出错，请稍后点击“重试”；若反复出现，请联系管理员"),
    ("invoices", "failed",
     "系统处理出错，请稍后点击“重试”；若反复出现，请联系管理员（内部错误 ValueError，详情见服务器日志）",
     "internal_error", {"error": "ValueError"}, "系统处理出错，请稍后点击“重试”；若反复出现，请联系管理员"),
    ("invoices", "failed", "执行进程连续 3 次意外中断（已自动重试 2 次），请联系管理员查看服务器日志后点击重试",
     "process_died", {"times": 3, "retries": 2},
     "执行进程连续 3 次意外中断（已自动重试 2 次），请联系管理员查看服务器日志后点击重试"),
    ("invoices", "failed",
     "发票 24330000000000000001 已作为销方 T9 的发票存在于发票池，与本次数据的销方 T1 不一致，本月未导入", "rejected",
     {"message": "发票 24330000000000000001 已作为销方 T9 的发票存在于发票池，与本次数据的销方 T1 不一致，本月未导入"},
     "发票 24330000000000000001 已作为销方 T9 的发票存在于发票池，与本次数据的销方 T1 不一致，本月未导入"),
    ("invoices", "terminated", "已被用户终止", "terminated", None, "已被用户终止"),
]
OLD_BATCHES = [  # (a failed batch's method, its message, its code, its parameters)
    ("file", "文件解析失败，请确认是电子税局导出的原始文件（BadZipFile）", "file_unreadable", {"error": "BadZipFile"}),
    ("file", "解析结果无法写入服务器磁盘（No space left on device），请联系管理员后重试", "disk_full",
     {"why": "No space left on device"}),
    ("file", "文件解析进程连续 3 次意外中断，文件可能过大或格式异常，请确认是电子税局导出的原始文件", "parse_crashed",
     {"times": 3}),
    ("download", "乐企只能下载企业授权乐企能力（2024-03-15）之后开具的发票，2024-01 至 2024-02 共 2 个月未申请",
     "leqi_not_authorised", {"since": "2024-03-15", "first": "2024-01", "last": "2024-02", "count": 2}),
    ("file", "文件为空，请重新从电子税局“全量发票查询”导出后上传", "file_refused",
     {"message": "文件为空，请重新从电子税局“全量发票查询”导出后上传"}),
    ("download", "乐企 returned something new", "rejected", {"message": "乐企 returned something new"}),
]


def _seed_messages() -> None:
    """A 0020 database: a batch per old month message (its month holding it) and failed batches with theirs."""
    run = db.session.execute
    run(text("INSERT INTO org (id, name, timezone) VALUES (1, 'o', 'Asia/Shanghai')"))
    run(text("INSERT INTO company (id, org_id, tax_id, name, leqi_enabled) VALUES (1, 1, 'T1', 'c', false)"))
    batches = [(data_type, "download", "syncing", None) for data_type, *_ in OLD_MESSAGES] + [
        ("invoices", method, "failed", message) for method, message, *_ in OLD_BATCHES]
    for n, (data_type, method, status, message) in enumerate(batches, 1):
        run(text("INSERT INTO batch (id, batch_no, org_id, company_id, tax_id, seller_name, data_type, method, kinds, "
                 "type_codes, status, total, success, filtered_lines, error, creator_name, created_at) "
                 "VALUES (:n, :no, 1, 1, 'T1', 'c', :data_type, :method, '[]', '[]', :status, 0, 0, 0, :error, 'u', "
                 "'2026-01-05 00:00:00')"), {"n": n, "no": f"B{n}", "data_type": data_type, "method": method,
                                             "status": status, "error": message})
    for n, (_, status, message, *_) in enumerate(OLD_MESSAGES, 1):
        run(text("INSERT INTO subtask (id, batch_id, period, status, total, success, filtered_lines, attempts, error, "
                 "not_before) VALUES (:n, :n, '2025-12', :status, 0, 0, 0, 0, :error, :until)"),
            {"n": n, "status": status, "error": message,
             "until": f"2026-01-{n + 5:02d} 00:00:00" if status == "waiting" else None})
    db.session.commit()


def test_stored_messages_get_their_reason_codes_and_read_as_before(empty_database):
    from webapp.batches import subtask_label
    from webapp.batches.facts import row_reason
    from webapp.models import Subtask

    app = create_app({"SQLALCHEMY_DATABASE_URI": empty_database})
    with app.app_context():
        upgrade(revision="0020")
        _seed_messages()
        upgrade()
        db.session.remove()
        months = db.session.scalars(select(Subtask).order_by(Subtask.id)).all()
        assert [(m.error_code, m.error_params) for m in months] == [(code, params)
                                                                    for *_, code, params, _ in OLD_MESSAGES]
        for month, (_, status, message, _, _, shown) in zip(months, OLD_MESSAGES, strict=True):
            assert month.error == message  # the full text stays for 详情
            assert (subtask_label(month) if status == "waiting" else row_reason(month)[0]) == shown
        failed = db.session.scalars(select(Batch).where(Batch.status == "failed").order_by(Batch.id)).all()
        assert [(b.error_code, b.error_params) for b in failed] == [(code, params) for *_, code, params in OLD_BATCHES]
        assert db.session.scalar(text("SELECT count(*) FROM batch WHERE error_code IS NOT NULL")) == len(OLD_BATCHES)
        db.session.remove()
        downgrade(revision="0020")
        assert _rows("SELECT error FROM subtask ORDER BY id") == [(message,) for _, _, message, *_ in OLD_MESSAGES]
        db.session.remove()
        db.engine.dispose()
