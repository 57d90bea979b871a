"""`python -m tests.bench_load` (and `make bench`'s "pages_under_load"): 20 clients for 60 s on /pool and /batches while
5 batches run, against the product started the way `make run` starts it (docs/deploy.md, The web server;
the load figures must not get worse).

The product runs on its own DATA_DIR and port (tests.servers.Product: migrated, demo data). Five
download batches are created first (乐企 2023-01…2025-12, and RPA a year each, so that no quota makes one
wait) and the worker works them while the clients, each logged in as caiwu with its own session,
request /pool and /batches in turn, full pages, as fast as they are answered. Printed as JSON: per
path the number of requests, median, p95 and slowest in ms, and errors (anything but 200 or a
failed connection); how many batches were still running at the end.

BENCH_LOAD_SECONDS and BENCH_LOAD_CLIENTS change the window and the clients. BENCH_LOAD_ROOT and
BENCH_LOAD_COMMAND start another checkout the same way its `make run` does (its own .venv), e.g. the
previous version (`honcho start -f Procfile`), to compare two web servers on one machine.
"""
from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shlex
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from tests.servers import ROOT, Product

PATHS = ("/pool", "/batches")
BEFORE_P95_MS = {"/pool": 208, "/batches": 269}  # measured with gunicorn (2 workers × 4 threads)
TARGET_P95_MS = 100  # each page, with 0 errors (docs/performance.md, Pages while batches run)
DEMO_TAX_ID = "91330100MA2H4K7Q1X"  # seed-demo's company
BATCHES = (("leqi", "2023-01", "2025-12"), ("rpa", "2022-01", "2022-12"), ("rpa", "2023-01", "2023-12"),
           ("rpa", "2024-01", "2024-12"), ("rpa", "2025-01", "2025-12"))  # within the five-year window


class Client:
    """One browser: its own cookies, logged in through the form (CSRF token included)."""

    def __init__(self, base: str):
        """Log in as caiwu."""
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        page = self.opener.open(f"{base}/login", timeout=30).read().decode()
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode({"username": "caiwu", "password": "caiwu123", "csrf_token": token}).encode()
        self.opener.open(f"{base}/login", data=form, timeout=30).read()

    def timed(self, path: str) -> tuple[float, bool]:
        """Milliseconds to fetch a whole page, and whether it answered 200."""
        began = time.perf_counter()
        try:
            with self.opener.open(f"{self.base}{path}", timeout=30) as response:
                response.read()
                ok = response.status == 200 and not response.geturl().endswith("/login")
        except OSError:
            ok = False
        return (time.perf_counter() - began) * 1000, ok


def run_clients(base: str, clients: int, seconds: float) -> dict:
    """``clients`` threads request PATHS in turn for ``seconds``; per path the figures."""
    samples: dict[str, list[float]] = {path: [] for path in PATHS}
    errors = dict.fromkeys(PATHS, 0)
    browsers = [Client(base) for _ in range(clients)]  # logged in before the clock starts
    lock, deadline = threading.Lock(), time.monotonic() + seconds

    def browse(browser: Client, offset: int) -> None:
        """One client's loop until the deadline."""
        turn = offset
        while time.monotonic() < deadline:
            path = PATHS[turn % len(PATHS)]
            ms, ok = browser.timed(path)
            with lock:
                samples[path].append(ms)
                errors[path] += not ok
            turn += 1

    threads = [threading.Thread(target=browse, args=(b, i)) for i, b in enumerate(browsers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {path: figures(samples[path]) | {"errors": errors[path]} for path in PATHS}


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
    """Start the product, the batches, then the clients; the figures, with the issue's before and met."""
    product = Product(root=root.resolve(), command=command)
    try:
        product.start()
        numbers = start_batches(product)
        began, load_at_start = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.getloadavg()[0]
        result = run_clients(product.url, clients, seconds)
        result |= {"clients": clients, "seconds": seconds, "batches": len(numbers), "started": began,
                   "batches_running_at_end": still_running(product, numbers), "command": " ".join(command),
                   "load_1min_at_start": round(load_at_start, 2), "load_1min": round(os.getloadavg()[0], 2),
                   "before_p95_ms": BEFORE_P95_MS, "target_p95_ms": TARGET_P95_MS,
                   "met": all(result[path]["errors"] == 0 and result[path]["p95_ms"] < TARGET_P95_MS for path in PATHS)}
    finally:
        product.close()
    return result


def main() -> None:
    """The part alone, as JSON; the environment variables of the module's docstring apply."""
    result = load_bench(float(os.environ.get("BENCH_LOAD_SECONDS", 60)), int(os.environ.get("BENCH_LOAD_CLIENTS", 20)),
                        Path(os.environ.get("BENCH_LOAD_ROOT") or ROOT),
                        tuple(shlex.split(os.environ.get("BENCH_LOAD_COMMAND") or "python -m jobs.supervision")))
    print(json.dumps(result, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
