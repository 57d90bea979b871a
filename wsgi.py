"""The composition root: the web app (webapp/) with the job queue (jobs/) plugged in.

`flask --app wsgi …`, the web server (`python -m wsgi`, supervisord.conf's ``web``) and the tests
start here; the two packages meet only here and in jobs/, which uses the domain (README, Layout).
"""
from __future__ import annotations

import signal
import sys

import jobs
import settings
import webapp

# The web server's settings (docs/deploy.md, "The web server"): waitress reads each request whole in
# its own event loop before a worker thread sees it, so slow or idle clients hold no thread.
THREADS = 8  # requests handled at once (gunicorn's 2 workers × 4 threads before)
CONNECTION_LIMIT = 1000  # open connections, idle ones included (waitress's default is 100)
IDLE_TIMEOUT = 60  # seconds a connection may stay silent (half a request included) before it is closed
BANNER = """
  历史发票数据同步 is running: http://{host}:{port}/
  Demo logins: admin / admin123 (管理员)    caiwu / caiwu123 (财务)
  Press Ctrl-C to stop.
"""


def create_app(test_config: dict | None = None):
    """The whole product's app: webapp's factory, then the RQ queue and its commands."""
    app = webapp.create_app(test_config)
    jobs.init_app(app)
    return app


def serve() -> None:
    """`python -m wsgi`: serve the app with waitress on HOST:PORT (127.0.0.1:5000 unless set).

    The app is built before the socket listens, so an app that cannot start fails here with its
    message; the address and the demo logins are printed once it listens. WEB_IDLE_TIMEOUT (seconds)
    overrides IDLE_TIMEOUT."""
    from waitress import create_server

    host, port = settings.web_address()
    idle = settings.web_idle_timeout(IDLE_TIMEOUT)
    app = create_app()
    server = create_server(app, host=host, port=port, threads=THREADS, connection_limit=CONNECTION_LIMIT,
                           channel_timeout=idle, cleanup_interval=max(1, min(idle // 2, 30)), ident="invoice-sync",
                           max_request_body_size=app.config["MAX_CONTENT_LENGTH"] + 1024 * 1024)  # + the form
    print(BANNER.format(host=host, port=port), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # supervisord's stop: a clean exit, said as one
    server.run()


if __name__ == "__main__":
    serve()
