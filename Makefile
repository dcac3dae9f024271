# The README's two commands: `make demo` (set up and serve the admin) and `make test` (the whole suite).
# Both start a private PostgreSQL and Redis through bin/stack unless DATABASE_URL, UNIFIED_DATABASE_URL,
# REVOS_DATABASE_URL and REDIS_URL point at servers (environment or .env).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUFF := $(VENV)/bin/ruff
STACK := $(PY) bin/stack
PORT ?= 8000
DEMO_ARGS ?=
PYTEST_ARGS ?=
BENCH_ARGS ?=
# bin/stack has no .py suffix, so ruff only checks it when named.
LINTED := . bin/stack

# Installing again is only needed when pyproject.toml changes: the stamp's name carries its hash.
PYPROJECT_HASH := $(shell $(PYTHON) -c "import hashlib; print(hashlib.sha256(open('pyproject.toml', 'rb').read()).hexdigest()[:16])")
INSTALLED := $(VENV)/.installed-$(PYPROJECT_HASH)

.PHONY: install demo test lint format bench stop

install: $(INSTALLED)

$(INSTALLED):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is needed; run: make PYTHON=python3.11 ...")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	@$(MAKE) --no-print-directory browser
	@rm -f $(VENV)/.installed-*
	@touch $@

# The browser tests drive Debian's chromium; without it (not root, no apt-get) they skip with a reason.
.PHONY: browser
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then \
		:; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium and chromium-driver for the browser tests"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
			|| echo "warning: could not install chromium; the browser tests will skip"; \
	else \
		echo "note: chromium/chromedriver not found and not installable here; the browser tests will skip"; \
	fi

demo: install
	$(STACK) demo --port $(PORT) $(DEMO_ARGS)

# Everything runs inside one `bin/stack run`, so the private servers start and stop once. Every
# check runs even after one fails, so a single CI run reports them all; the status is the worst.
test: install
	$(STACK) run -- sh -xc 'failed=0; \
		$(PY) manage.py check || failed=1; \
		$(PY) manage.py makemigrations --check --dry-run || failed=1; \
		$(PY) -m pytest $(PYTEST_ARGS) || failed=1; \
		$(RUFF) check $(LINTED) || failed=1; \
		$(RUFF) format --check $(LINTED) || failed=1; \
		exit $$failed'

lint: install
	$(RUFF) check $(LINTED)
	$(RUFF) format --check $(LINTED)

format: install
	$(RUFF) check --fix $(LINTED)
	$(RUFF) format $(LINTED)

bench: install
	$(STACK) run -- $(PY) -m benchmarks $(BENCH_ARGS)

# Stops private servers left running by `bin/stack env`.
stop:
	$(STACK) stop
