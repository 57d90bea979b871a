"""备份与恢复: one consistent, engine-neutral archive of every table, and its verified restore.

A backup reads every table inside one read transaction on one connection (PostgreSQL REPEATABLE
READ READ ONLY, as pg_dump does; SQLite one BEGIN, while WAL lets writers go on), so imports and
downloads keep running and a month a subtask was writing is either whole in the archive or absent
(each subtask commits whole: webapp/transactions.py). A restore verifies the whole archive before it
writes anything, loads it into a database migrated to the backup's revision, tables in dependency
order, resets PostgreSQL's sequences, then migrates forward to head. The format: archive.py.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from itertools import islice
from pathlib import Path

from flask import current_app
from sqlalchemy import Connection, MetaData, String, literal, select, text

from webapp.backup import archive
from webapp.backup.archive import BackupRefused
from webapp.clock import now
from webapp.extensions import db
from webapp.statuses import BackupFailure, BackupStatus
from webapp.transactions import placeholders

__all__ = ["BackupRefused", "create_backup", "verify_backup", "restore_backup", "table_digests"]
INSERT_CHUNK = 2000
WRITE_BUFFER = 1 << 20
VERSION_TABLE = "alembic_version"


def product_version() -> str:
    """The installed package's version (pyproject.toml), written into every manifest."""
    try:
        return version("invoice-sync")
    except PackageNotFoundError:
        return "unknown"


def backup_dir() -> Path:
    """DATA_DIR/backups: where scheduled and 立即备份 archives are kept (made by the first backup)."""
    return Path(current_app.config["DATA_DIR"]) / "backups"


def default_path(tag: str = "") -> Path:
    """A new archive's name in backup_dir(), by the time it was taken (names sort by time)."""
    return backup_dir() / f"invoice-sync-{now():%Y%m%d-%H%M%S}{tag}.zip"


@contextmanager
def snapshot():
    """One read transaction on one connection: every table as of one moment, writers not blocked."""
    with db.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        with conn.begin():
            yield conn


def reflected_tables(conn: Connection) -> list:
    """The database's own tables as they are (any revision), in dependency order, without Alembic's."""
    metadata = MetaData()
    metadata.reflect(conn)
    return [table for table in metadata.sorted_tables if table.name != VERSION_TABLE]


def ordered_rows(conn: Connection, table):
    """All rows of a table by primary key in byte order (COLLATE "C" on PostgreSQL, SQLite's own
    binary order), streamed: the same order, so the same checksum, on either engine."""
    keys = list(table.primary_key.columns) or list(table.columns)
    if conn.dialect.name == "postgresql":
        keys = [key.collate("C") if isinstance(key.type, String) else key for key in keys]
    columns = [table.c[name] for name, _ in archive.table_columns(table)]
    return conn.execute(select(*columns).order_by(*keys).execution_options(yield_per=INSERT_CHUNK))


def _revision(conn: Connection) -> str | None:
    """The schema revision Alembic recorded in this database (None: never migrated).

    Alembic is imported here, not at the top: every process would pay its import at start otherwise
    (tests/test_startup.py, docs/performance.md cold start)."""
    from alembic.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def table_digests(conn: Connection | None = None) -> dict[str, dict]:
    """{table: {"rows", "sha256"}} of the current database, computed as a backup computes them."""
    if conn is None:
        with snapshot() as conn:
            return table_digests(conn)
    digests = {}
    for table in reflected_tables(conn):
        digest = archive.Digest()
        for line in archive.encode_rows(ordered_rows(conn, table), [code for _, code in archive.table_columns(table)]):
            digest.add(line)
        digests[table.name] = digest.summary()
    return digests


def create_backup(path: Path | None = None) -> dict:
    """Write the archive (to `path`, else backup_dir()) from one snapshot; returns its manifest.

    Written to a '.partial' file renamed at the end, so a half-written archive never looks finished.
    """
    path = Path(path) if path else default_path()
    partial = path.with_name(path.name + ".partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with snapshot() as conn, archive.zipfile.ZipFile(partial, "w", archive.zipfile.ZIP_DEFLATED,
                                                          compresslevel=1) as out:
            manifest = _write_tables(conn, out)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return {"path": str(path), "size": path.stat().st_size, **manifest}


def _write_tables(conn: Connection, out) -> dict:
    """Every table of the snapshot into the open archive, then the manifest describing them."""
    revision = _revision(conn)
    if revision is None:
        raise BackupRefused("数据库尚未初始化，没有可备份的数据。"
                            "请先运行：flask --app wsgi db upgrade（或 make install）")
    manifest = {"format": archive.FORMAT, "format_version": archive.FORMAT_VERSION,
                "product_version": product_version(), "schema_revision": revision,
                "created_at": now().isoformat(sep=" ", timespec="seconds"), "engine": conn.dialect.name,
                "tables": {}}
    for table in reflected_tables(conn):
        columns = archive.table_columns(table)
        manifest["tables"][table.name] = {"columns": columns,
                                          **_write_table(out, table.name, ordered_rows(conn, table), columns)}
    out.writestr(archive.MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1))
    return manifest


def _write_table(out, name: str, rows, columns) -> dict:
    """Stream one table's lines into its member, a buffer at a time; its row count and checksum."""
    digest, buffer, size = archive.Digest(), [], 0
    with out.open(archive.member(name), "w", force_zip64=True) as stream:
        for line in archive.encode_rows(rows, [code for _, code in columns]):
            digest.add(line)
            buffer.append(line)
            size += len(line)
            if size >= WRITE_BUFFER:
                stream.write(b"".join(buffer))
                buffer, size = [], 0
        stream.write(b"".join(buffer))
    return digest.summary()


def _script():
    """The project's migrations (Alembic's ScriptDirectory), imported on use as in _revision."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(current_app.extensions["migrate"].migrate.get_config())


def verify_backup(path) -> dict:
    """Check the whole archive (manifest, known revision and tables, every member's count and
    checksum) without touching the database; its manifest, or BackupRefused saying what is wrong."""
    zipped, manifest = archive.open_archive(path)
    with zipped:
        revision = manifest.get("schema_revision")
        if revision not in {script.revision for script in _script().walk_revisions()}:
            raise BackupRefused(f"备份的数据库结构版本 {revision} 不在本版本的迁移中（备份来自更新的版本或其他产品）。"
                                "请用与备份相同或更新的版本恢复。")
        tables = manifest.get("tables")
        if not isinstance(tables, dict) or not tables:
            raise BackupRefused("备份清单中没有数据表，文件不完整。请换一份完整的备份文件。")
        unknown = sorted(set(tables) - set(db.metadata.tables))
        if unknown:
            raise BackupRefused(f"备份中含有本产品不认识的数据表：{'、'.join(unknown)}。请选择由本产品生成的备份文件。")
        malformed = sorted(name for name, table in tables.items() if not archive.well_formed(table))
        if malformed:
            raise BackupRefused(f"备份清单中数据表 {'、'.join(malformed)} 的说明不完整，清单已被改动或损坏。"
                                "请换一份完整的备份文件。")
        for name, expected in tables.items():
            archive.check_member(zipped, name, expected)
    return manifest


def _has_rows(conn: Connection) -> list[str]:
    """The tables of the target database that hold at least one row."""
    return [table.name for table in reflected_tables(conn)
            if conn.execute(select(literal(1)).select_from(table).limit(1)).first()]


def _drop_everything() -> None:
    """--replace: every table of the target database goes (Alembic's too), to be rebuilt by migrations."""
    metadata = MetaData()
    with db.engine.begin() as conn:
        metadata.reflect(conn)
        metadata.drop_all(conn)


def _migrate_to(revision: str) -> None:
    """Bring the (empty) target database to the backup's revision, up or down."""
    from flask_migrate import downgrade, upgrade

    with db.engine.connect() as conn:
        current = _revision(conn)
    if current is None or current == revision:
        upgrade(revision=revision)
    elif any(script.revision == revision for script in _script().iterate_revisions(current, "base")):
        downgrade(revision=revision)
    else:
        upgrade(revision=revision)


def _load(zipped, manifest: dict) -> dict[str, int]:
    """Insert every table's rows in dependency order in one transaction, then reset PostgreSQL's
    sequences past the restored ids (else the next insert would collide with a restored row)."""
    restored = {}
    with db.engine.connect() as conn:
        conn.execution_options(sqlite_immediate=True)
        with conn.begin():
            tables = {table.name: table for table in reflected_tables(conn)}
            for name in [name for name in tables if name in manifest["tables"]]:
                restored[name] = _insert_table(conn, tables[name], archive.read_lines(zipped, name),
                                               manifest["tables"][name]["columns"])
            if conn.dialect.name == "postgresql":
                _reset_sequences(conn, tables.values())
            _close_unfinished_runs(conn, tables.get("backup_run"))
    return restored


def _close_unfinished_runs(conn: Connection, runs) -> None:
    """A nightly archive holds its own run as still running: in the restored database that run will
    never finish, so it is closed with a reason instead of being failed an hour later as lost."""
    if runs is None:
        return
    conn.execute(runs.update().where(runs.c.status.in_([BackupStatus.PENDING, BackupStatus.RUNNING]))
                 .values(status=BackupStatus.FAILED, failure=BackupFailure.RESTORED))


def _insert_table(conn: Connection, table, lines, columns) -> int:
    """One table's rows, inserted a chunk at a time; how many."""
    missing = [name for name, _ in columns if name not in table.columns]
    if missing:
        raise BackupRefused(f"数据表 {table.name} 缺少备份中的列：{'、'.join(missing)}；备份与迁移不一致，"
                            "未写入任何数据。")
    statement, bind = _insert_statement(conn.dialect, table, [name for name, _ in columns])
    rows, count = archive.decode_rows(lines, columns), 0
    while chunk := [bind(row) for row in islice(rows, INSERT_CHUNK)]:
        conn.exec_driver_sql(statement, chunk)
        count += len(chunk)
    return count


def _insert_statement(dialect, table, names: list[str]):
    """The driver's own INSERT of `names` and a function binding a row's values as SQLAlchemy would
    (each column type's bind processor: SQLite's datetime text, PostgreSQL's JSON), so a restored row
    is stored exactly as the app stores one; the driver's executemany skips compiling every row."""
    quote = dialect.identifier_preparer.quote
    statement = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(name) for name in names)}) "
                 f"VALUES {placeholders(dialect, len(names))}")
    processors = [(index, processor) for index, name in enumerate(names)
                  if (processor := table.c[name].type.dialect_impl(dialect).bind_processor(dialect))]

    def bind(row: list) -> tuple:
        for index, processor in processors:
            row[index] = processor(row[index])
        return tuple(row)

    return statement, bind


def _reset_sequences(conn: Connection, tables) -> None:
    """PostgreSQL: each serial id's sequence continues after the largest restored id."""
    for table in tables:
        keys = list(table.primary_key.columns)
        if len(keys) == 1 and keys[0].autoincrement in (True, "auto") and archive.type_code(keys[0]) == "int":
            conn.execute(text('SELECT setval(pg_get_serial_sequence(:table, :column), '
                              f'COALESCE(MAX("{keys[0].name}"), 1), '
                              f'MAX("{keys[0].name}") IS NOT NULL) FROM "{table.name}"'),
                         {"table": f'"{table.name}"', "column": keys[0].name})


def restore_backup(path, replace: bool = False) -> dict:
    """Restore an archive into the database DATABASE_URL names; refuses (BackupRefused, nothing
    written) a bad archive, or a target holding rows unless `replace`. Returns what was restored."""
    manifest = verify_backup(path)
    with db.engine.connect() as conn:
        occupied = _has_rows(conn)
    if occupied and not replace:
        raise BackupRefused(f"目标数据库不是空的（{'、'.join(occupied[:5])} 等数据表已有数据），未做任何改动。"
                            "要用备份覆盖其中全部数据，请加 --replace 重新运行。")
    if replace:
        _drop_everything()
    _migrate_to(manifest["schema_revision"])
    with archive.zipfile.ZipFile(path) as zipped:
        restored = _load(zipped, manifest)
    from flask_migrate import upgrade

    upgrade()
    with db.engine.connect() as conn:
        head = _revision(conn)
    return {"path": str(path), "from_revision": manifest["schema_revision"], "to_revision": head,
            "created_at": manifest["created_at"], "engine": db.engine.dialect.name, "restored": restored}
