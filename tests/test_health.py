"""系统状态: `flask doctor`, GET /healthz, the 系统状态 page, the demo notice and the CLI's sandbox mark,
each against the real parts (Redis, database, a real RQ worker registration, the scheduler's cycle)."""
from __future__ import annotations

import json
import time

from redis import Redis
from rq import Worker

from tests.conftest import login
from webapp.extensions import db
from webapp.health.checks import CHECKS, processes_file

SANDBOX_NOTICE = "演示环境：下载通道连接内置沙箱税局，数据不是真实税局数据"


def doctor(runner, *args):
    """`flask doctor` as an operator runs it."""
    return runner.invoke(args=["doctor", *args])


def worker_and_scheduler_alive(app) -> Worker:
    """A real RQ worker registered on the queue with a fresh heartbeat, and one scheduler cycle run."""
    from jobs import queue
    from jobs.scheduler import ReconcilingScheduler

    with app.app_context():
        worker = Worker([queue.get_queue()], connection=queue.redis_connection())
        worker.register_birth()
        worker.heartbeat()
        ReconcilingScheduler(queue=queue.get_queue(), connection=queue.redis_connection()).enqueue_jobs()
        db.session.remove()
    return worker


def write_processes(app, **processes) -> None:
    """The supervisor's file, as the process supervisor writes it."""
    with app.app_context():
        path = processes_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"updated": time.time(), "processes": processes}))


def test_doctor_names_every_check_and_fails_without_a_worker(app, runner):
    """No worker and no scheduler running: a fault each, exit status 1; the sandbox is a warning."""
    result = doctor(runner)
    assert result.exit_code == 1
    for check in CHECKS:
        assert check.label in result.output
    assert "后台任务进程 1 分钟内没有心跳" in result.output
    assert "演示环境" in result.output and "故障" in result.output
    answer = json.loads(doctor(runner, "--json").stdout)
    assert answer["status"] == "fault" and answer["sandbox"] is True
    assert set(answer["checks"]) == {c.name for c in CHECKS}
    assert answer["checks"]["worker"]["status"] == "fault"
    assert answer["checks"]["leqi"]["status"] == answer["checks"]["rpa"]["status"] == "warning"
    assert answer["checks"]["database"]["status"] == "ok" and answer["checks"]["redis"]["status"] == "ok"
    assert answer["checks"]["processes"]["status"] == "ok"
    assert "未由进程守护程序运行" in answer["checks"]["processes"]["message"]


def test_doctor_exits_zero_on_warnings_once_worker_and_scheduler_beat(app, runner):
    """With a live worker and a scheduler cycle, only the sandbox warnings remain: exit status 0."""
    worker = worker_and_scheduler_alive(app)
    try:
        result = doctor(runner, "--json")
        answer = json.loads(result.stdout)
        assert result.exit_code == 0, answer
        assert answer["status"] == "warning"
        assert answer["checks"]["worker"]["status"] == answer["checks"]["scheduler"]["status"] == "ok"
    finally:
        with app.app_context():
            worker.register_death()


def test_supervisor_file_fatal_is_a_fault_and_restarts_a_warning(app, runner):
    """processes.json: FATAL = fault; three restarts within the hour = warning; all running = ok."""
    worker = worker_and_scheduler_alive(app)
    now = time.time()
    try:
        write_processes(app, web={"state": "RUNNING", "restarts": [], "since": now},
                        worker={"state": "FATAL", "restarts": [now - 30, now - 20, now - 10], "since": now})
        answer = json.loads(doctor(runner, "--json").stdout)
        assert answer["checks"]["processes"]["status"] == "fault"
        assert "worker" in answer["checks"]["processes"]["message"]
        write_processes(app, web={"state": "RUNNING", "restarts": [now - 7200, now - 300, now - 200, now - 100],
                                  "since": now})
        result = doctor(runner, "--json")
        answer = json.loads(result.stdout)
        assert result.exit_code == 0
        assert answer["checks"]["processes"]["status"] == "warning"
        assert "一小时内重启" in answer["checks"]["processes"]["message"]
        write_processes(app, web={"state": "RUNNING", "restarts": [now - 7200], "since": now})
        assert json.loads(doctor(runner, "--json").stdout)["checks"]["processes"]["status"] == "ok"
    finally:
        with app.app_context():
            worker.register_death()


def test_healthz_needs_no_login_answers_fast_and_shows_no_secrets(app, database_url):
    """A monitor's probe: 503 on a fault (an unreachable 乐企 and no worker), each check by name, no
    URL, password, connection string or traceback, answered within two seconds."""
    app.config.update(LEQI_BASE_URL="http://leqi-user:leqi-pass@127.0.0.1:9", LEQI_APP_SECRET="s3cr3t-app")
    started = time.monotonic()
    response = app.test_client().get("/healthz")
    assert time.monotonic() - started < 2
    assert response.status_code == 503
    answer = response.get_json()
    assert answer["checks"]["leqi"]["status"] == "fault"
    assert "乐企" in answer["checks"]["leqi"]["message"]
    text = response.get_data(as_text=True)
    for secret in ("leqi-pass", "s3cr3t-app", "127.0.0.1:9", database_url, "Traceback", app.config["SECRET_KEY"]):
        assert secret not in text


def test_healthz_is_200_when_nothing_is_at_fault(app):
    worker = worker_and_scheduler_alive(app)
    try:
        response = app.test_client().get("/healthz")
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["status"] == "warning"
    finally:
        with app.app_context():
            worker.register_death()


def test_status_page_is_for_admins_and_says_mail_is_off(app, client):
    """系统管理 → 系统状态: the checks, refreshable by htmx, and 未配置 SMTP when no SMTP is set."""
    login(client, "caiwu", "caiwu123")
    assert client.get("/admin/status").status_code == 403
    client.post("/logout")
    login(client, "admin", "admin123")
    page = client.get("/admin/users").get_data(as_text=True)
    assert "系统状态" in page
    page = client.get("/admin/status").get_data(as_text=True)
    assert "未配置 SMTP，不发送邮件" in page
    for check in CHECKS:
        assert check.label in page
    partial = client.get("/admin/status", headers={"HX-Request": "true", "HX-Target": "health-checks"})
    assert partial.get_data(as_text=True).lstrip().startswith('<div id="health-checks"')


def test_every_page_says_it_is_a_demo_while_a_channel_is_the_sandbox(app, client):
    """The sandbox (the default) puts the demo notice on every page; real URLs for both take it off."""
    login(client, "admin", "admin123")
    for url in ("/batches", "/pool", "/summary", "/automation", "/admin/companies", "/admin/status"):
        assert SANDBOX_NOTICE in client.get(url).get_data(as_text=True), url
    app.config.update(LEQI_BASE_URL="https://leqi.example.invalid", RPA_BASE_URL="sandbox")
    assert SANDBOX_NOTICE in client.get("/batches").get_data(as_text=True)
    app.config.update(RPA_BASE_URL="https://rpa.example.invalid")
    assert SANDBOX_NOTICE not in client.get("/batches").get_data(as_text=True)


def test_every_cli_json_answer_says_sandbox(app, runner):
    """An object gets "sandbox": true, a list's objects each get it; with real channels, no mark."""
    from tests.conftest import DEMO_TAX_ID

    answer = json.loads(runner.invoke(args=["pool", "stats", "--tax-id", DEMO_TAX_ID]).stdout)
    assert answer["sandbox"] is True
    assert json.loads(runner.invoke(args=["audit", "purge"]).stdout)["sandbox"] is True
    app.config.update(LEQI_BASE_URL="https://leqi.example.invalid", RPA_BASE_URL="https://rpa.example.invalid")
    assert "sandbox" not in json.loads(runner.invoke(args=["pool", "stats", "--tax-id", DEMO_TAX_ID]).stdout)


def test_admin_sets_a_users_email_for_alerts(app, client):
    """用户与授权 has an e-mail field; the address is kept on the user."""
    from webapp.models import User

    login(client, "admin", "admin123")
    assert "邮箱" in client.get("/admin/users?username=admin").get_data(as_text=True)
    response = client.post("/admin/users", data={"username": "admin", "password": "", "role": "admin",
                                                 "active": "y", "email": "boss@example.com"})
    assert response.status_code == 302
    bad = client.post("/admin/users",
                      data={"username": "admin", "role": "admin", "active": "y", "email": "not-an-address"})
    assert "邮箱格式不正确" in bad.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(db.select(User.email).filter_by(username="admin")) == "boss@example.com"
    from tests.conftest import cli_json

    runner = app.test_cli_runner()
    added = cli_json(runner, "user", "add", "ops", "--password", "secret123", "--role", "admin", "--email",
                     "ops@example.com")
    assert added["email"] == "ops@example.com"
    refused = runner.invoke(args=["user", "add", "ops2", "--password", "secret123", "--email", "nope"])
    assert refused.exit_code == 1 and "邮箱格式不正确" in refused.output


def test_a_real_channel_is_probed_over_http_without_spending_quota(app, runner):
    """Both channels pointing at a tax bureau served over real HTTP (the sandbox as a server): each is
    reachable with its credentials, no application is spent, and the product is no longer a demo."""
    import threading

    from werkzeug.serving import make_server

    from channels.sandbox import create_app as create_sandbox
    from tests.conftest import SandboxControl

    server = make_server("127.0.0.1", 0, create_sandbox({"SANDBOX_DB": app.config["SANDBOX_DB"]}), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        app.config.update(LEQI_BASE_URL=url, RPA_BASE_URL=url)
        answer = json.loads(doctor(runner, "--json").stdout)
        assert "sandbox" not in answer
        for name, label in (("leqi", "乐企"), ("rpa", "RPA")):
            assert answer["checks"][name]["status"] == "ok", answer["checks"][name]
            assert answer["checks"][name]["message"] == f"{label}服务可连接，凭证有效"
        assert SandboxControl(app.config["SANDBOX_DB"]).sent("PLFPXZSQ") == 0
    finally:
        server.shutdown()
        thread.join(10)


def test_healthz_answers_in_time_with_redis_frozen_and_adds_no_threads(database_url, tmp_path):
    """A frozen Redis (SIGSTOP: the kernel takes connections, nobody answers) makes the checks that
    need it faults (unreachable, or timed out); /healthz still answers within its time box, and
    polling it does not pile up threads (a hung check is waited on, not started again)."""
    import os
    import signal
    import threading

    from tests.conftest import dispose, make_app
    from tests.servers import redis_server
    from webapp.health import CHECK_TIMEOUT

    with redis_server(tmp_path) as url:
        app = make_app(database_url, url, tmp_path / "data")
        pid = int(Redis.from_url(url).info("server")["process_id"])
        os.kill(pid, signal.SIGSTOP)
        try:
            client = app.test_client()
            timings, threads = [], []
            for _ in range(3):
                started = time.monotonic()
                response = client.get("/healthz")
                timings.append(time.monotonic() - started)
                threads.append(threading.active_count())
            assert response.status_code == 503
            checks = response.get_json()["checks"]
            assert checks["redis"]["status"] == checks["worker"]["status"] == "fault"
            assert checks["database"]["status"] == "ok" and checks["disk"]["status"] == "ok"
            assert max(timings) < CHECK_TIMEOUT + 1.5
            assert max(threads[1:]) <= threads[0]
        finally:
            os.kill(pid, signal.SIGCONT)
            dispose(app)


def test_a_database_behind_the_head_migration_is_a_fault(tmp_path, redis_url):
    """A database migrated only part of the way (code newer than its schema): doctor says which
    revision it is at, which it should be, and the command to run; exit status 1."""
    from flask_migrate import upgrade

    from wsgi import create_app

    url = f"sqlite:///{tmp_path / 'old.db'}"
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": redis_url, "DATA_DIR": str(tmp_path / "data")})
    with app.app_context():
        upgrade(revision="0014")
        db.engine.dispose()
    result = app.test_cli_runner().invoke(args=["doctor", "--json"])
    assert result.exit_code == 1
    database = json.loads(result.stdout)["checks"]["database"]
    assert database["status"] == "fault" and database["code"] == "db_behind"
    assert "当前 0014" in database["message"] and "db upgrade" in database["message"]
