"""Access matrix (README, Access): every route of the app × anonymous, a finance user granted one company,
the org's admin and a user of another org — allowed or denied as it must be, with no other
company's tax ID or name in any answer (pages, partials, exports, denials), and nothing changed by
a denied request. Then the CLI's `--as` commands the same way.

Routes come from app.url_map, so a route added later is checked without editing this file: it
gets the default rule (anonymous is sent to the login page; everyone else gets no server error and
no other company's data) and a warning names it until an explicit expectation is added to
EXPECTED. Set ACCESS_MATRIX_STRICT=1 to make a route without one fail instead.
"""
from __future__ import annotations

import io
import json
import os
import warnings

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from webapp import autoupdate
from webapp.accounts.auth import PUBLIC_ENDPOINTS
from webapp.batches import create_download_batches
from webapp.extensions import db
from webapp.models import Batch, Company, Schedule, Setting, Subtask, User

from .conftest import login
from .security_support import CAST_NOW, D, O, X, add_cast, add_invoice
from .workbook_builder import build_workbook

ROLES = {  # role → (username, password, companies visible)
    "anonymous": (None, None, set()),
    "finance": ("caiwu", "caiwu123", {"X"}),
    "admin": ("admin", "admin123", {"X", "D"}),
    "other_org": ("wang", "secret123", {"O"}),
}
COMPANIES = {"X": X, "D": D, "O": O}
ORG_OF = {"X": 1, "D": 1, "O": 2}


def _everyone(role, target, method):
    return "ok"


def _if_visible(role, target, method):
    return "ok" if target in ROLES[role][2] else "denied"


def _no_error_if_visible(role, target, method):
    return "no_error" if target in ROLES[role][2] else "denied"


def _admins(role, target, method):
    return "ok" if role == "admin" else "denied"


def _admins_of_its_org(role, target, method):
    return "ok" if role == "admin" and ORG_OF[target] == 1 else "denied"


def _admins_post(role, target, method):
    return "ok" if method == "GET" or role == "admin" else "denied"


# endpoint → rule for logged-in users; anonymous users are always sent to log in, except on the
# endpoints webapp.accounts.auth declares public (the one list the login rule itself uses)
PUBLIC = set(PUBLIC_ENDPOINTS)
EXPECTED = {
    "home": _everyone, "auth.logout": lambda role, target, method: "no_error",  # then anonymous
    "batches.index": _everyone, "batches.import_dialog": _everyone,
    "batches.row": _if_visible, "batches.detail": _if_visible, "batches.detail_live": _if_visible,
    "batches.terminate_selected": _if_visible, "batches.retry_selected": _if_visible,
    "pool.index": _everyone, "pool.export": _everyone, "pool.export_start": _everyone,
    "pool.coverage_page": _if_visible, "pool.detail": _if_visible, "pool.refresh_usage": _if_visible,
    "automation.index": _everyone, "automation.new": _admins_post, "automation.act": _admins_of_its_org,
    "automation.confirm": _admins_of_its_org,
    "admin.companies": _admins, "admin.users": _admins, "admin.settings": _admins,
    "admin.audit_log": _admins, "admin.audit_export": _admins, "health.status_page": _admins,
    "batches.confirm": _if_visible, "batches.error_list": _no_error_if_visible,
    "batches.refused_error_list": lambda role, target, method: "denied",  # the uploader's own token only
    "summary.index": _if_visible, "summary.export": _if_visible,
    "reconcile.index": _if_visible, "reconcile.export": _if_visible,
    "batches.live": _everyone, "pool.summary": _everyone,  # both cut down to the user's companies
    "pool.usage_batch": _if_visible,
    "pool.redflush_draft": _if_visible,  # a draft's refusal is said in the answer, beside the form
    "pool.redflush_print": _no_error_if_visible, "pool.redflush_xlsx": _no_error_if_visible,  # no reason: 400
    "backup.index": _admins, "backup.backup_now": _admins,  # admins of the install's own (first) org only
    "backup.download": lambda role, target, method: "no_error" if role == "admin" else "denied",
}
SCHEDULE_ACTIONS = ("run", "disable", "enable", "delete")  # delete last: the others need the schedule


@pytest.fixture
def world(app):
    """X, D, O each with a batch and an invoice; a schedule in each org."""
    add_cast(app)
    app.config["CLOCK_NOW"] = CAST_NOW
    refs = {}
    with app.app_context():
        users = {u.username: u for u in db.session.scalars(select(User))}
        for name, company in COMPANIES.items():
            row = db.session.scalar(select(Company).filter_by(tax_id=company["tax_id"]))
            owner = users["wang" if name == "O" else "admin"]
            [batch] = create_download_batches(owner, [row], channel="leqi", data_type="invoices",
                                              months=["2026-10"], type_codes=["81"])
            refs[name] = {"batch_no": batch.batch_no,
                          "key": add_invoice(row.tax_id, row.name, f"2633{len(refs)}0000000001")}
        for org_admin, names in (("admin", ("X", "D")), ("li", ("O",))):
            schedule = autoupdate.create_schedule(users[org_admin], invoices=True, usage=False,
                                                  now=app.config["CLOCK_NOW"])
            for name in names:
                refs[name]["schedule_id"] = schedule.id
        db.session.remove()
    return refs


def _values(rule, argument: str, target: str, refs: dict) -> list:
    """Values for a URL argument: the target company's object; a choice of actions each; unknown
    arguments get a plain value."""
    if argument == "action":
        return list(SCHEDULE_ACTIONS) if rule.endpoint == "automation.act" else sorted(rule._converters[argument].items)
    if argument == "filename":
        return ["app.css"]
    if argument in refs[target]:
        return [refs[target][argument]]
    return [1 if argument.endswith("id") else "x"]


def _requests(app, refs):
    """(endpoint, method, target, url, form) for every rule, method and target company; logout last."""
    planned, seen = [], set()
    last = ("automation.act", "auth.logout")  # 删除 the schedule after every other route used it; logout at the end
    for rule in sorted(app.url_map.iter_rules(),
                       key=lambda r: (last.index(r.endpoint) if r.endpoint in last else -1, r.rule)):
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            for target in COMPANIES:
                combos = [{}]
                for argument in rule.arguments:
                    combos = [{**c, argument: v} for c in combos for v in _values(rule, argument, target, refs)]
                for args in combos:
                    with app.test_request_context():
                        url = app.url_for(rule.endpoint, **args)
                    form = _form(target, refs) if method == "POST" else None
                    if method == "GET":
                        url += ("&" if "?" in url else "?") + f"tax_id={COMPANIES[target]['tax_id']}"
                    key = (method, url) if rule.arguments else (method, url, target)
                    if key not in seen:  # a schedule is the org's: X and D name the same one
                        seen.add(key)
                        planned.append((rule.endpoint, method, target, url, form))
    return planned


def _form(target: str, refs: dict) -> dict:
    """A POST body naming the target company everywhere a form could take it."""
    company = COMPANIES[target]
    return {"batch_no": refs[target]["batch_no"], "tax_ids": [company["tax_id"]], "tax_id": company["tax_id"],
            "method": "download", "data_type": "invoices", "channel": "leqi", "period_unit": "month",
            "month_from": "2026-10", "month_to": "2026-10", "kinds": ["81"], "invoices": "1",
            "name": company["name"] + "（改）", "username": "matrix-user", "password": "secret123", "role": "finance"}


def _text(response) -> str:
    """What a user would see: the page, or every cell of an xlsx download."""
    if response.mimetype.endswith("spreadsheetml.sheet"):
        book = load_workbook(io.BytesIO(response.data), read_only=True)
        return "\n".join(str(c) for sheet in book for row in sheet.iter_rows(values_only=True) for c in row if c)
    return response.get_data(as_text=True)


def _state(app) -> tuple:
    """What a denied request must leave as it was: batches, subtasks, schedules, companies, users, settings."""
    with app.app_context():
        try:
            return (sorted(db.session.execute(select(Batch.batch_no, Batch.status)).all()),
                    sorted(db.session.execute(select(Subtask.id, Subtask.status, Subtask.attempts)).all()),
                    sorted(db.session.execute(select(Schedule.id, Schedule.enabled)).all()),
                    sorted(db.session.execute(select(Company.tax_id, Company.name, Company.receipt_channel)).all()),
                    sorted((u.username, u.role, u.active, tuple(c.tax_id for c in u.companies))
                           for u in db.session.scalars(select(User))),
                    sorted(db.session.execute(select(Setting.key, Setting.value)).all()))
        finally:
            db.session.remove()


def _expectation(endpoint: str, role: str, target: str, method: str) -> str:
    if endpoint == "health.healthz":
        return "monitor"  # public; 503 is its answer while a check is at fault (no worker here)
    if endpoint in PUBLIC:
        return "public"
    if role == "anonymous":
        return "login"
    rule = EXPECTED.get(endpoint)
    return rule(role, target, method) if rule else "no_error"


def _verdict(expected: str, response) -> str | None:
    """Why the answer is wrong, or None."""
    status, location = response.status_code, response.headers.get("Location", "")
    to_login = status == 401 or (status == 302 and "/login" in location)
    if status >= 500 and not (expected == "monitor" and status == 503):
        return f"server error {status}"
    if expected == "login" and not to_login:
        return f"anonymous got {status}, not the login page"
    if expected == "ok" and (status >= 400 or to_login):
        return f"denied with {status} {location}"
    if expected == "denied" and status not in (403, 404):
        return f"allowed with {status}"
    return None


@pytest.mark.parametrize("role", list(ROLES))
def test_every_route_allows_and_denies_as_it_must_without_leaking(app, world, role):
    client = app.test_client()
    username, password, visible = ROLES[role]
    if username:
        login(client, username, password)
    secrets = {name: COMPANIES[name] for name in COMPANIES if name not in visible}
    if role == "admin":  # an admin manages every company of their own org, granted or not
        secrets.pop("D", None)
    planned, failures = _requests(app, world), []
    for endpoint, method, target, url, form in planned:
        expected = _expectation(endpoint, role, target, method)
        before = _state(app) if method == "POST" and expected in ("denied", "login") else None
        response = client.open(url, method=method, data=form)
        problem = _verdict(expected, response)
        text = _text(response)
        sent = url + json.dumps(form or {}, ensure_ascii=False)
        leaked = [value for company in secrets.values() for value in company.values()
                  if value in text and value not in sent]
        if leaked:
            problem = f"{problem + '; ' if problem else ''}leaks {leaked}"
        if before is not None and _state(app) != before:
            problem = f"{problem + '; ' if problem else ''}a denied request changed data"
        if problem:
            failures.append(f"{role} {method} {url} (target {target}, expected {expected}): {problem}")
    print(f"{role}: {len(planned)} requests over {len({p[0] for p in planned})} endpoints")
    assert not failures, "\n".join(failures)
    assert len(planned) >= 60  # every route of the app, times three companies


def test_every_route_has_an_explicit_expectation(app):
    """Routes added after this file was written get the default rule; name them here."""
    unknown = sorted({rule.endpoint for rule in app.url_map.iter_rules()} - EXPECTED.keys() - PUBLIC)
    unknown += [f"{e} (public: no login needed)" for e in sorted(PUBLIC - {"static", "auth.login", "health.healthz"})]
    if unknown:
        message = ("routes checked only by the default rule (anonymous → login, others: no error, no leak); "
                   f"add them to EXPECTED in tests/test_access_matrix.py: {', '.join(unknown)}")
        if os.environ.get("ACCESS_MATRIX_STRICT") == "1":
            pytest.fail(message)
        warnings.warn(message, stacklevel=1)


# ---- the command line: every `--as` command × the same roles ----

def _cli(runner, *args):
    result = runner.invoke(args=list(args))
    return result.exit_code, result.output


def _batch_count(app) -> int:
    with app.app_context():
        try:
            return len(db.session.scalars(select(Batch.id)).all())
        finally:
            db.session.remove()


@pytest.mark.parametrize("role", list(ROLES))
def test_cli_as_commands_allow_and_deny_as_they_must(app, world, runner, tmp_path, role):
    username, _, visible = ROLES[role]
    username = username or "nobody"  # the CLI's anonymous: a user name that does not exist
    secrets = [v for name, company in COMPANIES.items() if name not in visible for v in company.values()]
    failures = []

    def check(what, allowed, code, output, target_tax_id=None):
        shown = [s for s in secrets if s in output and s != target_tax_id]
        if (code == 0) != allowed or shown:
            failures.append(f"{role} {what}: exit {code}, expected {'success' if allowed else 'refusal'}"
                            f"{', leaks ' + str(shown) if shown else ''}: {output[:300]}")

    for name, company in COMPANIES.items():
        allowed = name in visible
        workbook = tmp_path / f"{name}.xlsx"
        build_workbook(workbook, n_random=3, tax_id=company["tax_id"], seller_name=company["name"], year=2026)
        for command in (["import-file", "--tax-id", company["tax_id"], "--file", str(workbook)],
                        ["download", "--tax-id", company["tax_id"], "--channel", "leqi", "--from", "2026-10",
                         "--to", "2026-10", "--type", "81"]):
            before = _batch_count(app)
            code, output = _cli(runner, *command, "--as", username)
            check(f"{command[0]} {name}", allowed, code, output, company["tax_id"])
            if not allowed and _batch_count(app) != before:
                failures.append(f"{role} {command[0]} {name}: a refused command created a batch")
    code, output = _cli(runner, "autoupdate", "create", "--usage", "--as", username)  # the world has an invoices one
    check("autoupdate create", role == "admin", code, output)
    code, output = _cli(runner, "autoupdate", "list", "--as", username)
    check("autoupdate list", role != "anonymous", code, output)
    assert not failures, "\n".join(failures)
