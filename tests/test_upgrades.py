"""Upgrades keep every row (README, Run it): a database built at each earlier schema revision, with
a row in every table written in that revision's own schema, upgraded to head keeps every row and
every value (a column a migration converts on purpose is checked against its conversion); and the
migrations themselves, by pytest-alembic: one head, each revision upgrades, and the models match the
migrated schema."""
from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal

import psycopg
import pytest
from flask_migrate import upgrade
from pytest_alembic.tests import (  # noqa: F401  (collected here as tests)
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)
from sqlalchemy import make_url

from webapp.backup import archive, ordered_rows, reflected_tables, snapshot
from webapp.extensions import db
from wsgi import create_app

from .test_backup import fresh_postgresql

# 0013 keeps these joined texts as JSON lists: the value written before is expected as its list
TYPED_VALUES = {"int": 7, "bool": True, "datetime": datetime(2026, 1, 2, 3, 4, 5), "date": date(2026, 1, 2),
                "json": ["V1", "V2"]}
CONVERTED_IN_0013 = {("batch", "kinds"): "、", ("batch", "type_codes"): ",", ("schedule_run", "batch_nos"): ","}


@pytest.fixture
def migrations_app(tmp_path):
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'upgraded.db'}"})
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def alembic_config(migrations_app):
    """pytest-alembic runs the project's own migrations (Flask-Migrate's env.py, inside the app)."""
    return migrations_app.extensions["migrate"].migrate.get_config()


@pytest.fixture
def alembic_engine(migrations_app):
    return db.engine


def _revisions(app) -> list[str]:
    """Every revision before head, oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(app.extensions["migrate"].migrate.get_config())
    return [s.revision for s in reversed(list(script.walk_revisions()))][:-1]


def _value(table: str, column, code: str):
    """A representative value of a column's type; 1 for ids and the foreign keys that point at them.
    Texts are upper case without spaces, the form a tax ID is kept in, so a migration that rewrites
    tax IDs into that form leaves them as they are."""
    if column.primary_key and code == "int" or column.foreign_keys:
        return 1
    if code in TYPED_VALUES:
        return TYPED_VALUES[code]
    if code.startswith("decimal"):
        return Decimal("12.34")
    if (table, column.name) in CONVERTED_IN_0013:
        return CONVERTED_IN_0013[(table, column.name)].join(["V1", "V2"])
    return f"{column.name[:3].upper()}1"[:getattr(column.type, "length", None)]


def _fill() -> None:
    """One row in every table of the schema as it is now (whatever revision), in dependency order."""
    with db.engine.begin() as conn:
        for table in reflected_tables(conn):
            codes = dict(archive.table_columns(table))
            conn.execute(table.insert(), [{c.name: _value(table.name, c, codes[c.name]) for c in table.columns}])


def _rows() -> dict[str, list[dict]]:
    """Every table's rows as engine-neutral values, by column name."""
    with snapshot() as conn:
        result = {}
        for table in reflected_tables(conn):
            names = [name for name, _ in archive.table_columns(table)]
            codes = [code for _, code in archive.table_columns(table)]
            result[table.name] = [dict(zip(names, archive.orjson.loads(line), strict=True))
                                  for line in archive.encode_rows(ordered_rows(conn, table), codes)]
        return result


@contextmanager
def _empty_database(engine: str, tmp_path):
    """A function giving, for each revision, the URL of an empty database of the engine."""
    if engine == "sqlite":
        yield lambda revision: f"sqlite:///{tmp_path / f'at-{revision}.db'}"
        return
    with fresh_postgresql() as url:
        def emptied(revision: str) -> str:
            with psycopg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False),
                                 autocommit=True) as conn:
                conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
            return url

        yield emptied


@pytest.mark.parametrize("engine", ["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else []))
def test_every_row_written_at_an_earlier_revision_survives_the_upgrade_to_head(migrations_app, tmp_path, engine):
    checked = []
    with _empty_database(engine, tmp_path) as database_for:
        for revision in _revisions(migrations_app):
            checked.append((revision, _upgraded_rows_kept(database_for(revision), revision)))
    assert [revision for revision, _ in checked][:2] == ["0001", "0002"] and len(checked) >= 14


def _upgraded_rows_kept(url: str, revision: str) -> int:
    """Rows written at `revision`, upgraded to head, compared value by value; how many were checked."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade(revision=revision)
        _fill()
        before = _rows()
        upgrade()
        after = _rows()
        db.engine.dispose()
    for table, rows in before.items():
        assert len(after[table]) == len(rows) == 1, (revision, table)
        for column, value in rows[0].items():
            if column not in after[table][0]:
                continue  # dropped on purpose by a later migration
            separator = CONVERTED_IN_0013.get((table, column)) if revision < "0013" else None
            expected = value.split(separator) if separator else value
            assert after[table][0][column] == expected, (revision, table, column)
    return sum(len(rows) for rows in before.values())


def test_make_install_upgrades_an_older_data_dir_before_serving_and_says_so(tmp_path):
    """`make run` runs `make install` first, whose `flask db upgrade` brings a DATA_DIR left by an older
    version to head, printing each migration it runs (Alembic's "Running upgrade A -> B, what")."""
    import os
    import subprocess
    import sys

    from .conftest import ROOT

    env = {**{k: v for k, v in os.environ.items() if k != "DATABASE_URL"}, "DATA_DIR": str(tmp_path / "old")}
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'old' / 'invoice_sync.db'}"})
    with app.app_context():
        (tmp_path / "old").mkdir()
        upgrade(revision="0012")
        db.engine.dispose()
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=True)
    assert "Running upgrade 0012 -> 0013" in done.stderr
    current = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "current"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300, check=True)
    assert "(head)" in current.stdout
