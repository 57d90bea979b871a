"""The sandbox's mutable state, in one small SQLite file shared by every process that serves it.

The product's RQ worker forks per job and each job may build its own in-process sandbox app, so
nothing here lives in memory: companies, 乐企 applications, RPA tasks, the quota log, request
counters and control settings are rows. Each thread of each process keeps its own connection,
WAL lets readers and one writer overlap, busy_timeout queues writers instead of failing them,
and the quota check and the accepted application are written in one IMMEDIATE transaction, so
concurrent applications can never exceed a quota.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path

from channels.sandbox.data import DEFAULT_COMPANIES, PROFILES

BUSY_TIMEOUT_MS = 30_000
DAILY_LIMIT = 1
CURRENT_MONTH_LIMIT = 5
PAST_MONTH_LIMIT = 3
_INHERITED: list[sqlite3.Connection] = []  # connections a forked child got from its parent (see _connect)

SCHEMA = """
CREATE TABLE IF NOT EXISTS companies (
    tax_id TEXT PRIMARY KEY, name TEXT NOT NULL, leqi_enabled INTEGER NOT NULL DEFAULT 0,
    leqi_since TEXT, rpa_account TEXT, rpa_password TEXT, volume TEXT NOT NULL, industry TEXT,
    updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS applications (
    lsh TEXT PRIMARY KEY, tax_id TEXT NOT NULL, month TEXT NOT NULL, fplx TEXT NOT NULL,
    kprqq TEXT NOT NULL, kprqz TEXT NOT NULL, applied_on TEXT NOT NULL, created_at TEXT NOT NULL,
    polls INTEGER NOT NULL DEFAULT 0, ready_after INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rpa_tasks (
    task_id TEXT PRIMARY KEY, tax_id TEXT NOT NULL, kprqq TEXT NOT NULL, kprqz TEXT NOT NULL,
    fplx TEXT NOT NULL, applied_on TEXT NOT NULL, created_at TEXT NOT NULL,
    polls INTEGER NOT NULL DEFAULT 0, ready_after INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS quota_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT, tax_id TEXT NOT NULL, inv_month TEXT NOT NULL,
    fplx TEXT NOT NULL, applied_on TEXT NOT NULL, applied_at TEXT NOT NULL, lsh TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS quota_unit ON quota_log (tax_id, inv_month, fplx);
CREATE TABLE IF NOT EXISTS counters (
    metric TEXT NOT NULL, channel TEXT NOT NULL, service TEXT NOT NULL, tax_id TEXT NOT NULL,
    code TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (metric, channel, service, tax_id, code));
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sequences (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

# Control settings: name -> default. An override set through the control API is stored in the
# settings table and wins over the app's config, which wins over these defaults.
DEFAULT_SETTINGS: dict[str, object] = {
    "latency_ms": 0, "fail_rate": 0.0, "fail_services": [], "processing_polls": 1, "today": None,
    # the bureau writes seller and buyer tax IDs (xfsh, gfsh) in lower case, as some exports and
    # front ends do: for testing that the host stores them canonically (README, Access: a tax ID)
    "lowercase_ids": False,
}
COMPANY_FIELDS = ("name", "leqi_enabled", "leqi_since", "rpa_account", "rpa_password", "volume", "industry")


# ------------------------------------------------------------------------------------------
# Pure rules and validation
# ------------------------------------------------------------------------------------------


def quota_refusal(inv_month: str, fplx: str, today: date, used: list[date]) -> str | None:
    """Why one more 乐企 application for (invoicing month, type) is refused today, or None.

    The three rules (docs/quota.md, The rules), per (tax ID, invoicing month, type): 1 a day; 5 in a calendar
    month while the invoicing month is the current one; 3 in a calendar month for a past one.
    Kept independent of the product's own channels/quota_rules.py so the sandbox can catch its bugs.
    """
    unit = f"（开票月份 {inv_month}，发票类型 {fplx}）"
    if sum(1 for d in used if d == today) >= DAILY_LIMIT:
        return f"下载次数超出限制：同一开票月份、同一发票类型的销项发票每天只能申请1次{unit}"
    this_month = sum(1 for d in used if (d.year, d.month) == (today.year, today.month))
    if inv_month == today.strftime("%Y-%m"):
        if this_month >= CURRENT_MONTH_LIMIT:
            return f"下载次数超出限制：当前开票月份、同一发票类型的销项发票每月最多申请5次{unit}"
    elif this_month >= PAST_MONTH_LIMIT:
        return f"下载次数超出限制：同一历史开票月份、同一发票类型的销项发票每月最多申请3次{unit}"
    return None


def parse_day(value: object) -> date:
    """A day written YYYY-MM-DD or YYYYMMDD (the control API accepts both)."""
    text = str(value or "").strip()
    if len(text) == 8 and text.isdigit():
        text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return date.fromisoformat(text)


def normalise_settings(changes: dict) -> dict:
    """Validated control settings; None removes an override. ValueError names the bad one."""
    out: dict[str, object] = {}
    for name, value in changes.items():
        if name not in DEFAULT_SETTINGS:
            raise ValueError(f"unknown setting {name!r}; known: {', '.join(DEFAULT_SETTINGS)}")
        out[name] = None if value is None else _setting(name, value)
    return out


# The numeric settings: their type and the range they must lie in.
_NUMBERS = {"latency_ms": (int, 0, 60_000), "fail_rate": (float, 0.0, 1.0), "processing_polls": (int, 0, 1000)}


def _setting(name: str, value: object) -> object:
    """One setting's value in its stored form."""
    if name in _NUMBERS:
        kind, low, high = _NUMBERS[name]
        number = kind(value)
        if not low <= number <= high:
            raise ValueError(f"{name} must be within {low:g}..{high:g}")
        return number
    if name == "lowercase_ids":
        if not isinstance(value, bool):
            raise ValueError("lowercase_ids must be true or false")
        return value
    if name == "fail_services":
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ValueError("fail_services must be a list of service names")
        return [str(item).strip() for item in items if str(item).strip()]
    return parse_day(value).isoformat()  # today


def normalise_company(fields: dict) -> dict:
    """A company registration's fields in stored form; ValueError names the bad one."""
    tax_id = str(fields.get("tax_id") or "").strip().upper()
    if not (15 <= len(tax_id) <= 20 and tax_id.isalnum()):
        raise ValueError("tax_id must be 15-20 letters or digits")
    out: dict[str, object] = {"tax_id": tax_id}
    for name in COMPANY_FIELDS:
        if name in fields:
            out[name] = _company_field(name, fields[name])
    return out


def _company_field(name: str, value: object) -> object:
    """One company field in stored form."""
    if name == "leqi_enabled":
        return 1 if value in (True, 1, "1", "true", "True", "on", "yes") else 0
    if name == "leqi_since":
        return None if value in (None, "") else parse_day(value).isoformat()
    if name == "volume":
        if isinstance(value, str) and value in PROFILES:
            return json.dumps(value)
        if isinstance(value, dict) and all(isinstance(v, int) and v >= 0 for v in value.values()):
            return json.dumps(value)
        raise ValueError(f"volume must be one of {', '.join(PROFILES)} or {{type: monthly count}}")
    if name == "name" and not str(value or "").strip():
        raise ValueError("name must not be empty")
    return None if value is None else str(value).strip()


# ------------------------------------------------------------------------------------------
# The store
# ------------------------------------------------------------------------------------------


class SandboxState:
    """All sandbox state in the SQLite file at `path`; any number of instances may share it."""

    def __init__(self, path: str | Path, defaults: dict | None = None) -> None:
        """Create the file, schema and default companies if needed; `defaults` are config settings."""
        self.path = str(path)
        self.defaults = {**DEFAULT_SETTINGS, **normalise_settings(defaults or {})}
        self._local = threading.local()
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._initialise()

    # -- connections ------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """This thread's connection, opened on its first call in this process and then kept.

        One per call cost most of a served page: each was the file's last connection when it
        closed, so SQLite checkpointed the WAL into the file (an fsync) and deleted it, four times
        a request. A connection inherited across fork is neither used nor closed in the child
        (SQLite forbids both; closing it could checkpoint under the parent): it is kept aside.
        """
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            if getattr(local, "db", None) is not None:
                _INHERITED.append(local.db)
            local.db, local.pid = self._open(), os.getpid()
        return local.db

    def _open(self) -> sqlite3.Connection:
        """A new connection to the file, in autocommit (transactions are begun by _write)."""
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                             check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA synchronous = NORMAL")  # per connection: WAL without an fsync per counted request
        return db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """An IMMEDIATE transaction: the write lock is taken first, so a read-check-write is atomic."""
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A connection for a read (autocommit: a consistent snapshot per statement is enough)."""
        yield self._connect()

    def _initialise(self) -> None:
        """WAL once per file, the schema, and the default companies on first use."""
        with self._read() as db:
            for _ in range(50):
                try:
                    db.execute("PRAGMA journal_mode = WAL")
                    break
                except sqlite3.OperationalError:  # another process is switching it right now
                    time.sleep(0.05)
            db.execute("PRAGMA synchronous = NORMAL")
        with self._write() as db:
            for statement in filter(str.strip, SCHEMA.split(";")):  # executescript would COMMIT
                db.execute(statement)
            db.execute("INSERT OR IGNORE INTO sequences (name, value) VALUES ('failure', 0)")
            seeded = db.execute("SELECT 1 FROM settings WHERE name = '_seeded'").fetchone()
            if not seeded:
                for company in DEFAULT_COMPANIES:
                    self._upsert(db, normalise_company(company))
                db.execute("INSERT INTO settings (name, value) VALUES ('_seeded', 'true')")

    # -- companies --------------------------------------------------------------------------

    def company(self, tax_id: str) -> dict | None:
        """A registered company, or None (the bureau answers code 11 for it)."""
        with self._read() as db:
            row = db.execute("SELECT * FROM companies WHERE tax_id = ?", (tax_id,)).fetchone()
        return _company(row) if row else None

    def companies(self) -> list[dict]:
        """Every registered company."""
        with self._read() as db:
            return [_company(row) for row in db.execute("SELECT * FROM companies ORDER BY tax_id")]

    def save_company(self, fields: dict) -> dict:
        """Register a company or update the fields given; returns it as stored."""
        fields = normalise_company(fields)
        with self._write() as db:
            self._upsert(db, fields)
        return self.company(fields["tax_id"])

    @staticmethod
    def _upsert(db: sqlite3.Connection, fields: dict) -> None:
        """Insert with defaults for what is missing, or update only the fields given."""
        exists = db.execute("SELECT 1 FROM companies WHERE tax_id = ?", (fields["tax_id"],)).fetchone()
        now = datetime.now().isoformat(timespec="seconds")
        if exists:
            names = [n for n in COMPANY_FIELDS if n in fields]
            if names:
                assignments = ", ".join(f"{n} = ?" for n in names)
                db.execute(f"UPDATE companies SET {assignments}, updated_at = ? WHERE tax_id = ?",
                           [fields[n] for n in names] + [now, fields["tax_id"]])
            return
        row = {"name": f"沙箱企业{fields['tax_id'][-4:]}", "leqi_enabled": 0, "leqi_since": None,
               "rpa_account": None, "rpa_password": None, "volume": json.dumps("small"), "industry": None,
               **fields, "updated_at": now}
        columns = ", ".join(row)
        db.execute(f"INSERT INTO companies ({columns}) VALUES ({', '.join('?' for _ in row)})", list(row.values()))

    # -- settings ---------------------------------------------------------------------------

    def settings(self) -> dict:
        """Effective control settings: overrides, then the app's config, then the defaults."""
        with self._read() as db:
            rows = db.execute("SELECT name, value FROM settings WHERE name NOT LIKE '\\_%' ESCAPE '\\'").fetchall()
        return {**self.defaults, **{row["name"]: json.loads(row["value"]) for row in rows}}

    def update_settings(self, changes: dict) -> dict:
        """Store overrides (None removes one) and return the effective settings."""
        changes = normalise_settings(changes)
        with self._write() as db:
            for name, value in changes.items():
                if value is None:
                    db.execute("DELETE FROM settings WHERE name = ?", (name,))
                else:
                    db.execute("INSERT INTO settings (name, value) VALUES (?, ?) "
                               "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (name, json.dumps(value)))
        return self.settings()

    def today(self) -> date:
        """The sandbox's clock: the `today` override when set, else the real date."""
        override = self.settings().get("today")
        return date.fromisoformat(override) if override else date.today()

    def next_failure_ticket(self) -> int:
        """The next number of the shared failure-injection sequence (deterministic across processes)."""
        with self._write() as db:
            db.execute("UPDATE sequences SET value = value + 1 WHERE name = 'failure'")
            return db.execute("SELECT value FROM sequences WHERE name = 'failure'").fetchone()[0]

    # -- 乐企 applications and quota ----------------------------------------------------------

    def apply(self, lsh: str, tax_id: str, kprqq: date, kprqz: date, fplx: str, today: date,
              ready_after: int) -> str | None:
        """Record an accepted application, or return the quota refusal; one transaction for both."""
        inv_month = kprqq.strftime("%Y-%m")  # the quota's own month sums, independent of channels/ (see quota_refusal)
        now = datetime.now().isoformat(timespec="seconds")
        with self._write() as db:
            used = [date.fromisoformat(row[0]) for row in db.execute(
                "SELECT applied_on FROM quota_log WHERE tax_id = ? AND inv_month = ? AND fplx = ?",
                (tax_id, inv_month, fplx))]
            refusal = quota_refusal(inv_month, fplx, today, used)
            if refusal:
                return refusal
            db.execute("INSERT INTO quota_log (tax_id, inv_month, fplx, applied_on, applied_at, lsh) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (tax_id, inv_month, fplx, today.isoformat(), now, lsh))
            db.execute("INSERT INTO applications (lsh, tax_id, month, fplx, kprqq, kprqz, applied_on, "
                       "created_at, ready_after) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (lsh, tax_id, inv_month, fplx, kprqq.isoformat(), kprqz.isoformat(),
                        today.isoformat(), now, ready_after))
        return None

    def application(self, lsh: str) -> dict | None:
        """An application by serial number, without counting a poll."""
        with self._read() as db:
            row = db.execute("SELECT * FROM applications WHERE lsh = ?", (lsh,)).fetchone()
        return dict(row) if row else None

    def poll_application(self, lsh: str) -> dict | None:
        """Count one feedback poll and return the application with its polls so far."""
        return self._poll("applications", "lsh", lsh)

    # -- RPA tasks --------------------------------------------------------------------------

    def create_task(self, task_id: str, tax_id: str, kprqq: date, kprqz: date, types: list[str],
                    today: date, ready_after: int) -> None:
        """Record an RPA download task; it reads as running for `ready_after` status polls."""
        with self._write() as db:
            db.execute("INSERT INTO rpa_tasks (task_id, tax_id, kprqq, kprqz, fplx, applied_on, created_at, "
                       "ready_after) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (task_id, tax_id, kprqq.isoformat(), kprqz.isoformat(), json.dumps(types),
                        today.isoformat(), datetime.now().isoformat(timespec="seconds"), ready_after))

    def task(self, task_id: str) -> dict | None:
        """A task by id, without counting a poll."""
        with self._read() as db:
            row = db.execute("SELECT * FROM rpa_tasks WHERE task_id = ?", (task_id,)).fetchone()
        return _task(row) if row else None

    def poll_task(self, task_id: str) -> dict | None:
        """Count one status poll and return the task with its polls so far."""
        row = self._poll("rpa_tasks", "task_id", task_id)
        return _task(row) if row else None

    def _poll(self, table: str, column: str, value: str) -> dict | None:
        """Increment and read `polls` of one row atomically (both tables count polls alike)."""
        with self._write() as db:
            db.execute(f"UPDATE {table} SET polls = polls + 1 WHERE {column} = ?", (value,))
            row = db.execute(f"SELECT * FROM {table} WHERE {column} = ?", (value,)).fetchone()
        return dict(row) if row else None

    # -- counters and stats -----------------------------------------------------------------

    def count(self, rows: list[tuple[str, str, str, str, str, int]]) -> None:
        """Add (metric, channel, service, tax_id, code, n) counts in one transaction."""
        with self._write() as db:
            db.executemany("INSERT INTO counters (metric, channel, service, tax_id, code, n) VALUES (?, ?, ?, ?, ?, ?) "
                           "ON CONFLICT (metric, channel, service, tax_id, code) DO UPDATE SET n = n + excluded.n",
                           rows)

    def stats(self) -> dict:
        """Counters summed per service, per tax ID and per code, plus the quota log and settings."""
        with self._read() as db:
            counters = [dict(row) for row in db.execute(
                "SELECT * FROM counters ORDER BY metric, channel, service, tax_id, code")]
            quota = [dict(row) for row in db.execute("SELECT * FROM quota_log ORDER BY id")]
            applications = db.execute("SELECT COUNT(*) FROM applications").fetchone()[0]
            tasks = db.execute("SELECT COUNT(*) FROM rpa_tasks").fetchone()[0]
        return {"requests": _request_summary([c for c in counters if c["metric"] == "requests"]),
                "usage_items": _usage_summary([c for c in counters if c["metric"] != "requests"]),
                "counters": counters, "quota_log": quota, "applications": applications,
                "rpa_tasks": tasks, "settings": self.settings()}

    def reset(self, settings: bool = False) -> None:
        """Forget counters, applications, tasks and the quota log (and overrides if asked); keep companies."""
        with self._write() as db:
            for table in ("counters", "applications", "rpa_tasks", "quota_log"):
                db.execute(f"DELETE FROM {table}")
            db.execute("UPDATE sequences SET value = 0")
            if settings:
                db.execute("DELETE FROM settings WHERE name NOT LIKE '\\_%' ESCAPE '\\'")


def _company(row: sqlite3.Row) -> dict:
    """A companies row as the API shows it (volume decoded, flags as booleans)."""
    company = dict(row)
    company["leqi_enabled"] = bool(company["leqi_enabled"])
    company["volume"] = json.loads(company["volume"])
    return company


def _task(row: dict | sqlite3.Row) -> dict:
    """An rpa_tasks row with its type list decoded."""
    task = dict(row)
    task["fplx"] = json.loads(task["fplx"])
    return task


def _request_summary(rows: list[dict]) -> dict:
    """Request counts in the shapes tests and people ask for."""
    summary: dict = {"total": 0, "by_service": {}, "by_code": {}, "by_tax_id": {}, "by_service_code": {}}
    for row in rows:
        service = f"{row['channel']}.{row['service']}"
        summary["total"] += row["n"]
        for bucket, key in (("by_service", service), ("by_code", row["code"]), ("by_tax_id", row["tax_id"])):
            summary[bucket][key] = summary[bucket].get(key, 0) + row["n"]
        codes = summary["by_service_code"].setdefault(service, {})
        codes[row["code"]] = codes.get(row["code"], 0) + row["n"]
    return summary


def _usage_summary(rows: list[dict]) -> dict:
    """Invoices asked about in usage queries, per channel: all of them, and the red ones."""
    summary: dict = {}
    for row in rows:
        channel = summary.setdefault(row["channel"], {"total": 0, "red": 0, "by_tax_id": {}})
        field = "red" if row["metric"] == "usage_red" else "total"
        channel[field] += row["n"]
        per_tax = channel["by_tax_id"].setdefault(row["tax_id"], {"total": 0, "red": 0})
        per_tax[field] += row["n"]
    return summary
