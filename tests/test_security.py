"""Security (README, Access): 自动更新 limited to admins and to granted companies, login
throttling against a real Redis, no user-name enumeration by timing, sessions that end at logout and
password change, secure cookies on request, and headers that keep data out of caches and referrers."""
from __future__ import annotations

import json
import time

import pytest
from redis import Redis
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.models import Batch, Company, Schedule, User

from .conftest import dispose, login, make_app
from .security_support import D, O, X, cast  # noqa: F401  (cast: a fixture)


def _schedule_by_admin(app, client) -> int:
    """The admin (granted X and D) creates a schedule on the page; its id."""
    login(client, "admin", "admin123")
    assert "已创建自动更新计划" in client.post("/automation/new", data={"invoices": "1"}).text
    client.post("/logout")
    return _db(app, lambda: db.session.scalar(select(Schedule.id)))


def _db(app, read):
    """A read in a fresh app context (never sharing a session with the requests under test)."""
    with app.app_context():
        try:
            return read()
        finally:
            db.session.remove()


def _counts(app) -> tuple[int, int]:
    return _db(app, lambda: tuple(db.session.scalar(select(func.count()).select_from(m)) for m in (Batch, Schedule)))


def _batch_tax_ids(app) -> list[str]:
    return _db(app, lambda: sorted(db.session.scalars(select(Batch.tax_id))))


# ---- 自动更新: who may do what, and which companies a run reaches (README, Access: 自动更新) ----

def test_finance_user_sees_only_their_companies_on_automation_and_cannot_act(cast, client):
    schedule_id = _schedule_by_admin(cast, client)
    login(client, "admin", "admin123")
    assert "创建 2 个导入批次" in client.post(f"/automation/{schedule_id}/run").text  # X and D
    admin_page = client.get("/automation").text
    assert D["tax_id"] in admin_page and X["tax_id"] in admin_page
    d_batch = _db(cast, lambda: db.session.scalar(select(Batch.batch_no).filter_by(tax_id=D["tax_id"])))
    assert d_batch in admin_page
    client.post("/logout")

    login(client)  # caiwu: granted X only
    page = client.get("/automation").text
    assert X["tax_id"] in page
    assert D["tax_id"] not in page and D["name"] not in page and d_batch not in page
    assert "仅管理员可操作" in page and "<button" not in page.split("id=\"schedules\"")[1]
    assert "仅管理员" in client.get("/automation/new").text
    before = _counts(cast)
    for action in ("run", "disable", "enable", "delete"):
        response = client.post(f"/automation/{schedule_id}/{action}")
        assert response.status_code == 403 and D["tax_id"] not in response.text
    assert client.post("/automation/new", data={"invoices": "1", "usage": "1"}).status_code == 403
    assert _counts(cast) == before
    assert _db(cast, lambda: db.session.get(Schedule, schedule_id).enabled)


def test_cli_refuses_schedules_from_finance_users_and_lists_only_their_companies(cast, runner, client):
    result = runner.invoke(args=["autoupdate", "create", "--as", "caiwu"])
    assert result.exit_code == 1 and "仅管理员" in result.output
    assert runner.invoke(args=["autoupdate", "create", "--as", "admin"]).exit_code == 0
    listed = runner.invoke(args=["autoupdate", "list", "--as", "caiwu"]).stdout
    assert X["tax_id"] in listed and D["tax_id"] not in listed
    assert D["tax_id"] in runner.invoke(args=["autoupdate", "list", "--as", "admin"]).stdout


def test_scheduled_runs_reach_only_the_creators_companies(cast, runner):
    """An admin granted only X creates the schedule: the due run downloads X, never D."""
    assert runner.invoke(args=["user", "add", "zhao", "--password", "secret123", "--role", "admin",
                               "--grant", X["tax_id"]]).exit_code == 0
    made = json.loads(runner.invoke(args=["autoupdate", "create", "--as", "zhao"]).stdout)
    assert made["companies"] == {"leqi": [X["tax_id"]]}
    [run] = json.loads(runner.invoke(args=["autoupdate", "run-due", "--now", "2026-12-05T00:10"]).stdout)
    assert len(run["batches"]) == 1 and _batch_tax_ids(cast) == [X["tax_id"]]


def test_a_manual_run_reaches_only_companies_the_runner_is_granted_too(cast, client, runner):
    schedule_id = _schedule_by_admin(cast, client)  # created by admin: X and D
    runner.invoke(args=["user", "add", "zhao", "--password", "secret123", "--role", "admin", "--grant", X["tax_id"]])
    login(client, "zhao", "secret123")
    assert "创建 1 个导入批次" in client.post(f"/automation/{schedule_id}/run").text
    assert _batch_tax_ids(cast) == [X["tax_id"]]


# ---- login throttling and enumeration (README, Access: Login) ----

def _login(client, username, password):
    return client.post("/login", data={"username": username, "password": password})


def test_wrong_passwords_lock_the_user_out_with_a_chinese_message(app, client, redis_url):
    for _ in range(5):
        assert "用户名或密码错误" in _login(client, "caiwu", "wrong-password").text
    locked = _login(client, "caiwu", "caiwu123")  # even the right password, while locked
    assert locked.status_code == 429
    assert "登录失败次数过多" in locked.text and "分钟后再试" in locked.text
    assert client.get("/batches").status_code == 302  # not logged in
    assert login(app.test_client(), "admin", "admin123")  # other users are not affected
    assert Redis.from_url(redis_url).keys("invoice-sync:login*")  # counted in the shared Redis


def test_an_office_behind_one_address_is_not_locked_out_by_other_users_failures(app, client):
    """(README, Access) 30+ failures from one address (a NAT: the whole office), with other user names;
    caiwu's right password still logs in, and admin's too."""
    for n in range(35):
        assert _login(client, f"guess{n}", "password").status_code == 200
    assert login(client)
    assert login(app.test_client(), "admin", "admin123")


def test_an_address_past_its_limit_gets_one_guess_per_user_name(app, client):
    """The attacker's rate stays bounded: past the address limit each wrong password locks the user
    name it named, so the right one found on a later guess is refused for the window."""
    app.config.update(LOGIN_LIMIT_PER_ADDRESS="8 per 15 minutes")
    for n in range(8):
        _login(client, f"guess{n}", "password")
    guesses = [_login(client, "caiwu", f"guess-{n}").status_code for n in range(20)]
    assert guesses == [200] + [429] * 19  # one checked guess, then caiwu's name is locked
    locked = _login(client, "caiwu", "caiwu123")
    assert locked.status_code == 429 and "登录失败次数过多" in locked.text
    assert _login(client, "admin", "wrong").status_code == 200  # each name: one guess, then locked
    assert _login(client, "admin", "admin123").status_code == 429


def _failures_by_address(app) -> list[str | None]:
    from webapp.models import AuditLog

    return _db(app, lambda: db.session.scalars(select(AuditLog.address).where(AuditLog.action == "login.failure")
                                               .order_by(AuditLog.id)).all())


@pytest.mark.parametrize("value", ["-1", "one", "11"])
def test_a_bad_trusted_proxies_setting_stops_the_start_saying_what_it_should_be(monkeypatch, value):
    from settings import trusted_proxies

    monkeypatch.setenv("TRUSTED_PROXIES", value)
    with pytest.raises(ValueError, match="TRUSTED_PROXIES 应为 0 到 10 的整数"):
        trusted_proxies()


@pytest.mark.parametrize("proxies", [0, 1])
def test_x_forwarded_for_names_the_address_only_behind_trusted_proxies(database_url, redis_url, tmp_path, proxies):
    """TRUSTED_PROXIES=1: the client a proxy names is the address counted (and audited), so another
    office behind the same proxy is not suspect; 0: the header is ignored, whatever a client writes."""
    app = make_app(database_url, redis_url, tmp_path / "data", TRUSTED_PROXIES=proxies,
                   LOGIN_LIMIT_PER_ADDRESS="3 per 15 minutes")
    try:
        client = app.test_client()

        def attempt(forwarded_for, username, password):
            return client.post("/login", data={"username": username, "password": password},
                               headers={"X-Forwarded-For": forwarded_for}).status_code

        for n in range(3):
            attempt("203.0.113.7", f"guess{n}", "password")
        attempt("198.51.100.2", "caiwu", "typo")  # one slip of caiwu's, from another client
        expected = "203.0.113.7" if proxies else "127.0.0.1"
        assert _failures_by_address(app)[0] == expected
        # behind the proxy caiwu's client is not the suspect one: his slip did not lock him
        assert attempt("198.51.100.2", "caiwu", "caiwu123") == (302 if proxies else 429)
    finally:
        dispose(app)


def test_a_successful_login_clears_the_users_failures(app, client):
    for _ in range(4):
        _login(client, "caiwu", "wrong-password")
    login(client)
    client.post("/logout")
    for _ in range(4):
        _login(client, "caiwu", "wrong-password")
    assert login(client)


def test_throttling_keeps_working_when_redis_is_down(app, client):
    app.config.update(REDIS_URL="redis://127.0.0.1:1/0")  # nothing listens there
    for _ in range(5):
        assert _login(client, "caiwu", "wrong-password").status_code == 200
    assert _login(client, "caiwu", "caiwu123").status_code == 429
    assert login(app.test_client(), "admin", "admin123")


def test_unknown_users_take_as_long_as_known_ones(app, client):
    app.config.update(LOGIN_LIMIT_PER_USER="1000 per minute", LOGIN_LIMIT_PER_ADDRESS="1000 per minute")

    def timed(username):
        started = time.perf_counter()
        _login(client, username, "wrong-password")
        return time.perf_counter() - started

    timed("caiwu"), timed("nobody")  # warm up
    pairs = [(timed("caiwu"), timed("no-such-user")) for _ in range(9)]  # interleaved: same load on both
    known, unknown = (min(times) for times in zip(*pairs, strict=False))  # the fastest run is the least disturbed
    print(f"wrong password: known user {known * 1000:.0f} ms, unknown user {unknown * 1000:.0f} ms")
    assert unknown > known * 0.7, (known, unknown)


def test_an_inactive_user_cannot_log_in(app, client, runner):
    runner.invoke(args=["user", "add", "gone", "--password", "secret123", "--grant", X["tax_id"]])
    with app.app_context():
        from webapp.models import User

        db.session.scalar(select(User).filter_by(username="gone")).active = False
        db.session.commit()
        db.session.remove()
    assert "用户名或密码错误" in _login(client, "gone", "secret123").text


# ---- sessions, cookies and headers (README, Access: Sessions) ----

def _copy_session(source, app):
    copy = app.test_client()
    copy.set_cookie("session", source.get_cookie("session").value)
    return copy


def test_a_copied_cookie_stops_working_after_logout(app, client):
    login(client)
    copy = _copy_session(client, app)
    assert copy.get("/batches").status_code == 200
    client.post("/logout")
    response = copy.get("/batches")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert copy.get("/pool/export").status_code == 302


def test_a_password_change_ends_the_users_other_sessions(app, client):
    login(client)
    admin = login(app.test_client(), "admin", "admin123")
    assert client.get("/batches").status_code == 200
    saved = admin.post("/admin/users?username=caiwu", data={"username": "caiwu", "password": "new-secret-1",
                                                            "role": "finance", "grants": [X["tax_id"]], "active": "y"})
    assert saved.status_code == 302
    assert client.get("/batches").status_code == 302
    assert login(app.test_client(), "caiwu", "new-secret-1")
    assert admin.get("/admin/users").status_code == 200  # the admin's own session is untouched


def test_an_admin_changing_their_own_password_stays_logged_in_here_only(app, client):
    login(client, "admin", "admin123")
    copy = _copy_session(client, app)
    client.post("/admin/users?username=admin", data={"username": "admin", "password": "new-admin-1",
                                                     "role": "admin", "grants": [X["tax_id"]], "active": "y"})
    assert client.get("/admin/users").status_code == 200
    assert copy.get("/admin/users").status_code == 302


def test_cookie_secure_is_set_by_cookie_secure_1(monkeypatch, database_url, redis_url, tmp_path):
    monkeypatch.setenv("COOKIE_SECURE", "1")
    app = make_app(database_url, redis_url, tmp_path / "https")
    try:
        response = app.test_client().post("/login", data={"username": "caiwu", "password": "caiwu123"})
        assert "Secure" in response.headers["Set-Cookie"]
    finally:
        dispose(app)


def test_cookies_are_not_secure_by_default(client):
    response = client.post("/login", data={"username": "caiwu", "password": "caiwu123"})
    assert "Secure" not in response.headers["Set-Cookie"] and "HttpOnly" in response.headers["Set-Cookie"]


def test_data_pages_and_exports_are_never_cached_nor_referred(client):
    login(client)
    for url in ("/batches", "/pool", "/pool/export", "/pool/coverage", "/automation"):
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.headers["Cache-Control"] == "no-store", url
        assert response.headers["Referrer-Policy"] == "same-origin", url
        response.close()  # the export is streamed: closing it ends its request, as a server does
    assert "no-store" not in client.get("/static/app.css").headers.get("Cache-Control", "")


def test_other_org_admin_never_sees_this_orgs_audit_or_companies(cast):
    li = login(cast.test_client(), "li", "secret123")
    for url in ("/admin/companies", "/admin/users", "/admin/audit", "/automation"):
        text = li.get(url).text
        assert X["tax_id"] not in text and D["tax_id"] not in text and X["name"] not in text, url
    assert O["tax_id"] in li.get("/admin/companies").text


@pytest.mark.parametrize("url, data, message", [
    ("/admin/companies", {"tax_id": O["tax_id"], "name": "改名"}, f"税号 {O['tax_id']} 不能在本组织使用"),
    ("/admin/companies", {"tax_id": "12345", "name": "某公司"}, "税号格式不正确：12345"),
    ("/admin/companies", {"tax_id": "91330100MA2NEWCO1X", "name": "  "}, "企业名称不能为空"),
    ("/admin/users", {"username": "li", "password": "secret123", "role": "finance"},
     "用户名 li 不可用，请换一个用户名"),
    ("/admin/users", {"username": "zhao", "role": "finance", "active": "y"}, "新用户须设置密码"),
    ("/admin/users", {"username": "zhao", "password": "12345", "role": "finance", "active": "y"}, "密码至少6位"),
    ("/admin/users", {"username": "zhao", "password": "secret123", "role": "boss", "active": "y"},
     "角色须为 admin 或 finance"),
    ("/admin/users", {"username": "zhao", "password": "secret123", "role": "finance", "grants": [O["tax_id"]]},
     f"本组织没有税号为 {O['tax_id']} 的企业"),
    ("/admin/users", {"username": "admin", "role": "admin", "grants": [X["tax_id"]]}, "不能停用自己"),
    ("/admin/settings", {"error_goods": "详见销货清单，原价合计"}, "请用英文逗号分隔各项"),
    ("/admin/companies", {"tax_id": "91330100MA2NEWCO1X", "name": "某公司", "leqi_since": "2024-13-45"},
     "日期格式不正确：2024-13-45（应为 YYYY-MM-DD）"),
])
def test_admin_forms_refuse_in_chinese_and_change_nothing(cast, url, data, message):
    """Another org's tax ID or user name, a malformed value or deactivating oneself: the page says why
    in Chinese as an alert and nothing is saved."""
    admin = login(cast.test_client(), "admin", "admin123")
    response = admin.post(url, data=data)
    assert response.status_code == 200 and f'<p class="error" role="alert">{message}' in response.text
    assert _db(cast, lambda: (db.session.scalar(select(Company.name).filter_by(tax_id=O["tax_id"])),
                              db.session.scalar(select(func.count()).select_from(User).filter_by(username="zhao")),
                              db.session.scalar(select(User.active).filter_by(username="admin")))
               ) == (O["name"], 0, True)
