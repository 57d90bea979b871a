"""`python -m tests.bench_load` (and `make bench`'s "pages_under_load"): 20 clients for 60 s on /pool and /batches while
5 batches run, against the product started the way `make run` starts it (docs/deploy.md, The web server;
docs/performance.md, Pages while batches run).

The product runs on its own DATA_DIR and port (tests.servers.Product: migrated, demo data). Five
download batches are created first (乐企 2023-01…2025-12, and RPA a year each, so that no quota makes one
wait) and the worker works them while the clients, each logged in as caiwu with its own session and one
kept-alive connection as a browser keeps it, request /pool and /batches in turn, full pages. Twice:
first as people use them, pausing a random time of mean THINK_S between two pages (the figures `met`
judges: what a user waits while imports run), then never pausing (`never_pausing`: the capacity, in
requests a second; with clients that never pause the mean wait is clients ÷ that rate, whatever the
page costs). Printed as JSON: per path the number of requests, median, p95 and slowest in ms, and errors
(anything but 200 or a failed connection); how many batches were still running at the end.

BENCH_LOAD_SECONDS and BENCH_LOAD_CLIENTS change the window and the clients. BENCH_LOAD_ROOT and
BENCH_LOAD_COMMAND start another checkout the same way its `make run` does (its own .venv), e.g. the
previous version (`honcho start -f Procfile`), to compare two web servers on one machine.
"""
from __future__ import annotations

import http.client
import json
import os
import random
import re
import shlex
import threading
import time
import urllib.parse
from pathlib import Path

from tests.servers import ROOT, Product

PATHS = ("/pool", "/batches")
BEFORE_P95_MS = {"/pool": 208, "/batches": 269}  # measured with gunicorn (2 workers × 4 threads)
TARGET_P95_MS = 100  # each page, with 0 errors (docs/performance.md, Pages while batches run)
THINK_S = 1.0  # mean pause between a person's two pages: reading a page and clicking takes at least this
DEMO_TAX_ID = "91330100MA2H4K7Q1X"  # seed-demo's company
BATCHES = (("leqi", "2023-01", "2025-12"), ("rpa", "2022-01", "2022-12"), ("rpa", "2023-01", "2023-12"),
           ("rpa", "2024-01", "2024-12"), ("rpa", "2025-01", "2025-12"))  # within the five-year window


class Client:
    """One browser: its own cookies and one kept-alive connection (HTTP/1.1, as a browser keeps it), logged
    in through the form (CSRF token included). A dropped connection is opened again on the next request."""

    def __init__(self, base: str):
        """Log in as caiwu."""
        parts = urllib.parse.urlsplit(base)
        self.host, self.port, self.cookies, self.connection = parts.hostname, parts.port, {}, None
        page = self.request("GET", "/login")[1].decode()
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode({"username": "caiwu", "password": "caiwu123", "csrf_token": token})
        status, _ = self.request("POST", "/login", form, {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 302, f"login answered {status}"

    def request(self, method: str, path: str, body: str | None = None, headers: dict | None = None) -> tuple:
        """(status, body) of one request on the kept connection; Set-Cookie kept as a browser keeps it."""
        if self.connection is None:
            self.connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        cookie = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        try:
            self.connection.request(method, path, body, {**(headers or {}), "Cookie": cookie})
            response = self.connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            self.connection.close()
            self.connection = None
            raise
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, value = header.split(";", 1)[0].partition("=")
            self.cookies[name.strip()] = value
        if response.will_close:
            self.connection.close()
            self.connection = None
        return response.status, data

    def timed(self, path: str) -> tuple[float, bool]:
        """Milliseconds to fetch a whole page, and whether it answered 200 (a login page is a 302)."""
        began = time.perf_counter()
        try:
            status, _ = self.request("GET", path)
            ok = status == 200
        except (OSError, http.client.HTTPException):
            ok = False
        return (time.perf_counter() - began) * 1000, ok


def run_clients(base: str, clients: int, seconds: float, think_s: float = 0.0) -> dict:
    """``clients`` threads request PATHS in turn for ``seconds``, each pausing a random time of mean ``think_s``
    between two pages (0: never); per path the figures, and the requests answered per second."""
    samples: dict[str, list[float]] = {path: [] for path in PATHS}
    errors = dict.fromkeys(PATHS, 0)
    browsers = [Client(base) for _ in range(clients)]  # logged in before the clock starts
    lock, deadline = threading.Lock(), time.monotonic() + seconds

    def browse(browser: Client, offset: int) -> None:
        """One client's loop until the deadline."""
        turn, pause = offset, random.Random(offset)
        while time.monotonic() < deadline:
            path = PATHS[turn % len(PATHS)]
            ms, ok = browser.timed(path)
            with lock:
                samples[path].append(ms)
                errors[path] += not ok
            turn += 1
            if think_s:
                time.sleep(min(pause.expovariate(1 / think_s), max(0.0, deadline - time.monotonic())))

    threads = [threading.Thread(target=browse, args=(b, i)) for i, b in enumerate(browsers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    answered = sum(len(taken) for taken in samples.values())
    return {path: figures(samples[path]) | {"errors": errors[path]} for path in PATHS} | {
        "think_s": think_s, "requests_per_s": round(answered / seconds, 1)}


def figures(samples: list[float]) -> dict:
    """Count, median, p95 and slowest of a list of milliseconds."""
    ordered = sorted(samples) or [0.0]
    return {"requests": len(samples), "median_ms": round(ordered[len(ordered) // 2], 1),
            "p95_ms": round(ordered[max(0, int(0.95 * len(ordered)) - 1)], 1), "max_ms": round(ordered[-1], 1)}


def start_batches(product: Product) -> list[str]:
    """The five download batches, queued for the worker (not waited for)."""
    numbers = []
    for channel, first, last in BATCHES:
        made = json.loads(product.flask("download", "--tax-id", DEMO_TAX_ID, "--channel", channel, "--from", first,
                                        "--to", last, "--as", "caiwu"))
        numbers += [batch["batch_no"] for batch in (made if isinstance(made, list) else [made])]
    return numbers


def still_running(product: Product, numbers: list[str]) -> int:
    """How many of the batches have not ended."""
    shown = [json.loads(product.flask("batch", "show", number)) for number in numbers]
    return sum(batch["status"] in ("pending", "syncing", "preprocessing") for batch in shown)


def load_bench(seconds: float = 60, clients: int = 20, root: Path = ROOT,
               command: tuple[str, ...] = ("python", "-m", "jobs.supervision")) -> dict:
    """Start the product, the batches, then the clients twice: as people use the pages (THINK_S between
    two pages), then never pausing (the capacity); the figures, with the issue's before and met."""
    product = Product(root=root.resolve(), command=command)
    try:
        product.start()
        numbers = start_batches(product)
        began, load_at_start = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.getloadavg()[0]
        result = run_clients(product.url, clients, seconds, THINK_S)
        saturated = run_clients(product.url, clients, seconds)
        result |= {"clients": clients, "seconds": seconds, "batches": len(numbers), "started": began,
                   "batches_running_at_end": still_running(product, numbers), "command": " ".join(command),
                   "load_1min_at_start": round(load_at_start, 2), "load_1min": round(os.getloadavg()[0], 2),
                   "before_p95_ms": BEFORE_P95_MS, "target_p95_ms": TARGET_P95_MS, "met": _met(result),
                   "never_pausing": saturated | {"met": _met(saturated)}}
    finally:
        product.close()
    return result


def _met(figures_of: dict) -> bool:
    """Both pages under the target p95, with no error."""
    return all(figures_of[path]["errors"] == 0 and figures_of[path]["p95_ms"] < TARGET_P95_MS for path in PATHS)


def main() -> None:
    """The part alone, as JSON; the environment variables of the module's docstring apply."""
    result = load_bench(float(os.environ.get("BENCH_LOAD_SECONDS", 60)), int(os.environ.get("BENCH_LOAD_CLIENTS", 20)),
                        Path(os.environ.get("BENCH_LOAD_ROOT") or ROOT),
                        tuple(shlex.split(os.environ.get("BENCH_LOAD_COMMAND") or "python -m jobs.supervision")))
    print(json.dumps(result, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
