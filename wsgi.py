"""The composition root: the web app (webapp/) with the job queue (jobs/) plugged in.

`flask --app wsgi …`, the web server (`python -m wsgi`, supervisord.conf's ``web``) and the tests
start here; the two packages meet only here and in jobs/, which uses the domain (README, Layout).
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import traceback

import settings

# The web server's settings (docs/deploy.md, "The web server"): waitress reads each request whole in
# its own event loop before a worker thread sees it, so slow or idle clients hold no thread.
PROCESSES = 2  # waitress processes sharing the one listening socket: a Python process runs on one core at a time
THREADS = 8  # requests handled at once in each process (gunicorn's 2 workers × 4 threads before)
SWITCH_INTERVAL = 0.001  # seconds a thread may hold the GIL while another waits (Python's default 0.005)
CONNECTION_LIMIT = 1000  # open connections, idle ones included (waitress's default is 100)
IDLE_TIMEOUT = 60  # seconds a connection may stay silent (half a request included) before it is closed
RECV_BYTES = 256 * 1024  # read at most this much of a connection at a time (waitress's default 8 KB: an upload of
# 10 MB was some 1,300 turns of the event loop, each waiting for the GIL: docs/performance.md, The live import)
BANNER = """
  历史发票数据同步 is running: http://{host}:{port}/
  Demo logins: admin / admin123 (管理员)    caiwu / caiwu123 (财务)
  Press Ctrl-C to stop.
"""


def create_app(test_config: dict | None = None):
    """The whole product's app: webapp's factory, then the RQ queue and its commands.

    Both packages are imported here, not at the top: `python -m wsgi` binds its port before it pays
    for Flask and SQLAlchemy, so a taken port fails well inside supervisord's startsecs on a loaded
    machine (a slower failure counts as a start, and would be retried without end)."""
    import jobs
    import webapp

    app = webapp.create_app(test_config)
    jobs.init_app(app)
    return app


def serve() -> None:
    """`python -m wsgi`: serve the app with waitress on HOST:PORT (127.0.0.1:5000 unless set), in
    PROCESSES processes that share the listening socket (docs/deploy.md, "The web server").

    The socket is bound first (a port that is taken fails at once, however slowly the app builds)
    and the app built before anything forks, so either fails here, once, with its message; the
    address and the demo logins are printed once it listens. This process then only watches the
    servers: when one ends, it stops the others and exits, and supervisord starts the web again
    whole. WEB_IDLE_TIMEOUT (seconds) overrides IDLE_TIMEOUT."""
    host, port = settings.web_address()
    listening = socket.create_server((host, port), backlog=1024)
    app = create_app()
    servers = [_fork_server(app, listening, settings.web_idle_timeout(IDLE_TIMEOUT)) for _ in range(PROCESSES)]
    listening.close()
    print(BANNER.format(host=host, port=port), flush=True)
    _watch(servers)


def _fork_server(app, listening: socket.socket, idle: int) -> int:
    """A child process serving the app on the shared socket until it is told to stop; its pid.

    Each child drops the database connections inherited from the parent (they stay the parent's) and
    dies with the parent, so a killed web leaves nothing holding the port (jobs.lifeline). It hands the
    GIL over every SWITCH_INTERVAL: the event loop that accepts, reads and writes every connection
    waited up to 5 ms for it at each step while threads rendered pages (docs/performance.md, Pages
    while batches run)."""
    pid = os.fork()
    if pid:
        return pid
    from waitress import create_server

    from jobs.lifeline import die_with_parent
    from webapp.extensions import db

    die_with_parent()
    sys.setswitchinterval(SWITCH_INTERVAL)  # waitress's event loop gets the GIL back sooner from busy threads
    with app.app_context():
        db.engine.dispose(close=False)
    server = create_server(app, sockets=[listening], threads=THREADS, connection_limit=CONNECTION_LIMIT,
                           recv_bytes=RECV_BYTES, channel_timeout=idle, cleanup_interval=max(1, min(idle // 2, 30)),
                           ident="invoice-sync",
                           max_request_body_size=app.config["MAX_CONTENT_LENGTH"] + 1024 * 1024)  # + the form
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # supervisord's stop: a clean exit, said as one
    threading.Thread(target=_start_parse_server, name="parse-server", daemon=True).start()
    code = 0
    try:
        server.run()
    except SystemExit:  # the stop above
        pass
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    os._exit(code)  # never back into the parent's code


def _start_parse_server() -> None:
    """This server process's fork server for the uploads' parse, started beside serving rather than by
    the first upload (jobs.staging.start_parse_server); if it cannot start, the first upload starts it."""
    from jobs.staging import start_parse_server

    try:
        start_parse_server()
    except Exception:  # the upload that needs it tries again and says why
        traceback.print_exc()


def _watch(servers: list[int]) -> None:
    """Wait on the server processes: a stop (SIGTERM) is passed on to them; one ending by itself
    (a crash, out of memory) ends the rest and this process with an error, for supervisord to restart."""
    def stop(*_):
        _end(servers)
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    ended, status = os.wait()
    servers.remove(ended)
    _end(servers)
    sys.exit(f"web: 服务进程 {ended} 意外退出（{status}），重新启动 web / a server process ended, restarting the web")


def _end(servers: list[int]) -> None:
    """SIGTERM each server process still running and wait for it."""
    for pid in servers:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for pid in servers:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


if __name__ == "__main__":
    serve()
