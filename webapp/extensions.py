"""Flask extensions, created unbound and initialised by the app factory."""
import click
from flask_htmx import HTMX
from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class LazyMigrate:
    """Flask-Migrate, imported only when a migration runs.

    Importing Flask-Migrate imports Alembic (and Mako), about a quarter of a second: every CLI
    command and worker start paid it although only `flask db …` and the tests' `upgrade()` use it
    (docs/performance.md, cold start). `app.extensions['migrate']` and the `db` command group are
    stand-ins that load the real ones on first use.
    """

    def init_app(self, app, db, directory: str) -> None:
        app.extensions["migrate"] = _LazyMigrateConfig(app, db, directory)
        app.cli.add_command(_LazyDbGroup("db", help="Perform database migrations (Flask-Migrate)."))


class _LazyMigrateConfig:
    """What Flask-Migrate's commands and migrations/env.py read from `app.extensions['migrate']`."""

    def __init__(self, app, db, directory: str):
        self._args, self._real = (app, db, directory), None

    def __getattr__(self, name):
        if self._real is None:
            from flask_migrate import Migrate  # deferred: Alembic costs start-up time

            app, db, directory = self._args
            real = Migrate()
            real.init_app(app, db, directory=directory)  # replaces this stand-in for later look-ups
            self._real = app.extensions["migrate"]
            app.extensions["migrate"] = self
        return getattr(self._real, name)


class _LazyDbGroup(click.Group):
    """`flask db`: its name and help in `flask --help`; Flask-Migrate's own group once invoked."""

    def make_context(self, info_name, args, parent=None, **extra):
        from flask_migrate.cli import db as real  # deferred: Alembic costs start-up time

        return real.make_context(info_name, args, parent=parent, **extra)


db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING))
migrate = LazyMigrate()
login_manager = LoginManager()
htmx = HTMX()  # request.headers' HX-* as properties, for every view (webapp/web.py)
csrf = CSRFProtect()
