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
    env = {**os.environ, "DATA_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "FLASK_APP": "wsgi"}
    assert " db " in subprocess.run([flask, "--help"], cwd=ROOT, env=env, capture_output=True, text=True,
                                    check=True).stdout
    subprocess.run([flask, "db", "upgrade"], cwd=ROOT, env=env, capture_output=True, check=True)
    current = subprocess.run([flask, "db", "current"], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert "(head)" in current.stdout


def _imports(package: str) -> set[tuple[str, str]]:
    """(module file, imported top-level package) for every import statement in a package."""
    import ast

    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {(str(path.relative_to(ROOT)), alias.name.split(".")[0]) for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add((str(path.relative_to(ROOT)), node.module.split(".")[0]))
    return found


def test_dependencies_run_one_way():
    """wsgi → jobs → webapp → channels (README, Layout): the domain hands work to webapp.background and
    never imports the queue; the channels know nothing of the app."""
    assert {(f, p) for f, p in _imports("webapp") if p in ("jobs", "wsgi", "rq", "rq_scheduler")} == set()
    assert {(f, p) for f, p in _imports("channels") if p in ("jobs", "wsgi", "webapp")} == set()
    assert {(f, p) for f, p in _imports("jobs") if p == "wsgi"} == set()


def test_the_environment_is_read_in_settings_only():
    """One settings source (README, Configuration): settings.py reads every variable and imports none
    of the product, so jobs/, webapp/ and channels/ each read it without pulling in another layer."""
    import ast

    tree = ast.parse((ROOT / "settings.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not {name.split(".")[0] for name in imported} & {"wsgi", "jobs", "webapp", "channels", "flask"}
    readers = set()
    for path in [ROOT / "wsgi.py", *(p for package in ("jobs", "webapp", "channels") for p in (ROOT / package).rglob("*.py"))]:
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
