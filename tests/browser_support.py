"""Shared by the real-browser tests: the live server (app on a free port, a real `flask worker`, one
sandbox tax bureau for both), pytest-playwright's browser and pages set to Debian's Chromium and that server,
and the helpers a user's steps are written with. A plugin of tests/conftest.py: test modules take the fixtures
(live_server, page, new_page, and pytest-playwright's own) by name, without importing them."""
from __future__ import annotations

import json
import os
import subprocess
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select
from werkzeug.serving import make_server

from webapp.extensions import db

from .conftest import DEMO_TAX_ID, ROOT, SAMPLES, SandboxControl, dispose, make_app
from .servers import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SAMPLE_2024 = SAMPLES / "etax-export-2024.xlsx"
EXPECTED_2024 = json.loads((SAMPLES / "etax-export-2024.expected.json").read_text())  # beside it, from the builder
FINISH_TIMEOUT = 60_000  # ms: a whole import by the worker
DEMO_NAME = "杭州示例科技有限公司"
OTHER_TAX_ID, OTHER_NAME = "91110000MA00000001", "北京别家贸易有限公司"

expect.set_options(timeout=10_000)


@dataclass
class LiveServer:
    """The served app: its origin, the app object (for set-up in-process), its data folder and sandbox."""

    url: str
    app: object
    data_dir: Path
    sandbox: SandboxControl = field(repr=False)
    reconciler: threading.Thread = field(repr=False)

    def _reconciling(self) -> None:
        """Run the scheduler's reconciler from the first real batch on (not for the batches a test writes
        by hand in a state no job backs, which the reconciler would rightly recover or fail)."""
        if not self.reconciler.is_alive():
            self.reconciler.start()

    def _user_and_company(self, username: str):
        from webapp.models import Company, User

        user = db.session.scalar(select(User).filter_by(username=username))
        company = db.session.scalar(select(Company).filter_by(tax_id=DEMO_TAX_ID))
        return user, company

    def import_file(self, path: Path = SAMPLE_2024, username: str = "caiwu") -> str:
        """Create a file batch as the dialog would (the worker then runs it); returns its batch number."""
        from webapp.batches import create_file_batch, receive_file

        self._reconciling()
        with self.app.app_context():
            user, company = self._user_and_company(username)
            batch_no = create_file_batch(user, company, receive_file(company, path), path.name).batch_no
            db.session.remove()
        return batch_no

    def download(self, months: list[str], type_codes: list[str], channel: str = "rpa",
                 data_type: str = "invoices", username: str = "caiwu") -> str:
        """Create a 税局下载 batch as the dialog would (the worker then runs it); returns its batch number."""
        from webapp.batches import create_download_batches

        self._reconciling()
        with self.app.app_context():
            user, company = self._user_and_company(username)
            [batch] = create_download_batches(user, [company], channel=channel, data_type=data_type,
                                              months=months, type_codes=type_codes)
            batch_no = batch.batch_no
            db.session.remove()
        return batch_no

    def rows(self, statement) -> list[tuple]:
        """Rows read from the app's database, to work out what a user should see."""
        with self.app.app_context():
            try:
                return [tuple(row) for row in db.session.execute(statement)]
            finally:
                db.session.remove()

    def add_user_of_other_company(self, username: str = "lisi", password: str = "lisi1234") -> None:
        """A finance user granted only a second company of the same org."""
        from webapp import accounts
        from webapp.transactions import write_transaction

        with self.app.app_context():
            with write_transaction():
                org = accounts.get_or_create_org(accounts.DEFAULT_ORG)
                accounts.save_company(OTHER_TAX_ID, OTHER_NAME, org)
                user = accounts.save_user(username, org, "finance", password)
                accounts.set_grants(user, [OTHER_TAX_ID])
            db.session.remove()


def _reconcile_until(app, stop: threading.Event) -> None:
    """The scheduler's reconciling cycle (jobs.reconciler), as in production, without its backups and mails:
    work Redis lost on a loaded machine is queued again after the reconciler's grace, not left 待同步."""
    from jobs import reconciler

    while not stop.wait(5):
        with app.app_context():
            reconciler.reconcile()
            db.session.remove()


@pytest.fixture
def live_server(database_url, redis_url, tmp_path):
    """The app with CSRF enabled on a free port, plus `flask worker` sharing its database, queue, files and
    sandbox tax bureau (the worker's SANDBOX_DB defaults to $DATA_DIR/sandbox.db, the file the app is given),
    and the scheduler's reconciler in a thread once the test starts a real batch (LiveServer._reconciling).

    The worker keeps its default channel backoff, so the sandbox answers at once (processing_polls 0)."""
    data = tmp_path / "data"
    app = make_app(database_url, redis_url, data, WTF_CSRF_ENABLED=True)
    sandbox = SandboxControl(app.config["SANDBOX_DB"])
    sandbox.control(processing_polls=0)
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stop_reconciling = threading.Event()
    reconciling = threading.Thread(target=_reconcile_until, args=(app, stop_reconciling), daemon=True)
    log = open(tmp_path / "worker.log", "wb")
    worker = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "flask"), "--app", "wsgi", "worker"], cwd=ROOT, stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "DATA_DIR": str(data)},
    )
    yield LiveServer(f"http://127.0.0.1:{server.server_port}", app, data, sandbox, reconciling)
    stop_reconciling.set()
    if reconciling.is_alive():
        reconciling.join(30)
    worker.terminate()
    try:
        worker.wait(20)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
    log.close()
    server.shutdown()
    thread.join(10)
    dispose(app)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright launches Debian's Chromium (never a downloaded browser), headless unless --headed."""
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture
def browser_context_args(browser_context_args, live_server):
    """Every context (pytest-playwright's `context`, `page` and `new_context`) opens on the live server, in Chinese."""
    return {**browser_context_args, "base_url": live_server.url, "locale": "zh-CN"}


@pytest.fixture
def new_page(new_context):
    """A factory of pages, each in its own browser context (its own cookies); options go to the context."""
    return lambda **options: new_context(**options).new_page()


def login(page: Page, username: str = "caiwu", password: str = "caiwu123") -> Page:
    """Log in through the login form."""
    page.goto("/login")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(password)
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_role("button", name="退出")).to_be_visible()
    return page


def batch_row(page: Page, batch_no: str):
    return page.locator(f"tr#batch-{batch_no}")


def column(page: Page, row, header: str):
    """The cell of a batch-list row under the column headed `header`."""
    headers = [text.strip() for text in page.locator("table.batches thead th").all_inner_texts()]
    return row.locator("td").nth(headers.index(header))


def wait_until_finished(page: Page, batch_no: str) -> None:
    """Open the list and let the row's own polling bring it to 全部执行成功."""
    page.goto("/batches")
    expect(batch_row(page, batch_no)).to_contain_text("全部执行成功", timeout=FINISH_TIMEOUT)


def open_import_dialog(page: Page):
    """Click 导入 and return the modal it opens."""
    page.get_by_role("button", name="导入", exact=True).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    return dialog


@contextmanager
def dialog_rerendered(page: Page):
    """Wait until the change made in the block has re-rendered the import dialog (htmx swaps it anew)
    and htmx has settled it: the new form's hx-trigger="change" handlers are bound only in the settle
    step (20 ms after the swap), so a change made before then would be lost."""
    page.locator("#import-form").evaluate("""form => {
        form.dataset.stale = 'yes';
        delete document.body.dataset.dialogSettled;
        // on #modal, the swap's target: rows polling elsewhere on the page settle too
        document.getElementById('modal').addEventListener(
            'htmx:afterSettle', () => { document.body.dataset.dialogSettled = 'yes' }, {once: true});
    }""")
    yield
    expect(page.locator("#import-form:not([data-stale])")).to_have_count(1)
    expect(page.locator("body[data-dialog-settled]")).to_have_count(1)


def confirm_in_dialog(page: Page, question: str) -> None:
    """Answer the product's own question (not the browser's confirm box) with 确定."""
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(question)
    dialog.get_by_role("button", name="确定").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
