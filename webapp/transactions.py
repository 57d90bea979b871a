"""Units of work: each commits whole or rolls back whole, on SQLite and PostgreSQL alike."""
from __future__ import annotations

import atexit
import gc
import weakref
from contextlib import contextmanager

from sqlalchemy import event, text

from webapp.extensions import db


@contextmanager
def write_transaction():
    """Run the block as one transaction that writes.

    On SQLite the write lock is taken at BEGIN (IMMEDIATE), so a transaction never reads a
    snapshot it later cannot write from ("database is locked"); writers queue on busy_timeout.
    Any read-only transaction the request opened before is ended first.
    """
    db.session.commit()
    db.session.connection(execution_options={"sqlite_immediate": True})
    try:
        yield db.session
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise


def placeholder(dialect) -> str:
    """The DBAPI driver's own parameter mark (sqlite3 `?`, psycopg `%s`), for the statements written as
    raw SQL on the hot paths (bulk writes, the export's line reads), where SQLAlchemy's compiling per
    chunk costs more than the query."""
    return "?" if dialect.paramstyle == "qmark" else "%s"


def placeholders(dialect, count: int) -> str:
    """`(?, ?, …)`: `count` marks in the driver's own style, for a VALUES row or an IN list."""
    return f"({', '.join([placeholder(dialect)] * count)})"


def copy_rows(connection, target: str, rows: list[tuple]) -> None:
    """PostgreSQL: COPY rows into `table (columns)` through the transaction's own psycopg connection.

    Why here: every bulk write on PostgreSQL (the pool's invoices and lines, 来源核对's source rows)
    loads through COPY, which psycopg splits faster than a multi-row VALUES (docs/performance.md).
    """
    cursor = connection.connection.driver_connection.cursor()
    with cursor, cursor.copy(f"COPY {target} FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _is_sqlite(dbapi_connection) -> bool:
    return type(dbapi_connection).__module__.startswith("sqlite3")


# Pages the write-ahead log may hold before a commit folds it back into the database file (SQLite's
# default is 1,000, 4 MB). An import's month rewrites most leaves of the pool's indexes, 5–7 MB of log
# at 10,000 invoices, so at 1,000 nearly every month's commit also copied the log back and synced the
# file: 30–45 ms a commit against 8–12 ms (docs/performance.md, The live import — chain). The worker
# folds the log back after each batch (fold_log); this bounds the log between two batches.
LOG_PAGES = 32_768  # 128 MB
LOG_KEPT_BYTES = 64 * 1024 * 1024  # the log file is cut back to this once folded back


def _sqlite_connect(dbapi_connection, _record) -> None:
    """SQLite: WAL so pages read while a worker writes; we issue BEGIN ourselves (see _begin);
    a 64 MiB page cache and memory-mapped reads so a pool of a million invoices stays quick."""
    if _is_sqlite(dbapi_connection):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "busy_timeout=30000", "synchronous=NORMAL", "foreign_keys=ON",
                       "cache_size=-65536", "mmap_size=268435456", "temp_store=MEMORY",
                       f"wal_autocheckpoint={LOG_PAGES}", f"journal_size_limit={LOG_KEPT_BYTES}"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()


def fold_log() -> None:
    """SQLite: copy the write-ahead log back into the database file now (a passive checkpoint, which
    waits for no reader), so the next batch's commits start on a short log; nothing on PostgreSQL.
    Called when a batch has ended, off the time anyone waits for (jobs.tasks)."""
    if db.session.get_bind().dialect.name == "sqlite":
        db.session.commit()
        db.session.execute(text("PRAGMA wal_checkpoint(PASSIVE)"))


def _begin(conn) -> None:
    """SQLite: BEGIN IMMEDIATE for write units, a plain deferred BEGIN for reads."""
    if conn.dialect.name == "sqlite":
        immediate = conn.get_execution_options().get("sqlite_immediate")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


_ENGINES: weakref.WeakSet = weakref.WeakSet()  # the apps' engines, closed as the process ends


@atexit.register
def _end_process() -> None:
    """As the process ends, close the database connections (on SQLite the last one to close folds
    the write-ahead log back into the database file), then spare the interpreter its final
    collector passes over every object still held: after an import of 10,000 invoices they took
    0.2 s of the whole command (docs/performance.md). Nothing left needs them: files, sockets
    and memory go back to the operating system."""
    for engine in list(_ENGINES):
        engine.dispose()
    gc.freeze()


def init_app(app) -> None:
    """Attach the connection and BEGIN rules above to this app's engine only, not to every Engine
    the process creates."""
    with app.app_context():
        engine = db.engine
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _begin)
    _ENGINES.add(engine)
