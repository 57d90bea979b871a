"""历史发票数据同步: the Flask application factory."""
from __future__ import annotations

from flask import Flask

from .config import load_config
from .extensions import csrf, db, login_manager, migrate


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app from the environment (or `test_config`), wiring extensions and blueprints."""
    app = Flask(__name__, template_folder="../templates")
    app.config.from_mapping(load_config())
    if test_config:
        app.config.update(test_config)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(_root() / "migrations"))
    csrf.init_app(app)
    login_manager.init_app(app)

    from . import auth, cli, transactions, views  # noqa: F401  (transactions: engine events)

    auth.init_app(app)
    views.init_app(app)
    cli.init_app(app)

    app.context_processor(_queue_notice)
    return app


def _queue_notice() -> dict:
    """Every page says so while the queue's Redis is unreachable (templates/base.html). Imported on
    first render, not at start: RQ and Redis cost every CLI command start-up time."""
    from jobs.queue import queue_reachable

    return {"queue_unreachable": not queue_reachable()}


def _root():
    """The project folder, where migrations/ lives whatever the working directory."""
    from pathlib import Path

    return Path(__file__).resolve().parent.parent
