"""gunicorn's settings for the Procfile's web process (``make run``): HOST and PORT from the
environment, the app loaded once before the workers fork, and the address and demo logins printed
as soon as the server listens."""
import os

host = os.environ.get("HOST") or "127.0.0.1"
port = int(os.environ.get("PORT") or 5000)
bind = f"{host}:{port}"
workers = 2
threads = 4
timeout = 600  # an upload of 10 MB on a slow line, and the exports of a large pool
preload_app = True  # an app that cannot start fails here, once, with its message

BANNER = f"""
  历史发票数据同步 is running: http://{host}:{port}/
  Demo logins: admin / admin123 (管理员)    caiwu / caiwu123 (财务)
  Press Ctrl-C to stop.
"""


def when_ready(server):
    """Print the address and logins once the app is loaded and the socket listens."""
    print(BANNER, flush=True)
