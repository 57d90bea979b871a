"""Migrations on a database that holds rows: 0013 turns the joined lists into JSON lists and back,
and SQLite's table copies keep every subtask (SQLite here; PostgreSQL casts in the same migration)."""
from __future__ import annotations

from flask_migrate import downgrade, upgrade
from sqlalchemy import select, text

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
    run(text("INSERT INTO \"user\" (id, org_id, username, password_hash, role, active) VALUES (1, 1, 'u', 'x', 'admin', true)"))
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
             "(1, 1, '2025-12', '2026-01-05 00:30:00', 'due', 'B1,B2'), (2, 1, '2025-11', '2026-01-05 00:30:00', 'due', '')"))
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
