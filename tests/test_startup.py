"""Start-up: every `flask …` command and web process pays only for what it uses (docs/performance.md)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFERRED = ("alembic", "flask_migrate", "mako", "rq", "rq_scheduler", "redis", "openpyxl", "httpx", "channels.sandbox",
            "limits")


def test_the_app_loads_without_the_heavy_modules(tmp_path):
    """Alembic, RQ, Redis, httpx, openpyxl, the sandbox and `limits` are imported where used, not at start."""
    code = f"import sys, wsgi; wsgi.create_app(); print(','.join(m for m in {DEFERRED!r} if m in sys.modules))"
    env = {**os.environ, "DATA_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_job_functions_load_without_the_http_client(tmp_path):
    """`import-file --wait` runs the job functions in its own process: a file import never speaks
    HTTP, so loading them must not load httpx (the channels' clients load it when they are made)."""
    code = "import sys, jobs.tasks; print('httpx' in sys.modules)"
    env = {**os.environ, "DATA_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_flask_db_still_migrates_and_lists_its_commands(tmp_path):
    """The `db` group is loaded on use: `flask db upgrade` migrates a fresh database, `--help` lists it."""
    flask = str(Path(sys.executable).with_name("flask"))
    env = {**os.environ, "DATA_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
           "FLASK_APP": "wsgi"}
    assert " db " in subprocess.run([flask, "--help"], cwd=ROOT, env=env, capture_output=True, text=True,
                                    check=True).stdout
    subprocess.run([flask, "db", "upgrade"], cwd=ROOT, env=env, capture_output=True, check=True)
    current = subprocess.run([flask, "db", "current"], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert "(head)" in current.stdout


def _imported_modules(package: str) -> set[tuple[str, str]]:
    """(module file, imported module's dotted name) for every import statement in a package, those
    inside functions too, relative ones resolved (`from .views import bp` in webapp/pool/ is webapp.pool.views)."""
    import ast

    found = set()
    for path in (ROOT / package).rglob("*.py"):
        file = str(path.relative_to(ROOT))
        here = list(path.relative_to(ROOT).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {(file, alias.name) for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level:
                base = (here[:len(here) - node.level] if path.name != "__init__.py"
                        else here[:len(here) - node.level + 1])
                names = [node.module] if node.module else [alias.name for alias in node.names]
                found |= {(file, ".".join([*base, name])) for name in names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add((file, node.module))
    return found


def _imports(package: str) -> set[tuple[str, str]]:
    """(module file, imported top-level package) for every import statement in a package."""
    return {(file, module.split(".")[0]) for file, module in _imported_modules(package)}


def test_dependencies_run_one_way():
    """wsgi → jobs → webapp → channels (README, Layout): the domain hands work to webapp.background and
    never imports the queue; the channels know nothing of the app."""
    assert {(f, p) for f, p in _imports("webapp") if p in ("jobs", "wsgi", "rq", "rq_scheduler")} == set()
    assert {(f, p) for f, p in _imports("channels") if p in ("jobs", "wsgi", "webapp")} == set()
    assert {(f, p) for f, p in _imports("jobs") if p == "wsgi"} == set()


# The features in the order they may depend on each other (README, Layout): each imports only the ones
# before it, so no two import each other, even through a third or inside a function.
FEATURES = ("accounts", "batches", "pool", "summary", "reconcile", "backup", "health", "autoupdate")


def _feature_of(name: str) -> str | None:
    """The feature a file path (webapp/pool/cli.py) or a dotted module name (webapp.pool.cli) is part of."""
    parts = name.replace("/", ".").split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "webapp" and parts[1] in FEATURES else None


def test_every_feature_has_its_place_in_the_order():
    """A new feature package is placed in FEATURES, so that the order below covers it."""
    packages = {p.parent.name for p in (ROOT / "webapp").glob("*/__init__.py") if p.parent.name != "migrations"}
    assert packages == set(FEATURES)


def test_features_import_only_the_features_before_them():
    """Each feature imports only features earlier in FEATURES: 销项汇总 and 来源核对 read the pool, the
    pool knows neither (the job that saves a month calls both writers, jobs.tasks._saver; the `pool
    summary` and `pool diff` commands live in their own features' cli.py). A new circle fails here."""
    backwards = set()
    for file, module in _imported_modules("webapp"):
        mine, theirs = _feature_of(file), _feature_of(module)
        if mine and theirs and FEATURES.index(theirs) > FEATURES.index(mine):
            backwards.add((file, module))
    assert backwards == set()


# The modules at webapp/ itself (params, web, transactions, statuses, …) sit below every feature and
# import none, except the two that assemble the app: the factory (webapp/__init__.py: each feature's
# blueprint) and webapp/cli.py (each feature's commands; its print_json also asks webapp.health for the
# demo and disk notices, and --as asks webapp.accounts.permissions).
ASSEMBLING = ("webapp/__init__.py", "webapp/cli.py")


def test_shared_modules_import_no_feature():
    """A feature's helper that the shared modules need moves down (the tax ID and batch number shapes
    into webapp.params; the COPY helper into webapp.transactions); a feature's template globals are
    registered by its own blueprint, not by webapp.web."""
    upward = {(file, module) for file, module in _imported_modules("webapp")
              if file.count("/") == 1 and file not in ASSEMBLING and _feature_of(module)}
    assert upward == set()


def test_the_environment_is_read_in_settings_only():
    """One settings source (README, Configuration): settings.py reads every variable and imports none
    of the product, so jobs/, webapp/ and channels/ each read it without pulling in another layer."""
    import ast

    tree = ast.parse((ROOT / "settings.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not {name.split(".")[0] for name in imported} & {"wsgi", "jobs", "webapp", "channels", "flask"}
    readers = set()
    for path in [ROOT / "wsgi.py",
                 *(p for package in ("jobs", "webapp", "channels") for p in (ROOT / package).rglob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os" \
                    and node.attr in ("environ", "getenv", "putenv"):
                readers.add(str(path.relative_to(ROOT)))
    assert readers == set()


def test_the_factory_prepares_the_data_dir_it_is_given(tmp_path, monkeypatch):
    """The factory, not reading the settings, creates DATA_DIR and the secret key kept there: the one
    the app is given (a test's own folder too), and every process of the install agrees on the key."""
    from webapp import create_app

    monkeypatch.delenv("SECRET_KEY", raising=False)
    folder = tmp_path / "fresh" / "data"
    first, second = (create_app({"DATA_DIR": str(folder)}) for _ in range(2))
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"] == (folder / "secret_key").read_text()
    assert (folder / "secret_key").stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("SECRET_KEY", "from-the-environment")
    assert create_app({"DATA_DIR": str(folder)}).config["SECRET_KEY"] == "from-the-environment"
