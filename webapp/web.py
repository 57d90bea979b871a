"""What every feature's views share: htmx requests (partials, and errors shown where htmx swaps),
error pages in the user's language, the xlsx download response, and the template filters."""
from __future__ import annotations

from urllib.parse import quote, urlencode

from flask import Response, redirect, render_template, url_for
from flask_htmx import make_response as htmx_response
from flask_wtf.csrf import CSRFError
from markupsafe import escape

from webapp import params
from webapp.extensions import db, htmx

ERRORS = {
    400: "请求无效（表单可能已过期），请刷新页面后重试",
    403: "您没有权限访问此页面",
    409: "操作与数据的当前状态冲突（可能刚被他人或后台任务改变），请刷新页面查看最新状态后再试",
    404: "页面或数据不存在，或您没有查看它的权限",
    500: "服务器内部错误，请稍后重试；若反复出现请联系管理员",
}
STALE_PAGE = "页面已过期（安全校验失效），请刷新页面后重试"
TOO_LARGE = "上传内容超过上限：每个文件最大10MB，一次最多10个文件，请按月份拆分导出或分次导入"
XLSX_MIMETYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def wants_partial(target_id: str) -> bool:
    """Whether htmx asked to refresh just the element `target_id` (else the full page is due).

    A history restore or an HX-Location navigation wants the whole page.
    """
    return bool(htmx) and not htmx.history_restore_request and htmx.target == target_id


def xlsx_download(body, filename: str) -> Response:
    """Every xlsx the pages hand out, answered one way: bytes or a chunk iterator, saved under a Chinese
    file name (RFC 5987 ``filename*``, which browsers read as UTF-8)."""
    return Response(body, mimetype=XLSX_MIMETYPE,
                    headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}"})


def paginate(query, per_page: int):
    """One page of a counted list (the batches, the audit log), the page parsed (webapp.params) and
    held within the result: a page past the end shows the last one. The rows are counted only when
    the page is full: a shorter one is the last, so the total follows from it (one query less for a
    list that fits one page; docs/performance.md, Pages while batches run)."""
    page = params.arg("page", params.page_number)
    pagination = db.paginate(query, page=page, per_page=per_page, error_out=False, count=False)
    shown = len(pagination.items)
    last_page = 0 < shown < per_page or (shown == 0 and page == 1)
    pagination.total = (page - 1) * per_page + shown if last_page else pagination._query_count()
    if page > pagination.pages > 0:
        pagination = db.paginate(query, page=pagination.pages, per_page=per_page, error_out=False)
    return pagination


def merge_query(args: dict, **changes) -> str:
    """The current query string with some parameters changed (pagination keeps the filters)."""
    merged = {k: v for k, v in {**args, **changes}.items() if k != "csrf_token" and v not in ("", None)}
    return urlencode(merged)


def error_response(code: int, text: str, reload: bool = False):
    """An error where the user is looking: a partial htmx swaps in (base.html shows it even when htmx
    would not swap an error status), a full page otherwise."""
    if htmx:
        extra = ' data-reload="yes"' if reload else ""
        return f'<p class="error" role="alert"{extra}>{escape(text)}</p>', code
    return render_template("error.html", code=code, text=text), code


def _http_error(error):
    """Errors in the user's language; a write that failed because the disk is full says so (507)."""
    from webapp.disk import disk_full_message, is_disk_full

    code = getattr(error, "code", 500)
    original = getattr(error, "original_exception", None)
    if code == 500 and original is not None and is_disk_full(original):
        return error_response(507, disk_full_message())
    return error_response(code, ERRORS.get(code, ERRORS[500]))


def _csrf_expired(_error):
    """An expired or missing CSRF token: the page is stale, and the user is told to reload it."""
    return error_response(400, STALE_PAGE, reload=True)


def _too_large(_error):
    """An upload far over the limit: say so where the import dialog shows errors."""
    return htmx_response(f'<p class="error" role="alert">{TOO_LARGE}</p>', retarget="#import-errors",
                         reswap="innerHTML")


def init_app(app) -> None:
    """Error handlers, the home redirect and the template filters and globals."""
    for code in ERRORS:
        app.register_error_handler(code, _http_error)
    app.register_error_handler(CSRFError, _csrf_expired)
    app.register_error_handler(413, _too_large)
    app.add_url_rule("/", "home", lambda: redirect(url_for("batches.index")))
    app.context_processor(_queue_notice)
    _template_helpers(app)


def _queue_notice() -> dict:
    """Every page says so while the queue is unreachable (templates/base.html); a Redis refusing
    writes for lack of disk is named as the disk instead (webapp.health's notices)."""
    from webapp.background import background

    return {"queue_unreachable": background().queue_state() == "down"}


def _template_helpers(app) -> None:
    """Filters and globals every template shares: numbers and the code sets' labels. A feature's own
    (the batch facts' sentences, the pool's shown statuses) are registered by its blueprint."""
    from webapp import statuses
    from webapp.numbers import exact_number, money, thousands

    app.jinja_env.filters.update(merge_query=merge_query, thousands=thousands, money=money, exact_number=exact_number)
    app.jinja_env.globals.update({code_set.__name__: code_set for code_set in statuses.CODE_SETS})
