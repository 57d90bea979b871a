"""Hostile parameters (webapp/params.py): every route of the app, taken from `app.url_map` (a new route is
covered by itself), asked by an admin and by a finance user with hostile values for every query or form
parameter it reads and for its path arguments, answers 2xx/3xx/4xx — never 5xx — in under 2 s. The
commands' year, month, tax-ID and time options refuse such values with a Chinese reason and a non-zero
exit, never a traceback. And the month arithmetic under it all holds at the edges of the years."""
from __future__ import annotations

import ctypes
import itertools
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import click
import pytest
from flask import Request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import ImmutableMultiDict, MultiDict
from werkzeug.routing import AnyConverter, IntegerConverter

from channels.months import add_months, month_index, months_between, next_month, year_months

from .conftest import DEMO_TAX_ID, dispose, login, make_app

LIMIT_SECONDS = 2.0  # each hostile request or command
SETUP_SECONDS = 30.0  # logging in and learning what a route reads: not what is measured, but never a hang
HOSTILE = [
    "99999999999999999999", "-99999999999999999999", "-1", "0", "1e309", "NaN", "9999", "10000",
    "9999-12-31", "0001-01-01", "10000-01-01", "2024-02-30", "2024-13", "99999-01", "0000-00", "9999-12",
    "", " ", "x" * 5000, "y" * 20_000, "发票😀\u202e\ufffd", "a\x00b", "\x00", "'; DROP TABLE invoice;--",
    "../../etc/passwd", "<script>alert(1)</script>", "%00", "2024-01-01T00:00", DEMO_TAX_ID.lower(),
]
PATH_HOSTILE = ["99999999999999999999", "x" * 2000, "a\x00b", "发票😀", "..", "-1", "0"]
INT_HOSTILE = [0, 99999999999999999999, 2**63, 2**31]
MIXES = 25  # hypothesis's mixes per route, after the one-at-a-time sweep
ROLES = [("admin", "admin123"), ("caiwu", "caiwu123")]
SKIPPED = {"static"}
REPORTS_FAULT = {"health.healthz"}  # its 503 is the monitors' answer "a check is at fault" (no worker runs here)
_ADDRESSES = itertools.count(1)


class _RecordingArgs(ImmutableMultiDict):
    """Query or form parameters that note each name a view asks for (how the test learns what a route reads)."""

    asked: set[str] = set()

    def __contains__(self, key):
        _RecordingArgs.asked.add(key)
        return super().__contains__(key)

    def __getitem__(self, key):
        _RecordingArgs.asked.add(key)
        return super().__getitem__(key)

    def getlist(self, key, type=None):  # noqa: A002
        _RecordingArgs.asked.add(key)
        return super().getlist(key, type)


class _RecordingRequest(Request):
    parameter_storage_class = _RecordingArgs


@pytest.fixture(scope="module")
def hostile_app(database_url, redis_url, tmp_path_factory):
    """One app for the whole module (its routes are asked thousands of times; a fresh database each
    time would cost more than the asking), recording what each route reads."""
    app = make_app(database_url, redis_url, tmp_path_factory.mktemp("hostile") / "data")
    app.request_class = _RecordingRequest
    yield app
    dispose(app)


@pytest.fixture(scope="module")
def single_thread():
    """Requests run in one thread the test waits on for at most LIMIT_SECONDS: a hang fails the test."""
    with ThreadPoolExecutor(max_workers=1) as executor:
        yield executor


def _answer(executor, call, *args, limit: float = LIMIT_SECONDS, **kwargs):
    """call(*args, **kwargs) within `limit` seconds, or fail; a stuck request has TimeoutError raised inside
    it so the thread (and its memory) is freed for the next request."""
    future = executor.submit(call, *args, **kwargs)
    try:
        return future.result(timeout=limit)
    except FutureTimeout:
        for thread in threading.enumerate():
            if thread.name.startswith("ThreadPoolExecutor"):
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(TimeoutError))
        pytest.fail(f"no answer within {limit} s: {call.__name__}{str(args)[:300]} {str(kwargs)[:300]}")


def _routes(app):
    """Every (rule, method) of the app but static files, in a stable order; /logout last."""
    rules = sorted((r for r in app.url_map.iter_rules() if r.endpoint not in SKIPPED),
                   key=lambda r: (r.endpoint == "auth.logout", r.rule))
    return [(rule, method) for rule in rules for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]


def _path_hostile(rule, name) -> list:
    """Hostile values for one path argument, within what its converter can build into a URL."""
    converter = rule._converters[name]
    if isinstance(converter, AnyConverter):
        return sorted(converter.items)
    return INT_HOSTILE if isinstance(converter, IntegerConverter) else PATH_HOSTILE


def _plain(rule, name):
    """A harmless value for a path argument (the discovery request's)."""
    converter = rule._converters[name]
    if isinstance(converter, AnyConverter):
        return sorted(converter.items)[0]
    return 1 if isinstance(converter, IntegerConverter) else "x"


def _reads(client, app, rule, method) -> list[str]:
    """The parameter names the route reads (recorded) when asked with some parameter (a form that is
    prefilled only from a non-empty query string reads its fields then)."""
    _RecordingArgs.asked = set()
    url = app.url_map.bind("localhost").build(rule.endpoint, {name: _plain(rule, name) for name in rule.arguments})
    if method == "GET":
        client.open(url, method=method, query_string={"probe": "1"}, buffered=True)
    else:
        client.open(url, method=method, data={"probe": "1"}, buffered=True)
    return sorted(_RecordingArgs.asked - {"csrf_token", "probe"})


def _ask(app, client, rule, method, path: dict, params: dict, htmx: bool):
    """One request, built through the app's own URL map (so path values are quoted as a browser would)."""
    adapter = app.url_map.bind("localhost")
    url = adapter.build(rule.endpoint, path)
    headers = {"HX-Request": "true"} if htmx else {}
    n = next(_ADDRESSES)  # each from its own address: hostile logins must not lock the test's own address out
    environ = {"REMOTE_ADDR": f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"}
    pairs = MultiDict([(k, v) for k, values in params.items() for v in values])
    if method == "GET":  # buffered: a streamed download is read whole (and its context closed) in time too
        return client.open(url, method=method, query_string=pairs, headers=headers, environ_base=environ, buffered=True)
    return client.open(url, method=method, data=pairs, headers=headers, environ_base=environ, buffered=True)


def _survives_hostile_values(executor, app, client, rule, method, login_again) -> int:
    """Every hostile value in each parameter the route reads (and each path argument) one at a time,
    then hypothesis's mixes of them (several parameters, repeated ones, htmx or not); returns how many
    requests were made."""
    names = _answer(executor, _reads, client, app, rule, method, limit=SETUP_SECONDS)
    plain = {name: _plain(rule, name) for name in rule.arguments}
    asked = 0

    def check(path, params, htmx):
        nonlocal asked
        asked += 1
        response = _answer(executor, _ask, app, client, rule, method, path, params, htmx)
        reported = rule.endpoint in REPORTS_FAULT and response.status_code == 503 and response.is_json
        assert response.status_code < 500 or reported, (rule.rule, method, path, params, response.status_code)
        if rule.endpoint == "auth.logout" or response.headers.get("Location", "").startswith("/login"):
            login_again()

    for name in names:
        for n, value in enumerate(HOSTILE):
            check(plain, {name: [value]}, htmx=bool(n % 2))
    for name in rule.arguments:
        for value in _path_hostile(rule, name):
            check({**plain, name: value}, {}, htmx=False)
    value_lists = st.lists(st.sampled_from(HOSTILE), min_size=1, max_size=3)  # a=1&a=2 too
    params = (st.dictionaries(st.sampled_from(names), value_lists, min_size=1, max_size=len(names))
              if names else st.just({}))

    @settings(max_examples=MIXES if names else 2, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(path=st.fixed_dictionaries({name: st.sampled_from(_path_hostile(rule, name)) for name in rule.arguments}),
           params=params, htmx=st.booleans())
    def survives(path, params, htmx):
        check(path, params, htmx)

    survives()
    return asked


@pytest.mark.parametrize(("username", "password"), ROLES)
def test_every_route_survives_hostile_parameters(hostile_app, single_thread, username, password):
    app = hostile_app
    client = app.test_client()

    def login_again():
        _answer(single_thread, login, client, username, password, limit=SETUP_SECONDS)

    login_again()
    asked = {f"{method} {rule.rule}": _survives_hostile_values(single_thread, app, client, rule, method, login_again)
             for rule, method in _routes(app)}
    assert len(asked) > 30 and asked["GET /pool/coverage"] >= 3 * len(HOSTILE), asked
    print(f"{username}: {sum(asked.values())} hostile requests over {len(asked)} routes, each answered in time")


@pytest.mark.parametrize(("url", "reason"), [
    (f"/pool/coverage?tax_id={DEMO_TAX_ID}&year=9999", "年度"),
    (f"/pool/coverage?tax_id={DEMO_TAX_ID}&year=10000", "年度"),
    (f"/pool/coverage?tax_id={DEMO_TAX_ID}&year=-1", "年度"),
    ("/pool?date_from=9999-12-31", "日期"),
    ("/pool?date_to=9999-12-31", "日期"),
    ("/pool/summary?date_to=9999-12-31", "日期"),
    ("/batches?date_to=9999-12-31", "日期"),
    ("/batches?date_from=0001-01-01", "日期"),
    ("/pool?page=99999999999999999999", "页码"),
    ("/batches?page=99999999999999999999", "页码"),
    ("/admin/audit?page=99999999999999999999", "页码"),
    ("/admin/audit?date_to=9999-12-31", "日期"),
    (f"/summary?tax_id={DEMO_TAX_ID}&year=99999999999999999999", "年度"),
    (f"/reconcile?tax_id={DEMO_TAX_ID}&month=99999-01", "月份"),
])
def test_out_of_range_values_are_refused_with_a_reason(hostile_app, single_thread, url, reason):
    """The values of the report: each a 400 that says which value is wrong, on the error page and to htmx."""
    client = _answer(single_thread, login, hostile_app.test_client(), "admin", "admin123", limit=SETUP_SECONDS)
    page = _answer(single_thread, client.get, url)
    assert page.status_code == 400 and reason in page.text and "<h1>400</h1>" in page.text, page.text[:300]
    partial = _answer(single_thread, client.get, url, headers={"HX-Request": "true"})
    assert partial.status_code == 400 and re.search(f'<p class="error" role="alert">[^<]*{reason}', partial.text)


def test_a_page_past_the_end_shows_the_last_page(hostile_app, single_thread):
    client = _answer(single_thread, login, hostile_app.test_client(), "admin", "admin123", limit=SETUP_SECONDS)
    page = _answer(single_thread, client.get, "/admin/audit?page=999999")
    assert page.status_code == 200 and "登录成功" in page.text  # the last page, not an empty one


def test_text_longer_than_its_column_is_refused_before_the_database(hostile_app, single_thread):
    """PostgreSQL refuses text longer than its column (SQLite keeps it): the form says so in Chinese first."""
    client = _answer(single_thread, login, hostile_app.test_client(), "admin", "admin123", limit=SETUP_SECONDS)
    for field, message in (("name", "企业名称最多 200 个字符"), ("etax_account", "默认电子税局账号最多 100 个字符")):
        data = {"tax_id": DEMO_TAX_ID, "name": "杭州示例科技有限公司", field: "长" * 300}
        page = _answer(single_thread, client.post, "/admin/companies", data=data)
        assert page.status_code == 200 and message in page.text, page.text[:300]


# --- the commands -----------------------------------------------------------------------------------------

CLI_HOSTILE = ["9999", "10000", "-1", "0", "99999999999999999999", "2024-13", "99999-01", "9999-12-31",
               "0001-01-01", "", "x" * 500, "发票😀", "a\x00b"]
VALID = {"tax_id": DEMO_TAX_ID, "tax_ids": DEMO_TAX_ID, "year": "2024", "month": "2024-03", "first": "2024-01",
         "last": "2024-02", "username": "admin", "channel": "rpa", "at": "2026-12-05T00:30"}
CHECKED = {"year", "month", "first", "last", "tax_id", "tax_ids", "grants", "at", "batch_no", "key", "org", "name",
           "channel", "types", "data", "role"}


def _commands(group, prefix=()):
    """(path, command) for every command, subcommands of groups included."""
    for name, command in sorted(group.commands.items()):
        if hasattr(command, "commands"):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def _cli_cases(app):
    """For each command parameter of CHECKED name: (command words, the parameter, its arguments but that
    one valid and required ones given, and a function giving them with that one hostile)."""
    for words, command in _commands(app.cli):
        for tested in command.params:
            if tested.name not in CHECKED:
                continue

            def args(value, command=command, tested=tested):
                options, positional = [], ["--"]  # after "--" a value such as "-1" is not read as an option
                for param in command.params:
                    if param is tested or param.required:
                        text = value if param is tested else VALID.get(param.name, "x")
                        (positional if isinstance(param, click.Argument) else options).extend(
                            [text] if isinstance(param, click.Argument) else [param.opts[0], text])
                return options + positional

            yield words, tested.name, args


def test_commands_refuse_hostile_years_months_and_tax_ids(hostile_app, single_thread):
    runner = hostile_app.test_cli_runner()
    cases = list(_cli_cases(hostile_app))
    assert {("pool", "coverage"), ("pool", "summary"), ("pool", "diff"), ("download",), ("batch", "show")} <= {
        c[0] for c in cases}
    for words, name, args in cases:
        for value in CLI_HOSTILE:
            result = _answer(single_thread, runner.invoke, args=[*words, *args(value)])
            said = f"{' '.join(words)} {name}={value[:20]!r}: {result.output[-300:]}"
            assert result.exception is None or isinstance(result.exception, SystemExit), said
            if result.exit_code:
                assert re.search(r"[\u4e00-\u9fff]", result.output), said


def test_coverage_command_refuses_year_9999_at_once(hostile_app, single_thread):
    runner = hostile_app.test_cli_runner()
    result = _answer(single_thread, runner.invoke, args=["pool", "coverage", "--tax-id", DEMO_TAX_ID, "--year", "9999"])
    assert result.exit_code == 2 and "年度应为 2000 至" in result.output


# --- the month arithmetic ---------------------------------------------------------------------------------

def test_months_between_at_the_last_year_ends_instead_of_looping():
    assert months_between("9999-11", "9999-12") == ["9999-11", "9999-12"]
    assert months_between("9999-12", "2024-01") == []
    with pytest.raises(ValueError):
        next_month("9999-12")  # year 10000 has no 'YYYY-MM' (nor a date)
    with pytest.raises(ValueError):
        year_months(10000)
    with pytest.raises(ValueError):
        months_between("2024-01", "10000-01")


def test_months_compare_by_index_not_text():
    assert month_index("2024-12") + 1 == month_index("2025-01")
    assert add_months("1000-01", 12 * 8999 + 11) == "9999-12"
    with pytest.raises(ValueError):
        add_months("1000-01", -1)
    with pytest.raises(ValueError):
        month_index("2024-13")


MONTHS = st.builds(lambda y, m: f"{y:04d}-{m:02d}", st.integers(1000, 9999), st.integers(1, 12))


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(first=MONTHS, last=MONTHS, n=st.integers(-200, 200))
def test_month_sums_agree_with_their_indexes(first, last, n):
    """Any two months of the bounded years: the list between them is as long as their indexes say and in
    time order; a sum that leaves the years is refused, never written as a five-digit year."""
    between = months_between(first, last)
    assert len(between) == max(0, month_index(last) - month_index(first) + 1)
    assert [month_index(m) for m in between] == sorted(month_index(m) for m in between)
    try:
        moved = add_months(first, n)
    except ValueError:
        assert not 1000 * 12 <= month_index(first) + n <= 9999 * 12 + 11
    else:
        assert month_index(moved) == month_index(first) + n and len(moved) == 7
