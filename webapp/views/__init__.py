"""One blueprint per feature; htmx requests get partials, others full pages."""
from __future__ import annotations

from flask import request

ERRORS = {
    400: "请求无效（表单可能已过期），请刷新页面后重试",
    403: "您没有权限访问此页面",
    409: "操作与数据的当前状态冲突（可能刚被他人或后台任务改变），请刷新页面查看最新状态后再试",
    404: "页面或数据不存在，或您没有查看它的权限",
    500: "服务器内部错误，请稍后重试；若反复出现请联系管理员",
}


def wants_partial(target_id: str) -> bool:
    """Whether htmx asked to refresh just the element `target_id` (else the full page is due).

    A history restore or an HX-Location navigation wants the whole page.
    """
    return (request.headers.get("HX-Request") == "true"
            and request.headers.get("HX-History-Restore-Request") != "true"
            and request.headers.get("HX-Target") == target_id)


XLSX_MIMETYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def xlsx_download(body, filename: str):
    """Every xlsx the pages hand out, answered one way: bytes or a chunk iterator, saved under a Chinese
    file name (RFC 5987 ``filename*``, which browsers read as UTF-8)."""
    from urllib.parse import quote

    from flask import Response

    return Response(body, mimetype=XLSX_MIMETYPE,
                    headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}"})


def merge_query(args: dict, **changes) -> str:
    """The current query string with some parameters changed (pagination keeps the filters)."""
    from urllib.parse import urlencode

    merged = {k: v for k, v in {**args, **changes}.items() if k != "csrf_token" and v not in ("", None)}
    return urlencode(merged)


def init_app(app) -> None:
    from . import admin, automation, batches, pool

    for module in (batches, pool, automation, admin):
        app.register_blueprint(module.bp)
    from . import reconcile, summary

    for module in (summary, reconcile):
        app.register_blueprint(module.bp)

    from webapp.batches import BATCH_STATUS, CHANNELS, DATA_TYPES, METHODS, SOURCES, SUBTASK_STATUS, subtask_label
    from webapp.usage import usage_labels

    app.jinja_env.globals["usage_label"] = lambda invoice: usage_labels(invoice.vat_usage, None, None, None)["vat_usage"]
    app.jinja_env.filters["merge_query"] = merge_query
    from webapp import batch_facts
    from webapp.numbers import exact_number, money, thousands

    app.jinja_env.filters.update(thousands=thousands, money=money, exact_number=exact_number)
    app.jinja_env.globals.update(mismatch=batch_facts.mismatch, waiting_text=batch_facts.waiting_text,
                                 plain_error=batch_facts.plain_error, periods_text=batch_facts.periods_text)
    app.jinja_env.globals.update(BATCH_STATUS=BATCH_STATUS, SUBTASK_STATUS=SUBTASK_STATUS, METHODS=METHODS,
                                 CHANNELS=CHANNELS, SOURCES=SOURCES, DATA_TYPES=DATA_TYPES, subtask_label=subtask_label)

    @app.errorhandler(400)
    @app.errorhandler(403)
    @app.errorhandler(404)
    @app.errorhandler(409)
    @app.errorhandler(500)
    def error_page(error):
        """Errors in the user's language; a partial for htmx, a page otherwise."""
        from flask import render_template

        code = getattr(error, "code", 500)
        text = ERRORS.get(code, ERRORS[500])
        if request.headers.get("HX-Request") == "true":
            return f'<p class="error" role="alert">{text}</p>', code
        return render_template("error.html", code=code, text=text), code

    from flask_wtf.csrf import CSRFError

    @app.errorhandler(CSRFError)
    def csrf_expired(_error):
        """An expired or missing CSRF token: the page is stale, and the user is told to reload it."""
        from flask import render_template

        text = "页面已过期（安全校验失效），请刷新页面后重试"
        if request.headers.get("HX-Request") == "true":
            return f'<p class="error" role="alert" data-reload="yes">{text}</p>', 400
        return render_template("error.html", code=400, text=text), 400

    @app.errorhandler(413)
    def too_large(_error):
        """An upload far over the limit: say so where the dialog shows errors."""
        response = app.make_response(('<p class="error" role="alert">上传内容超过上限：每个文件最大10MB，一次最多10个文件，'
                                      '请按月份拆分导出或分次导入</p>', 200))
        response.headers.update({"HX-Retarget": "#import-errors", "HX-Reswap": "innerHTML"})
        return response

    @app.route("/")
    def home():
        from flask import redirect, url_for

        return redirect(url_for("batches.index"))
