"""Login, logout and the rule that every page needs a logged-in user."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired

from .extensions import db, login_manager
from .models import User

bp = Blueprint("auth", __name__)
PUBLIC_ENDPOINTS = {"auth.login", "static"}


class LoginForm(FlaskForm):
    username = StringField("用户名", validators=[DataRequired("请输入用户名")])
    password = PasswordField("密码", validators=[DataRequired("请输入密码")])


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    return db.session.get(User, int(user_id))


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Check the password; on success go back where the user was headed (same site only)."""
    form = LoginForm()
    if form.validate_on_submit():
        user = db.session.scalar(db.select(User).filter_by(username=form.username.data.strip()))
        if user and user.active and user.check_password(form.password.data):
            login_user(user)
            target = request.args.get("next", "")
            if not target.startswith("/") or target.startswith("//") or urlsplit(target).netloc:
                target = url_for("batches.index")
            return redirect(target)
        flash("用户名或密码错误", "error")
    return render_template("login.html", form=form)


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    logout_user()
    return redirect(url_for("auth.login"))


def _require_login():
    """Every endpoint but the login page and static files needs a user."""
    if request.endpoint in PUBLIC_ENDPOINTS or current_user.is_authenticated:
        return None
    if request.headers.get("HX-Request") == "true":
        return _whole_page_to_login()
    return login_manager.unauthorized()


def _whole_page_to_login():
    """An htmx request after the session expired: send the whole page to the login (HX-Redirect), back to
    the page the user was on afterwards, never a login form swapped into a table cell."""
    flash("登录已过期，请重新登录", "error")
    current = urlsplit(request.headers.get("HX-Current-URL", ""))
    back = (current.path or "/") + (f"?{current.query}" if current.query else "")
    response = current_app.make_response(('<p class="error" role="alert">登录已过期，请重新登录</p>', 401))
    response.headers["HX-Redirect"] = url_for("auth.login", next=back)
    return response


def _security_headers(response):
    """Pages load nothing from elsewhere and cannot be framed."""
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


def init_app(app) -> None:
    login_manager.login_view = "auth.login"
    login_manager.login_message = "请先登录"
    app.register_blueprint(bp)
    app.before_request(_require_login)
    app.after_request(_security_headers)
