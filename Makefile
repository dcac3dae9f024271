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

# Every install takes exactly the versions and hashes in requirements.lock (docs/dependencies.md
# says why a lock, and how to upgrade: `make lock`). Installing again is only needed when the lock
# changes: the stamp's name carries its hash.
LOCK := requirements.lock
LOCK_HASH := $(shell $(PYTHON) -c "import hashlib; print(hashlib.sha256(open('$(LOCK)', 'rb').read()).hexdigest()[:16])")
INSTALLED := $(VENV)/.installed-$(LOCK_HASH)

.PHONY: install demo test lint format bench stop lock

install: $(INSTALLED)

$(INSTALLED):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is needed; run: make PYTHON=python3.11 ...")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@$(MAKE) --no-print-directory browser
	@$(MAKE) --no-print-directory typescript
	@rm -f $(VENV)/.installed-*
	@touch $@

# $(call ensure_tools,COMMANDS,PACKAGES,WHAT IS MISSING WITHOUT THEM): install the Debian packages
# when a command is missing and this is root with apt-get; otherwise say what will be missing.
define ensure_tools
	@if (for c in $(1); do command -v $$c >/dev/null 2>&1 || exit 1; done); then \
		:; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing $(2)"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) >/dev/null; } \
			|| echo "warning: could not install $(2); $(3)"; \
	else \
		echo "note: $(1) not found and not installable here; $(3)"; \
	fi
endef

# The export_types test compiles the generated types with the real TypeScript compiler (npm's
# `typescript`, into .tools/); without npm it skips, saying so.
TSC := .tools/typescript/node_modules/.bin/tsc
.PHONY: typescript
typescript:
	@if [ -x $(TSC) ]; then :; \
	elif command -v npm >/dev/null 2>&1; then \
		npm install --no-audit --no-fund --silent --prefix .tools/typescript typescript \
			|| echo "warning: could not install typescript; the export_types compile test will skip"; \
	else echo "note: npm not found; the export_types compile test will skip"; fi

# The browser tests drive Debian's chromium.
.PHONY: browser
browser:
	$(call ensure_tools,chromium chromedriver,chromium chromium-driver,the browser tests will skip)

demo: install
	$(STACK) demo --port $(PORT) $(DEMO_ARGS)

# Everything runs inside one `bin/stack run`, so the private servers start and stop once. Every
# check runs even after one fails, so a single CI run reports them all; the status is the worst.
# Then the tests whose outcome depends on the databases' role model (marker `supabase`,
# tests/conftest.py) run again in the Supabase role mode: `postgres` not a superuser, GoTrue's auth
# owned by supabase_auth_admin (bin/stack --supabase). `make test TEST_MODES=supabase` runs only
# that part, TEST_MODES=default only the first.
TEST_MODES ?= default supabase
# mypy's Django plugin imports the settings (so it runs in here, with their URLs) but queries nothing.
test: install
	@failed=0; \
	if echo " $(TEST_MODES) " | grep -q " default "; then SUPABASE_MODE= $(STACK) run -- sh -xc 'failed=0; \
		$(PY) manage.py check || failed=1; \
		$(PY) manage.py makemigrations --check --dry-run || failed=1; \
		$(PY) -m pytest $(PYTEST_ARGS) || failed=1; \
		$(RUFF) check $(LINTED) || failed=1; \
		$(RUFF) format --check $(LINTED) || failed=1; \
		$(PY) -m mypy || failed=1; \
		exit $$failed' || failed=1; fi; \
	if echo " $(TEST_MODES) " | grep -q " supabase "; then \
		echo "make test: the role-model tests (marker supabase) again, in the Supabase role mode"; \
		$(STACK) --supabase run -- $(PY) -m pytest -m supabase $(PYTEST_ARGS) || failed=1; fi; \
	exit $$failed

lint: install
	$(RUFF) check $(LINTED)
	$(RUFF) format --check $(LINTED)

format: install
	$(RUFF) check --fix $(LINTED)
	$(RUFF) format $(LINTED)

bench: install pgloader
	$(STACK) run -- $(PY) -m benchmarks $(BENCH_ARGS)

# The benchmark compares the migration with pgloader.
.PHONY: pgloader
pgloader:
	$(call ensure_tools,pgloader,pgloader,its figure will be reported as not measured)

# Resolves pyproject.toml's ranges again, to today's newest releases within them, into the lock
# (every platform, hashes of every file). Run the whole suite before committing the new lock.
lock: install
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --generate-hashes --universal \
		--python-version 3.11 --upgrade --quiet -o $(LOCK)

# The randomized zero-loss test for minutes (SOAK_SECONDS, SOAK_WRITERS writer processes): prints
# the writes acknowledged, refused and lost, and fails on any loss.
SOAK_SECONDS ?= 300
SOAK_WRITERS ?= 4
.PHONY: soak
soak: install
	$(STACK) run -- env SOAK_SECONDS=$(SOAK_SECONDS) SOAK_WRITERS=$(SOAK_WRITERS) \
		$(PY) -m pytest tests/test_zero_loss_random.py -k soak -s -p no:logging --timeout=0

# Stops private servers left running by `bin/stack env`.
stop:
	$(STACK) stop
