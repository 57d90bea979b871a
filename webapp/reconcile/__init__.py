"""来源核对: which sources (file import, 乐企, RPA) delivered each invoice, and where they disagree.

The pool keeps one copy of an invoice, the last one written. Beside it, `record_sources` keeps per
invoice and source when that source first and last delivered it and the status, amounts and buyer
it gave last, so a later download that says 已红冲-全额 where an older export said 正常 is seen.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal

from sqlalchemy import String, and_, case, cast, func, or_, select

from channels.records import HEADER_COLUMNS
from webapp.clock import now
from webapp.extensions import db
from webapp.models import Batch, Invoice, InvoiceSource, Subtask
from webapp.pool.export import money
from webapp.pool.month_stats import kept_figures
from webapp.statuses import DataType, Source, SubtaskStatus
from webapp.transactions import copy_rows, placeholders

CHUNK = 1000
KEPT = ("status", "amount", "tax", "total", "buyer_tax_id", "buyer_name")  # the last values each source gave
SOURCE_COLUMNS = ("invoice_key", "source", "tax_id", "month", "batch_id", "first_seen_at", "last_seen_at") + KEPT
FIELDS = {"status": "发票状态", "amount": "金额", "tax": "税额", "total": "价税合计",
          "buyer_tax_id": "购方识别号", "buyer_name": "购买方名称"}
ALL_KINDS = "*"
MONEY_FIELDS = ("amount", "tax", "total")  # compared to the cent, written as money


_ON_CONFLICT = "ON CONFLICT (invoice_key, source) DO UPDATE SET " + ", ".join(
    f"{c} = excluded.{c}" for c in SOURCE_COLUMNS if c not in ("invoice_key", "source", "first_seen_at"))


def _upsert(dialect) -> str:
    """One statement for SQLite and PostgreSQL: a new source row, or the last values of a known one."""
    return (f"INSERT INTO invoice_source ({', '.join(SOURCE_COLUMNS)}) "
            f"VALUES {placeholders(dialect, len(SOURCE_COLUMNS))} {_ON_CONFLICT}")


def record_sources(staged: list, *, source: str, batch_id: int | None) -> None:
    """Note that `source` delivered these staged invoices (webapp.pool's tuples), in bulk.

    Called by the job that saves a month, beside the pool write (webapp.pool.save_staged) in the same
    transaction, so the note and the invoices land together (jobs.tasks._saver).
    """
    if not staged:
        return
    key, tax_id, month = (HEADER_COLUMNS.index(c) for c in ("key", "tax_id", "month"))
    kept = [HEADER_COLUMNS.index(c) for c in KEPT]
    connection = db.session.connection()
    stamp = now().strftime("%Y-%m-%d %H:%M:%S.%f")
    rows = [(h[key], source, h[tax_id], h[month], batch_id, stamp, stamp, *[h[i] for i in kept])
            for h, _lines in staged]
    if connection.dialect.name == "postgresql":
        _upsert_copied(connection, rows)
    else:
        statement = _upsert(connection.dialect)
        for start in range(0, len(rows), CHUNK):
            connection.exec_driver_sql(statement, rows[start:start + CHUNK])


def _upsert_copied(connection, rows: list[tuple]) -> None:
    """PostgreSQL: COPY the rows into a temporary table and upsert from it in one statement, as the
    invoices themselves are written (webapp.pool), rather than one upsert per row. An invoice given
    twice keeps its last copy, as row-by-row upserts would leave it."""
    rows = list({row[:2]: row for row in rows}.values())
    columns = ", ".join(SOURCE_COLUMNS)
    connection.exec_driver_sql(f"CREATE TEMPORARY TABLE IF NOT EXISTS invoice_source_staged ON COMMIT DROP AS "
                               f"SELECT {columns} FROM invoice_source WITH NO DATA")
    copy_rows(connection, f"invoice_source_staged ({columns})", rows)
    connection.exec_driver_sql(f"INSERT INTO invoice_source ({columns}) SELECT {columns} FROM invoice_source_staged "
                               f"{_ON_CONFLICT}")
    connection.exec_driver_sql("TRUNCATE invoice_source_staged")


def _covered_kinds(tax_id: str, first: str, last: str) -> dict[str, dict[str, set[str]]]:
    """{month: {source: the invoice type codes it synced for the month}} ('*': all, as a file import does)."""
    rows = db.session.execute(
        select(Subtask.period, Batch.method, Batch.channel, Batch.type_codes).join(Subtask)
        .where(Batch.tax_id == tax_id, Batch.data_type == DataType.INVOICES, Subtask.period >= first,
               Subtask.period <= last, Subtask.status == SubtaskStatus.SUCCEEDED))
    covered: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for month, method, channel, codes in rows:
        covered[month][Source.of(method, channel)].update(codes or [ALL_KINDS])
    return covered


def _missing(source: str, type_code: str | None, present, covered: dict[str, set[str]]) -> list[str]:
    """The other sources of the month that synced this invoice's kind yet lack it (a source without a
    succeeded subtask, say one whose batch was removed, counts as having synced every kind)."""
    return [s for s in present if s != source and (covered.get(s) or {ALL_KINDS}) & {ALL_KINDS, type_code}]


def _value(field: str, row: InvoiceSource):
    """A field as compared and shown: money to the cent as text, empty text for none."""
    value = getattr(row, field)
    if field in MONEY_FIELDS:
        return None if value is None else f"{money(value):.2f}"
    return value or ""


def _stamp(value: datetime | None) -> str | None:
    return value.isoformat(sep=" ", timespec="seconds") if value else None


def _entry(key: str, type_name: str | None, rows: dict) -> dict:
    """One invoice as the report shows it: each source's values and when it last delivered them."""
    return {"key": key, "type_name": type_name,
            "values": {source: {**{field: _value(field, row) for field in FIELDS},
                                "first_seen_at": _stamp(row.first_seen_at), "last_seen_at": _stamp(row.last_seen_at)}
                       for source, row in sorted(rows.items())}}


def _disagree():
    """SQL, per invoice (GROUP BY invoice_key): its sources gave different values of a compared field.

    Two values differ where the group's least and greatest differ (the same test as more than one
    DISTINCT value): DISTINCT aggregates make PostgreSQL sort every one-row group six times, 0.3 s of
    a year's download at its end (docs/performance.md, Download pipeline)."""
    src = InvoiceSource
    texts = [func.min(func.coalesce(c, "")) != func.max(func.coalesce(c, ""))
             for c in (src.status, src.buyer_tax_id, src.buyer_name)]
    money = [or_(func.min(c) != func.max(c), and_(func.count(c) > 0, func.count(c) < func.count()))
             for c in (src.amount, src.tax, src.total)]
    return case((or_(*texts, *money), 1), else_=0)


def _rows_of(tax_id: str, keys: list[str]) -> dict[str, tuple[str | None, dict]]:
    """{key: (发票票种, {source: row})} of just the invoices the report lists, as plain rows named by
    their columns (no ORM objects: the rows are only read)."""
    found: dict[str, tuple[str | None, dict]] = {}
    columns = list(InvoiceSource.__table__.c)
    for start in range(0, len(keys), CHUNK):
        for row in db.session.connection().execute(
                select(*columns, Invoice.type_name).outerjoin(Invoice, Invoice.key == InvoiceSource.invoice_key)
                .where(InvoiceSource.tax_id == tax_id, InvoiceSource.invoice_key.in_(keys[start:start + CHUNK]))):
            found.setdefault(row.invoice_key, (row.type_name, {}))[1][row.source] = row
    return found


def _fields_differing(by_source: dict) -> list[str]:
    """The compared fields whose values differ between the sources, as the report shows them (money to the cent)."""
    return [f for f in FIELDS if len({_value(f, row) for row in by_source.values()}) > 1]


def source_report(tax_id: str, month: str, shown: int | None = None) -> dict:
    """The 来源核对 of one company-month: per-source counts, invoices only one source has, differences.

    An invoice one source lacks counts only if that source synced the invoice's kind that month
    (a 乐企 download of 数电专票 says nothing of paper invoices). The month's 来源 rows are read once,
    as plain rows, and grouped per invoice here (_month_groups); only the invoices listed are read
    whole. `shown` lists only the first so many invoices only one source has (the page: a month where
    one source delivered part of the invoices has thousands; docs/performance.md, Five million
    invoices on PostgreSQL); the counts stay whole.
    """
    present, groups = _month_groups(tax_id, month)
    covered = _covered_kinds(tax_id, month, month)[month]
    lone_keys = [key for key, by_source in groups.items() if len(by_source) == 1]
    codes = _type_codes(lone_keys) if _kinds_matter(present, covered) else {}
    lone, answers = {}, {}  # the sources missing depend on the source and the kind only
    for key in lone_keys:
        asked = (next(iter(groups[key])), codes.get(key))
        if asked not in answers:
            answers[asked] = _missing(*asked, present, covered)
        if answers[asked]:
            lone[key] = list(answers[asked])
    disagreeing = [key for key, by_source in groups.items() if len(by_source) > 1 and _raw_differ(by_source)]
    listed = sorted(lone)[:shown]
    rows = _rows_of(tax_id, sorted([*listed, *disagreeing]))
    only_one = [{**_entry(key, *rows[key]), "source": next(iter(rows[key][1])), "missing": lone[key]}
                for key in listed]
    different = []
    for key in sorted(disagreeing):
        type_name, by_source = rows[key]
        if fields := _fields_differing(by_source):
            different.append({**_entry(key, type_name, by_source), "fields": fields})
    return {"tax_id": tax_id, "month": month,
            "sources": {s: {"invoices": n, "last_synced": _stamp(last)} for s, (n, last) in present.items()},
            "counts": {"invoices": len(groups), "only_one": len(lone), "different": len(different)},
            "only_one": only_one, "different": different}


def _month_groups(tax_id: str, month: str) -> tuple[dict[str, tuple[int, datetime]], dict[str, dict]]:
    """({source: (invoices, last delivered)} in source order, {invoice key: {source: its row}}) of the
    month, each row (key, source, last delivered, *the compared fields) with money as the database
    writes it: one read of the month's 来源 rows as plain tuples (no ORM objects, no Decimal per value:
    money is only compared here). Grouping them here costs less than the database's grouped pass with
    a join to each invoice for its kind, which the page needs only for invoices one source has, and
    only when a source synced some kinds (docs/performance.md, Five million invoices on PostgreSQL)."""
    src = InvoiceSource
    compared = [cast(getattr(src, f), String) if f in MONEY_FIELDS else getattr(src, f) for f in FIELDS]
    rows = db.session.connection().execute(select(src.invoice_key, src.source, src.last_seen_at, *compared)
                                           .where(src.tax_id == tax_id, src.month == month)).all()
    groups: dict[str, dict] = defaultdict(dict)
    for row in rows:
        groups[row[0]][row[1]] = row
    present = {}
    for source in sorted({row[1] for row in rows}):
        seen = [row[2] for row in rows if row[1] == source]
        present[source] = (len(seen), max(seen))
    return present, groups


def _kinds_matter(present, covered: dict[str, set[str]]) -> bool:
    """Whether an invoice's kind can decide that a source lacks it: some source of the month synced only
    some kinds (_missing)."""
    return any(ALL_KINDS not in (covered.get(s) or {ALL_KINDS}) for s in present)


def _type_codes(keys: list[str]) -> dict[str, str | None]:
    """{key: 发票票种 code} of these invoices in the pool."""
    codes: dict[str, str | None] = {}
    for start in range(0, len(keys), CHUNK):
        codes.update(db.session.connection().execute(select(Invoice.key, Invoice.type_code)
                                                     .where(Invoice.key.in_(keys[start:start + CHUNK]))).all())
    return codes


def _raw_differ(by_source: dict) -> bool:
    """Whether the sources' rows (_month_groups) differ in any compared field as stored: the cheap first
    test before the invoice is read whole and compared as shown (_fields_differing); equal stored
    values show equal."""
    first, *others = [row[3:] for row in by_source.values()]
    return any(fields != first for fields in others)


def differing_months(tax_id: str, months: list[str]) -> set[str]:
    """Months whose 来源核对 finds something (only months more than one source delivered qualify).

    Read from the findings kept per company-month (_findings), with the kinds each source synced
    read now, so 同步覆盖 marks five years without reading their invoices (docs/performance.md,
    同步覆盖 with two sources)."""
    if not months:
        return set()
    first, last = min(months), max(months)
    covered = _covered_kinds(tax_id, first, last)
    marked = set()
    for month, found in kept_findings(tax_id, first, last).items():
        if month in months and (found["different"] or any(
                _missing(source, code, found["sources"], covered[month]) for source, code, _n in found["lone"])):
            marked.add(month)
    return marked


def kept_findings(tax_id: str, first: str | None = None, last: str | None = None) -> dict[str, dict]:
    """{month: findings} of the company's months from `first` to `last` (each optional): kept ones while
    current, the months the pool write changed counted again (_findings) and kept. A batch's end calls
    it (jobs.tasks), so the first 同步覆盖 after an import reads kept rows."""
    return kept_figures(tax_id, first, last, "sources", _findings)


def _findings(tax_id: str, months: list[str]) -> dict[str, dict]:
    """{month: its findings as kept}: {"sources": the sources that delivered invoices of the month,
    "lone": [[source, type code, invoices only that source has]], "different": invoices whose sources
    differ, as source_report counts them}.

    Kept per month until the pool write touches it (webapp.pool.month_stats.kept_figures): the job that
    saves a month writes its sources in the same transaction (jobs.tasks._saver). Which kinds a source
    synced is not kept: a download finding nothing changes it without a pool write, so it is read
    when the marks are (differing_months)."""
    where = (InvoiceSource.tax_id == tax_id, InvoiceSource.month.in_(months))
    found = {month: {"sources": [], "lone": [], "different": 0} for month in months}
    for month, source in db.session.execute(
            select(InvoiceSource.month, InvoiceSource.source).where(*where).distinct().order_by(InvoiceSource.source)):
        found[month]["sources"].append(source)
    grouped = (select(InvoiceSource.month, InvoiceSource.invoice_key, func.count().label("n"),
                      func.min(InvoiceSource.source).label("source"), Invoice.type_code, _disagree().label("disagree"))
               .outerjoin(Invoice, Invoice.key == InvoiceSource.invoice_key).where(*where)
               .group_by(InvoiceSource.month, InvoiceSource.invoice_key, Invoice.type_code).subquery())
    candidate = case((and_(grouped.c.n > 1, grouped.c.disagree == 1), grouped.c.invoice_key))
    candidates = defaultdict(list)
    for month, n, source, type_code, key, invoices in db.session.execute(
            select(grouped.c.month, grouped.c.n, grouped.c.source, grouped.c.type_code, candidate, func.count())
            .group_by(grouped.c.month, grouped.c.n, grouped.c.source, grouped.c.type_code, candidate)):
        if n == 1:
            found[month]["lone"].append([source, type_code, invoices])
        elif key is not None:
            candidates[month].append(key)
    for month, keys in candidates.items():
        found[month]["different"] = sum(1 for _type_name, by_source in _rows_of(tax_id, keys).values()
                                        if _fields_differing(by_source))
    return found


def write_report(report: dict, target) -> None:
    """The report as an xlsx: counts, then one sheet per finding with each source's values side by
    side; amounts as money cells a user can sum, counts as count cells (webapp.xlsx_stream)."""
    from webapp.xlsx_stream import Workbook

    sources = list(report["sources"])
    kinds = "ttt" + ("".join("m" if f in MONEY_FIELDS else "t" for f in FIELDS) + "t") * len(sources)
    with Workbook(target) as workbook:
        sheet = workbook.add_sheet("汇总", [16, 22, 10, 20], freeze_header=False)
        sheet.append(["销方识别号", report["tax_id"]])
        sheet.append(["开票月份", report["month"]])
        for source, info in report["sources"].items():
            sheet.append([f"{Source(source).label}份数", info["invoices"], "最近同步", info["last_synced"]], "tc")
        sheet.append(["仅一个来源有", report["counts"]["only_one"]], "tc")
        sheet.append(["来源间存在差异", report["counts"]["different"]], "tc")
        for title, entries, leading in (("仅一个来源有", report["only_one"], "缺少的来源"),
                                        ("来源间差异", report["different"], "差异项")):
            part = workbook.add_sheet(title, [26, 20, 20])
            part.append(["发票号码", "发票票种", leading] + [f"{Source(s).label}-{label}" for s in sources
                                                          for label in (*FIELDS.values(), "最近提供时间")])
            for entry in entries:
                part.append(_report_row(entry, sources), kinds)


def _report_row(entry: dict, sources: list[str]) -> list:
    """One invoice's row of the report: what differs or is missing, then each source's values."""
    named = entry.get("missing") or entry.get("fields")
    labels = [Source(n).label for n in named] if "missing" in entry else [FIELDS[n] for n in named]
    cells: list = []
    for source in sources:
        values = entry["values"].get(source)
        if values:
            cells += [Decimal(values[f]) if f in MONEY_FIELDS and values[f] is not None else values[f] for f in FIELDS]
            cells.append(values["last_seen_at"])
        else:
            cells += [None] * (len(FIELDS) + 1)
    return [entry["key"], entry["type_name"], "、".join(labels)] + cells
