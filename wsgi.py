"""The composition root: the web app (webapp/) with the job queue (jobs/) plugged in.

`flask --app wsgi …` and gunicorn (`wsgi:create_app()`) start here, and so do the tests; the two
packages meet only here and in jobs/, which uses the domain (README, Layout).
"""
from __future__ import annotations

import jobs
import webapp


def create_app(test_config: dict | None = None):
    """The whole product's app: webapp's factory, then the RQ queue and its commands."""
    app = webapp.create_app(test_config)
    jobs.init_app(app)
    return app
