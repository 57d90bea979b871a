"""Login, logout and the rule that every page needs a logged-in user."""
from __future__ import annotations

from functools import cache
from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_htmx import make_response as htmx_response
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy.orm import joinedload
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired

from webapp.accounts import audit, login_throttle
from webapp.extensions import db, htmx, login_manager
from webapp.models import User
from webapp.transactions import write_transaction

bp = Blueprint("auth", __name__)
PUBLIC_ENDPOINTS = {"auth.login", "static", "health.healthz"}  # monitors have no login
SESSION_VERSION = "_sv"


class LoginForm(FlaskForm):
    username = StringField("用户名", validators=[DataRequired("请输入用户名")])
    password = PasswordField("密码", validators=[DataRequired("请输入密码")])


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    """The session's user, only while the session was signed for the user's current session
    version: logout and a password change bump it, so a copied cookie stops working. Its org comes
    in the same query: every page's header names it (docs/performance.md, Pages while batches run)."""
    user = db.session.get(User, int(user_id), options=[joinedload(User.org)])
    if user is None or session.get(SESSION_VERSION) != user.session_version:
        return None
    return user


@cache
def _dummy_hash() -> str:
    """A hash to check unknown user names against, so they take as long as known ones."""
    return generate_password_hash("not-a-password")


def _password_ok(user: User | None, password: str) -> bool:
    """The password check, in the same time whether or not the user exists or is active."""
    if user is None:
        check_password_hash(_dummy_hash(), password)
        return False
    return user.check_password(password) and user.active


def _safe_next() -> str:
    """Where the user was headed, on this site only (no open redirect)."""
    target = request.args.get("next", "")
    if not target.startswith("/") or target.startswith("//") or urlsplit(target).netloc:
        target = url_for("batches.index")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Check the password (locked per user name, tightened per address: webapp.accounts.login_throttle);
    on success go back where the user was headed."""
    form = LoginForm()
    if not form.validate_on_submit():
        return render_template("auth/login.html", form=form)
    username = form.username.data.strip()
    wait = login_throttle.locked_for(username)
    user = db.session.scalar(db.select(User).filter_by(username=username))
    if wait:
        audit.record("login.failure", username, actor=user or username, reason="已锁定")
        flash(login_throttle.lockout_message(wait), "error")
        return render_template("auth/login.html", form=form), 429
    if not _password_ok(user, form.password.data):
        login_throttle.failed(username, request.remote_addr)
        audit.record("login.failure", username, actor=user or username,
                     reason="用户已停用" if user and not user.active else "用户名或密码错误")
        flash("用户名或密码错误", "error")
        return render_template("auth/login.html", form=form), 200
    login_throttle.succeeded(username)
    login_user(user)
    session[SESSION_VERSION] = user.session_version
    audit.record("login.success", username, actor=user)
    audit.purge_daily()
    return redirect(_safe_next())


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    """End this session and every copy of its cookie (the user's session version moves on)."""
    user = current_user._get_current_object()
    with write_transaction():
        user.session_version = (user.session_version or 0) + 1
    audit.record("logout", user.username, actor=user)
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"))


def _require_login():
    """Every endpoint but the login page and static files needs a user."""
    if request.endpoint in PUBLIC_ENDPOINTS or current_user.is_authenticated:
        return None
    if htmx:
        return _whole_page_to_login()
    return login_manager.unauthorized()


def _whole_page_to_login():
    """An htmx request after the session expired: send the whole page to the login (HX-Redirect), back to
    the page the user was on afterwards, never a login form swapped into a table cell."""
    flash("登录已过期，请重新登录", "error")
    current = urlsplit(htmx.current_url or "")
    back = (current.path or "/") + (f"?{current.query}" if current.query else "")
    return htmx_response('<p class="error" role="alert">登录已过期，请重新登录</p>', 401,
                         redirect=url_for("auth.login", next=back))


def _security_headers(response):
    """Pages load nothing from elsewhere and cannot be framed; no page or export leaks its address
    to another site or stays in a browser or proxy cache (tax IDs, amounts, buyers)."""
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if request.endpoint != "static":
        response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app) -> None:
    login_manager.login_view = "auth.login"
    login_manager.login_message = "请先登录"
    app.register_blueprint(bp)
    app.before_request(_require_login)
    app.after_request(_security_headers)
    audit.init_app(app)
