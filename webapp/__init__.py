"""历史发票数据同步: the Flask application factory.

The web app alone: the job queue is plugged in by the composition root (wsgi.create_app), so the
domain never imports `jobs/` (webapp/background.py).
"""
from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

import settings
from webapp.extensions import csrf, db, htmx, login_manager, migrate


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app from the environment (settings.py; `test_config` overrides), wiring extensions
    and blueprints."""
    app = Flask(__name__, template_folder=_template_folder())
    app.config.from_mapping(settings.app_config())
    if test_config:
        app.config.update(test_config)
    settings.use_time_zone()
    _prepare_data_dir(app)
    _trust_proxies(app)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(Path(__file__).with_name("migrations")))
    csrf.init_app(app)
    login_manager.init_app(app)
    htmx.init_app(app)

    # imported here, not at the top: importing one module of the package (webapp.models, say, in a
    # migration or a job) must not load every feature and its views
    from webapp import cli, health, params, transactions, web
    from webapp.accounts import auth

    params.init_app(app)  # first: path converters are bound as the blueprints add their routes
    transactions.init_app(app)
    auth.init_app(app)
    _register_blueprints(app)
    web.init_app(app)
    health.init_app(app)
    cli.init_app(app)
    return app


def _prepare_data_dir(app: Flask) -> None:
    """Create DATA_DIR, which holds everything the product writes (database, Redis data, uploads),
    and, with no SECRET_KEY set, the key generated once and kept there."""
    folder = Path(app.config["DATA_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _generated_secret_key(folder)


def _generated_secret_key(folder: Path) -> str:
    """The key in DATA_DIR/secret_key, written by the first process that starts on this install."""
    key_file = folder / "secret_key"
    try:  # O_EXCL: processes starting together agree on the one key the first of them wrote
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    for _ in range(100):  # another process may be between creating the file and writing it
        if key := key_file.read_text().strip():
            return key
        time.sleep(0.01)
    raise RuntimeError(f"{key_file} is empty: delete it and start again")


def _template_folder() -> str:
    """Every page and partial, each feature's in a folder of its own (README.md, Layout): templates/ at the
    repository's root in a checkout, webapp/templates/ in an installed wheel (setup.py maps it there)."""
    package = Path(__file__).parent
    installed = package / "templates"
    return str(installed if installed.is_dir() else package.parent / "templates")


def _trust_proxies(app: Flask) -> None:
    """Behind TRUSTED_PROXIES proxies, take the client address (login limits, 审计日志) and scheme from
    the X-Forwarded-For / X-Forwarded-Proto they add; with none, the headers are ignored (a client
    could write them)."""
    proxies = app.config.get("TRUSTED_PROXIES") or 0
    if proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)


def _register_blueprints(app: Flask) -> None:
    """One blueprint per feature package, each with its views (their templates: _template_folder)."""
    from webapp.accounts.views import bp as accounts
    from webapp.autoupdate.views import bp as autoupdate
    from webapp.backup.views import bp as backup
    from webapp.batches.views import bp as batches
    from webapp.pool.views import bp as pool
    from webapp.reconcile.views import bp as reconcile
    from webapp.summary.views import bp as summary

    for blueprint in (batches, pool, autoupdate, accounts, summary, reconcile, backup):
        app.register_blueprint(blueprint)
