"""审计日志 (README, Access): every action worth answering for is on record — logins, batches,
schedules, companies, users, grants, settings — on an admin page with filters and an xlsx export,
private to the org, and kept at least a year."""
from __future__ import annotations

import io
from datetime import datetime, timedelta

from openpyxl import load_workbook
from sqlalchemy import select

from webapp.accounts import audit
from webapp.extensions import db
from webapp.models import AuditLog, Batch

from .conftest import login
from .security_support import D, X, cast  # noqa: F401  (cast: a fixture)


def _rows(app) -> list[tuple[str, str, str]]:
    """(user, action, target) of every row, oldest first."""
    with app.app_context():
        try:
            return [(r.username, r.action, r.target)
                    for r in db.session.scalars(select(AuditLog).order_by(AuditLog.id))]
        finally:
            db.session.remove()


def _page(admin, **filters) -> str:
    return admin.get("/admin/audit", query_string=filters).text


def test_logins_are_recorded_with_address_and_reason(cast, client):
    client.post("/login", data={"username": "caiwu", "password": "wrong-password"})
    client.post("/login", data={"username": "nobody", "password": "x"})
    login(client)
    rows = _rows(cast)
    assert ("caiwu", "login.failure", "caiwu") in rows and ("nobody", "login.failure", "nobody") in rows
    assert ("caiwu", "login.success", "caiwu") in rows
    admin = login(cast.test_client(), "admin", "admin123")
    page = _page(admin, action="login.failure")
    assert "登录失败" in page and "用户名或密码错误" in page and "127.0.0.1" in page
    assert "登录成功" not in page.split('id="audit-table"')[1]


def _download_batch(app, client, tax_id: str) -> str:
    """A 乐企 download of 2026-10 through the import dialog; its batch number."""
    assert client.post("/batches/import", data={"method": "download", "data_type": "invoices", "channel": "leqi",
                                                "tax_ids": [tax_id], "period_unit": "month", "month_from": "2026-10",
                                                "month_to": "2026-10", "kinds": ["81"]}).status_code == 204
    with app.app_context():
        batch_no = db.session.scalar(select(Batch.batch_no))
        db.session.remove()
    return batch_no


def test_batches_schedules_and_admin_changes_are_recorded(cast, client):
    batch_no = _download_batch(cast, login(client), X["tax_id"])
    client.post("/batches/terminate", data={"batch_no": batch_no})
    client.post("/batches/retry", data={"batch_no": batch_no})

    admin = login(cast.test_client(), "admin", "admin123")
    admin.post("/automation/new", data={"invoices": "1"})
    schedule_id = _schedule_id(cast)
    schedule = f"计划 #{schedule_id}"
    for action in ("run", "disable", "enable", "delete"):
        assert admin.post(f"/automation/{schedule_id}/{action}").status_code == 200
    admin.post("/admin/settings", data={"error_goods": "详见销货清单,测试商品"})
    admin.post("/admin/companies", data={"tax_id": D["tax_id"], "name": "保密子公司甲（更名）", "receipt_channel": ""})
    admin.post("/admin/users", data={"username": "sun", "password": "secret123", "role": "finance",
                                     "grants": [X["tax_id"]], "active": "y"})
    rows = _rows(cast)
    for expected in [("caiwu", "batch.create", batch_no), ("caiwu", "batch.terminate", batch_no),
                     ("caiwu", "batch.retry", batch_no), ("admin", "schedule.create", schedule),
                     ("admin", "schedule.run", schedule), ("admin", "schedule.disable", schedule),
                     ("admin", "schedule.enable", schedule), ("admin", "schedule.delete", schedule),
                     ("admin", "settings.change", "errorGoodsNames"), ("admin", "company.save", D["tax_id"]),
                     ("admin", "user.save", "sun"), ("admin", "grants.change", "sun")]:
        assert expected in rows, expected
    page = _page(admin)
    for label in ("创建导入批次", "终止导入批次", "重试导入批次", "执行自动更新计划", "删除自动更新计划",
                  "修改参数配置", "保存企业信息", "修改授权企业", "测试商品"):
        assert label in page, label
    _details_read_in_chinese(admin)


def _details_read_in_chinese(admin) -> None:
    """The 详情 column, on the page and in its xlsx, names every key and value as the product says
    it: no `data_type：usage`, `active：True` or `trigger：manual`."""
    import re

    table = _page(admin).split('id="audit-table"')[1]
    cells = re.findall(r"<td>([^<]*：[^<]*)</td>", table)
    sheet = load_workbook(io.BytesIO(admin.get("/admin/audit/export").data)).active
    exported = [row[4] for row in sheet.iter_rows(min_row=2, values_only=True) if row[4]]
    assert cells and exported
    for text in cells + exported:
        assert not re.search(r"(^|；)[A-Za-z_]+：", text), text
        assert not re.search(r"\b(True|False|None|leqi|rpa|file|download|invoices|usage|finance|manual)\b",
                             text), text
    joined = "\n".join(cells)
    for said in ("导入方式：税局下载", "下载通道：乐企", "数据类型：发票数据", "角色：财务", "启用：是",
                 "触发方式：手动", "计划创建人：admin"):
        assert said in joined, said


def _schedule_id(app) -> int:
    from webapp.models import Schedule

    with app.app_context():
        try:
            return db.session.scalar(select(Schedule.id))
        finally:
            db.session.remove()


def test_scheduled_runs_are_recorded_as_the_system_for_the_creator(cast, runner):
    runner.invoke(args=["autoupdate", "create", "--as", "admin"])
    runner.invoke(args=["autoupdate", "run-due", "--now", "2026-12-05T00:10"])
    with cast.app_context():
        run = db.session.scalar(select(AuditLog).filter_by(action="schedule.run"))
        assert run.username == "系统" and run.org_id is not None and '"creator": "admin"' in run.details
        assert '"period": "2026-11"' in run.details
        db.session.remove()


def _seed(app, entries):
    """Audit rows at given ages, as if recorded back then."""
    with app.app_context():
        for username, action, at in entries:
            app.config["CLOCK_NOW"] = at
            from webapp.models import User

            user = db.session.scalar(select(User).filter_by(username=username))
            audit.record(action, username, actor=user)
        db.session.remove()


def test_filters_by_user_action_and_dates_and_exports_xlsx(cast):
    _seed(cast, [("caiwu", "login.success", datetime(2026, 3, 1, 9)),
                 ("admin", "login.success", datetime(2026, 3, 2, 9)),
                 ("caiwu", "batch.create", datetime(2026, 3, 3, 9)),
                 ("caiwu", "login.success", datetime(2026, 4, 1, 9))])
    admin = login(cast.test_client(), "admin", "admin123")
    table = _page(admin, username="caiwu", action="login.success", date_from="2026-02-01", date_to="2026-03-31")
    table = table.split('id="audit-table"')[1]
    assert "2026-03-01 09:00:00" in table
    assert "2026-03-02" not in table and "2026-03-03" not in table and "2026-04-01" not in table
    response = admin.get("/admin/audit/export", query_string={"username": "caiwu", "date_to": "2026-03-31"})
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    sheet = load_workbook(io.BytesIO(response.data)).active
    rows = [tuple(cell.value for cell in row) for row in sheet.iter_rows()]
    assert rows[0] == ("时间", "用户", "操作", "对象", "详情", "地址")
    assert [(r[0], r[1], r[2]) for r in rows[1:]] == [("2026-03-03 09:00:00", "caiwu", "创建导入批次"),
                                                     ("2026-03-01 09:00:00", "caiwu", "登录成功")]


def test_export_text_is_never_a_formula(cast, client):
    client.post("/login", data={"username": '=HYPERLINK("http://x","y")', "password": "x"})
    with cast.app_context():
        cast.config.pop("CLOCK_NOW")
        from webapp.models import Org

        demo = db.session.scalar(select(Org.id).filter_by(name="演示组织"))
        db.session.execute(AuditLog.__table__.update().values(org_id=demo))  # show it to the demo org
        db.session.commit()
        db.session.remove()
    admin = login(cast.test_client(), "admin", "admin123")
    exported = admin.get("/admin/audit/export", query_string={"action": "login.failure"}).data
    sheet = load_workbook(io.BytesIO(exported)).active
    cells = [row[1] for row in sheet.iter_rows(min_row=2)]
    assert [(cell.value, cell.data_type) for cell in cells] == [('=HYPERLINK("http://x","y")', "s")]


def test_the_page_is_for_admins_of_the_org_only(cast):
    _seed(cast, [("caiwu", "batch.create", datetime(2026, 11, 1, 9))])
    assert login(cast.test_client()).get("/admin/audit").status_code == 403
    assert login(cast.test_client()).get("/admin/audit/export").status_code == 403
    li = login(cast.test_client(), "li", "secret123")  # admin of 其他组织
    assert "caiwu" not in _page(li).split('id="audit-table"')[1]
    exported = load_workbook(io.BytesIO(li.get("/admin/audit/export").data)).active
    assert "caiwu" not in str([c.value for r in exported.iter_rows() for c in r])
    admin = login(cast.test_client(), "admin", "admin123")
    assert '<a href="/admin/audit" class="active">审计日志</a>' in admin.get("/admin/audit").text


def test_rows_are_kept_a_year_and_purged_only_after(cast, runner):
    now = datetime(2026, 11, 20, 10, 0)
    _seed(cast, [("caiwu", "login.success", now - timedelta(days=366)),
                 ("caiwu", "batch.create", now - timedelta(days=364)),
                 ("caiwu", "batch.retry", now - timedelta(days=1))])
    cast.config["CLOCK_NOW"] = now
    result = runner.invoke(args=["audit", "purge"])
    assert result.exit_code == 0 and '"removed": 1' in result.stdout
    assert [a for _, a, _ in _rows(cast)] == ["batch.create", "batch.retry"]
    with cast.app_context():
        assert audit.purge(now) == 0  # nothing younger than a year is ever removed
        db.session.remove()


def test_an_admin_reads_only_rows_about_companies_granted_to_him(cast, client, runner):
    """(README, Access) admin2 of the same org, not granted company D, sees nothing of D's batches
    in 审计日志 or its export; admin, granted D, sees them all."""
    from webapp import accounts
    from webapp.models import User
    from webapp.transactions import write_transaction

    with cast.app_context():
        with write_transaction():
            org = db.session.scalar(select(User).filter_by(username="admin")).org
            accounts.set_grants(accounts.save_user("admin2", org, "admin", "secret123"), [X["tax_id"]])
        db.session.remove()
    admin = login(cast.test_client(), "admin", "admin123")
    batch_no = _download_batch(cast, admin, D["tax_id"])
    admin.post("/batches/terminate", data={"batch_no": batch_no})
    admin.post("/admin/companies", data={"tax_id": D["tax_id"], "name": "保密子公司甲（更名）", "receipt_channel": ""})

    def seen(viewer) -> str:
        sheet = load_workbook(io.BytesIO(viewer.get("/admin/audit/export").data)).active
        return _page(viewer) + str([cell for row in sheet.iter_rows(values_only=True) for cell in row])

    assert batch_no in seen(admin) and D["tax_id"] in seen(admin)
    other = seen(login(cast.test_client(), "admin2", "secret123"))
    assert batch_no not in other and D["tax_id"] not in other and "保密子公司甲" not in other
    assert "登录成功" in other  # the rows about no company are still there
