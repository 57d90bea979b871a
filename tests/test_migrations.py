"""Migrations on a database that holds rows: 0013 turns the joined lists into JSON lists and back,
and SQLite's table copies keep every subtask (SQLite here; PostgreSQL casts in the same migration);
0014 drops the pool indexes no query uses, and the look-ups they served still find their rows."""
from __future__ import annotations

from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, select, text

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


DROPPED_IN_0014 = {("invoice", "ix_invoice_buyer_tax_id"), ("invoice", "ix_invoice_code_number"),
                   ("invoice_line", "ix_invoice_line_invoice_key")}


def _indexes() -> set[tuple[str, str]]:
    inspector = inspect(db.engine)
    return {(table, index["name"]) for table in ("invoice", "invoice_line") for index in inspector.get_indexes(table)}


def test_indexes_no_query_uses_are_dropped_and_their_lookups_still_find_the_rows(tmp_path):
    from webapp.pool import find_invoice, invoice_lines

    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'migrated.db'}"})
    with app.app_context():
        upgrade(revision="0013")
        assert DROPPED_IN_0014 <= _indexes()
        # a 数电纸质 invoice: its key is the 数电 number, a red invoice's 备注 names it by 发票代码-发票号码
        db.session.execute(text(
            "INSERT INTO invoice (key, tax_id, code, number, digital_number, issued_at, month, amount, tax, type_name, "
            "status, is_red, source, synced_at) VALUES ('24330000000000000001', 'T1', '033001', '0001', "
            "'24330000000000000001', '2026-01-05 10:00:00', '2026-01', 100, 13, '数电纸质发票（增值税专用发票）', '正常', "
            "false, 'file', '2026-01-06 00:00:00')"))
        db.session.execute(text("INSERT INTO invoice_line (invoice_key, line_no, name, amount, tax, is_discount) "
                                "VALUES ('24330000000000000001', 1, '*服务*服务费', 100, 13, false)"))
        db.session.commit()
        upgrade()
        assert not DROPPED_IN_0014 & _indexes()
        assert find_invoice("033001-0001", ["T1"]).key == "24330000000000000001"
        assert [line.name for line in invoice_lines("24330000000000000001")] == ["*服务*服务费"]
        downgrade(revision="0013")
        assert DROPPED_IN_0014 <= _indexes()
        db.session.remove()
        db.engine.dispose()
