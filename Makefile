# 历史发票数据同步: the README's commands.
# `make run` on a fresh machine installs everything and starts the whole product;
# `make test` installs what the tests need and runs them all.

PYTHON   ?= python3
VENV     := .venv
PY       := $(VENV)/bin/python
FLASK    := $(VENV)/bin/flask
STAMP    := $(VENV)/.installed-stamp
CHROMIUM := /usr/bin/chromium
CJK_FONT := /usr/share/fonts/truetype/wqy
FAST     := not browser and not faults and not postgres and not slow

.PHONY: install deps bytecode chromium run test test-fast soak bench walkthrough clean

## install: virtualenv and packages, database migrations, demo data (htmx is in webapp/static/vendor/)
install: bytecode
	$(FLASK) --app wsgi db upgrade
	$(FLASK) --app wsgi seed-demo

## deps: the virtualenv, reinstalled only when pyproject.toml or setup.py changed
deps: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml setup.py | $(PY)
	$(PY) -m pip install --disable-pip-version-check -e '.[test]'
	touch $@

## bytecode: our own modules compiled once, as pip compiles the libraries: every command and worker
## job starts without compiling them again, even where PYTHONDONTWRITEBYTECODE is set (stale files are
## recompiled; an edited module is still read from its source)
bytecode: deps
	$(PY) -m compileall -q wsgi.py settings.py webapp channels jobs

## chromium: Debian's Chromium, which the browser tests drive through Playwright, and a CJK font for its screenshots
chromium:
	@if [ ! -x $(CHROMIUM) ] || [ ! -d $(CJK_FONT) ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium fonts-wqy-microhei; \
	  else \
	    echo "The browser tests need Debian's Chromium at $(CHROMIUM) and a CJK font." >&2; \
	    echo "Install them as root: apt-get install chromium fonts-wqy-microhei  (then run make test again)" >&2; \
	    exit 1; \
	  fi; \
	fi

## run: install, then start supervisord.conf's programs (web, bundled Redis, worker, scheduler) in the
## foreground, each restarted when it dies, until Ctrl-C
run: install
	$(PY) -m jobs.supervision

## test: every test (SQLite; PostgreSQL too when TEST_DATABASE_URL is set): all but the fault tests on
## every core (pytest-xdist), then the fault tests in one process, since they time process kills and
## restarts; both parts run whatever the first found (exit status 5, nothing selected by PYTEST_ARGS, is no
## failure); extra args in PYTEST_ARGS (`-n 0`: one process). PYTHONDONTWRITEBYTECODE is cleared for pytest
## alone, so the test modules it rewrites (assertions) are kept in __pycache__ instead of redone by each worker
test: bytecode chromium
	$(VENV)/bin/ruff check .
	@failed=0; \
	PYTHONDONTWRITEBYTECODE= $(VENV)/bin/pytest -q -n auto -m "not faults" $(PYTEST_ARGS) || [ $$? -eq 5 ] || failed=1; \
	PYTHONDONTWRITEBYTECODE= $(VENV)/bin/pytest -q -m faults $(PYTEST_ARGS) || [ $$? -eq 5 ] || failed=1; \
	exit $$failed

## test-fast: the fast tier while you work (under two minutes): ruff, then every test not marked
## browser, faults, postgres or slow (tests/conftest.py, KINDS), on every core
test-fast: bytecode
	$(VENV)/bin/ruff check .
	PYTHONDONTWRITEBYTECODE= $(VENV)/bin/pytest -q -n auto -m "$(FAST)" $(PYTEST_ARGS)

## walkthrough: the guide's screenshots (docs/walkthrough.md) taken anew by tests/test_browser_walkthrough.py
walkthrough: bytecode chromium
	WALKTHROUGH_DIR=$(CURDIR)/docs/walkthrough $(VENV)/bin/pytest -q tests/test_browser_walkthrough.py

## soak: the fault tests, each worker kill repeated SOAK_ROUNDS times (default 5)
soak: bytecode
	SOAK_ROUNDS=$${SOAK_ROUNDS:-5} $(VENV)/bin/pytest -q tests/test_faults.py $(PYTEST_ARGS)

## bench: the benchmark in tests/bench.py
bench: bytecode
	@if [ -f tests/bench.py ]; then \
	  $(PY) -m tests.bench; \
	else \
	  echo "No benchmark yet: tests/bench.py does not exist."; \
	fi

## clean: caches and test output (keeps .venv and instance/)
clean:
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -rf .pytest_cache test-results
