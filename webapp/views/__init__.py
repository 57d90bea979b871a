"""One blueprint per feature; htmx requests get partials, others full pages."""
from __future__ import annotations

from flask import request


def is_htmx() -> bool:
    """Whether htmx sent the request (then a partial is the answer), unless it is a history restore."""
    return request.headers.get("HX-Request") == "true" and request.headers.get("HX-History-Restore-Request") != "true"


def merge_query(args: dict, **changes) -> str:
    """The current query string with some parameters changed (pagination keeps the filters)."""
    from urllib.parse import urlencode

    merged = {k: v for k, v in {**args, **changes}.items() if k not in ("csrf_token", "batch_no") and v not in ("", None)}
    return urlencode(merged)


def init_app(app) -> None:
    from . import admin, batches, pool

    for module in (batches, pool, admin):
        app.register_blueprint(module.bp)

    from webapp.batches import BATCH_STATUS, CHANNELS, METHODS, SUBTASK_STATUS

    app.jinja_env.filters["merge_query"] = merge_query
    app.jinja_env.globals.update(BATCH_STATUS=BATCH_STATUS, SUBTASK_STATUS=SUBTASK_STATUS, METHODS=METHODS,
                                 CHANNELS=CHANNELS)

    @app.route("/")
    def home():
        from flask import redirect, url_for

        return redirect(url_for("batches.index"))
