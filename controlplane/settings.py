"""Settings for the unified-database control plane.

Every resource is a URL read from the environment (or a `.env` file beside `manage.py`):
`DATABASE_URL` (the control plane's own database), `UNIFIED_DATABASE_URL` (the unified AudienceOS
database), `REVOS_DATABASE_URL` (the RevOS source) and `REDIS_URL`. `bin/stack` fills them with a
private PostgreSQL and Redis when they are not given.
"""

import os
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# The environment wins over .env; ENV_FILE names another file ("" reads none).
_env_file = os.environ.get("ENV_FILE", str(BASE_DIR / ".env"))
if _env_file:
    environ.Env.read_env(_env_file, overwrite=False)
    # Then the URLs of the private servers a running `bin/stack` (`make demo`) started, so the
    # README's `manage.py` commands work as printed in a second shell. bin/stack deletes the file
    # when those servers stop.
    _stack_env = Path(os.environ.get("STACK_DATA_DIR") or BASE_DIR / "var") / "stack.env"
    if _stack_env.exists():
        environ.Env.read_env(str(_stack_env), overwrite=False)


_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}
_SERVER_KEEPALIVES = "-c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3"


# Each kind of work sets its own session limits rather than inheriting the server's (a hosted
# project's defaults differ from a local server's). Copies and verification run long statements (a
# batch, a table's checksum) and keep a REPEATABLE READ snapshot open for the whole run, idle while
# other connections write (the lanes import it): as long as a migration job may run. DDL and the
# fence fail fast rather than queue the apps' writes behind a lock they wait for. `control` is all
# else, the admin's and the flags API's queries included. Values are PostgreSQL durations;
# etl/connections.py maps each connection's purpose to its kind (docs/connections.md).
DATABASE_SESSION_TIMEOUTS = {
    "copy": {"statement_timeout": "1h", "lock_timeout": "1min", "idle_in_transaction_session_timeout": "6h"},
    "verification": {"statement_timeout": "1h", "lock_timeout": "1min", "idle_in_transaction_session_timeout": "6h"},
    "ddl": {"statement_timeout": "15min", "lock_timeout": "5s", "idle_in_transaction_session_timeout": "1min"},
    "fence": {"statement_timeout": "30s", "lock_timeout": "5s", "idle_in_transaction_session_timeout": "1min"},
    "control": {"statement_timeout": "5min", "lock_timeout": "30s", "idle_in_transaction_session_timeout": "10min"},
}
# The same, as the `-c name=value` startup options a connection of each kind is opened with.
DATABASE_SESSION_OPTIONS = {
    kind: " ".join(f"-c {name}={value}" for name, value in limits.items())
    for kind, limits in DATABASE_SESSION_TIMEOUTS.items()
}


# Supavisor's transaction mode listens on 6543; PgBouncer URLs carry pgbouncer=true (Prisma's flag).
TRANSACTION_POOLER_PORT = 6543


def _transaction_pooler(raw: str) -> str | None:
    """Why this URL points at a transaction pooler, or None."""
    url = urlparse(raw)
    if url.port == TRANSACTION_POOLER_PORT:
        return f"port {TRANSACTION_POOLER_PORT} is Supavisor's transaction mode"
    if any(value.lower() == "true" for value in parse_qs(url.query).get("pgbouncer", [])):
        return "pgbouncer=true marks a transaction pooler"
    return None


def _database(var: str) -> dict:
    """Parse one database URL, failing with a message that says what to set."""
    raw = env.str(var, default="")
    if not raw:
        raise ImproperlyConfigured(
            f"{var} is not set. Set it to a PostgreSQL URL (postgres://user@host:5432/name), "
            "or start the project with `make demo` / `bin/stack`, which provide a private PostgreSQL."
        )
    if urlparse(raw).scheme not in {"postgres", "postgresql", "pgsql"}:
        raise ImproperlyConfigured(f"{var}={raw!r} is not a PostgreSQL URL (postgres://user@host:5432/name).")
    if why := _transaction_pooler(raw):
        # A transaction pooler hands each transaction to any server session: advisory locks, exported
        # snapshots, the fence's bypass and SET would land on sessions the control plane does not hold.
        raise ImproperlyConfigured(
            f"{var} points at a transaction pooler ({why}); the control plane needs a session of its own"
            " (advisory locks, exported snapshots, the fence, SET). Use the session pooler (the same host,"
            " port 5432) or the direct connection (db.<project-ref>.supabase.co:5432); see docs/connections.md."
        )
    config = env.db_url_config(raw)
    if not config.get("NAME"):
        raise ImproperlyConfigured(f"{var}={raw!r} names no database (postgres://user@host:5432/<name>).")
    config.setdefault("CONN_HEALTH_CHECKS", True)
    options = config.setdefault("OPTIONS", {})
    options.setdefault("connect_timeout", env.int("DB_CONNECT_TIMEOUT", default=5))
    # Keepalives on both ends, so neither side waits hours for a host that vanished (the same values
    # as the engine's connections, migration_jobs/etl/connections.py).
    for parameter, value in _KEEPALIVES.items():
        options.setdefault(parameter, value)
    # The URL's own `options` come last, so a value set there wins.
    own = options.get("options", "")
    options["options"] = f"{DATABASE_SESSION_OPTIONS['control']} {_SERVER_KEEPALIVES} {own}".strip()
    return config


def _redis_url() -> str:
    raw = env.str("REDIS_URL", default="")
    if not raw:
        raise ImproperlyConfigured(
            "REDIS_URL is not set. Set it to redis://host:6379/0 (or unix:///path/redis.sock), "
            "or start the project with `make demo` / `bin/stack`, which provide a private Redis."
        )
    if urlparse(raw).scheme not in {"redis", "rediss", "unix"}:
        raise ImproperlyConfigured(f"REDIS_URL={raw!r} is not a Redis URL (redis://host:6379/0).")
    return raw


DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY is not set. Set SECRET_KEY (or DEBUG=true for development).")
    SECRET_KEY = "insecure-development-key-only-used-with-DEBUG"
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_rq",
    "migration_jobs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Before the session is read: a NUL byte reaches no database (a 400, migration_jobs/middleware.py).
    "migration_jobs.middleware.NulByteMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "migration_jobs.middleware.ServiceUnavailableMiddleware",
]

ROOT_URLCONF = "controlplane.urls"
WSGI_APPLICATION = "controlplane.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": _database("DATABASE_URL"),
    "unified": _database("UNIFIED_DATABASE_URL"),
    "revos": _database("REVOS_DATABASE_URL"),
}
# The tenant databases are owned by the SQL in sql/; the test runner builds them from it.
for _alias in ("unified", "revos"):
    DATABASES[_alias]["TEST"] = {"NAME": f"test_{DATABASES[_alias]['NAME']}", "MIGRATE": False}
DATABASE_ROUTERS = ["migration_jobs.routers.TenantDatabaseRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = _redis_url()
RQ_QUEUES = {
    "migrations": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": env.int("MIGRATION_JOB_TIMEOUT", default=6 * 3600)},
    "verification": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": env.int("VERIFICATION_JOB_TIMEOUT", default=3600)},
    "audit": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 600},
}
# django-rq would also register its dashboard in the admin site (django-rq 4: every job page under
# /admin/django_rq/dashboard/, guarded only by is_staff). The project mounts those pages once, at
# /admin/rq/, behind its own permissions (controlplane/urls.py).
RQ_SHOW_ADMIN_LINK = False

# Migration engine knobs: rows per batch (one transaction and one checkpoint each).
MIGRATION_BATCH_SIZE = env.int("MIGRATION_BATCH_SIZE", default=20_000)
MIGRATION_JOB_TIMEOUT = env.int("MIGRATION_JOB_TIMEOUT", default=6 * 3600)
# A first load checks each batch's foreign keys with one query per key instead of row by row,
# where the database role may turn row triggers off (superuser, Supabase's postgres). See etl/engine.py.
MIGRATION_SET_BASED_FK_CHECKS = env.bool("MIGRATION_SET_BASED_FK_CHECKS", default=True)
# Parallelism: tables a migration writes at once (one unified connection each) and verification
# checks run at once (one connection to each database each). 0: the database host's CPU count
# when it is this machine, else 2 (etl/parallel.py).
MIGRATION_WRITERS = env.int("MIGRATION_WRITERS", default=0)
VERIFICATION_WORKERS = env.int("VERIFICATION_WORKERS", default=0)
# A table with more source rows than this is written by every writer at once, each an id range
# with its own checkpoint (a 1M-row agency is mostly a few tables).
MIGRATION_SPLIT_ROWS = env.int("MIGRATION_SPLIT_ROWS", default=100_000)
for _name in ("MIGRATION_WRITERS", "VERIFICATION_WORKERS", "MIGRATION_SPLIT_ROWS"):
    if globals()[_name] < 0:
        raise ImproperlyConfigured(
            f"{_name}={globals()[_name]} is negative; set 0 or more (0 writers or workers: the default)."
        )
# Change capture and cutover (etl/capture.py, services/kinds/cutover.py). Registering an agency for capture
# waits for RevOS transactions older than the registration (so the first copy misses none); the
# cutover's drain waits for transactions older than its fence, and aborts (lifting the fence) past it.
CAPTURE_REGISTER_WAIT_SECONDS = env.float("CAPTURE_REGISTER_WAIT_SECONDS", default=120)
CUTOVER_DRAIN_TIMEOUT_SECONDS = env.float("CUTOVER_DRAIN_TIMEOUT_SECONDS", default=10)
# Before fencing, the cutover catches up until at most this many changed rows are pending (at most
# CUTOVER_CATCH_UP_ROUNDS times), so the fenced catch-up has only the last ones left.
CUTOVER_PENDING_ROWS = env.int("CUTOVER_PENDING_ROWS", default=500)
CUTOVER_CATCH_UP_ROUNDS = env.int("CUTOVER_CATCH_UP_ROUNDS", default=5)

# The reconciler (`manage.py reconcile`, beside the worker) fails runs whose worker died and lifts
# fences no live run owns every this many seconds, without waiting for a request on the agency.
RECONCILE_INTERVAL = env.float("RECONCILE_INTERVAL", default=15)
if RECONCILE_INTERVAL <= 0:
    raise ImproperlyConfigured(f"RECONCILE_INTERVAL={RECONCILE_INTERVAL} is not a period; set seconds above 0.")
# The continuous catch-up (manage.py catch_up_stream): seconds between its passes.
CATCH_UP_STREAM_INTERVAL = env.float("CATCH_UP_STREAM_INTERVAL", default=5)
if CATCH_UP_STREAM_INTERVAL <= 0:
    raise ImproperlyConfigured(
        f"CATCH_UP_STREAM_INTERVAL={CATCH_UP_STREAM_INTERVAL} is not a period; set seconds above 0."
    )

# Many workers, one unified database: at most this many agencies migrate (or roll back) at once,
# whatever the number of workers and hosts; the others wait, visibly ("waiting: 4 running, limit 4").
# 0 means no limit.
MIGRATION_MAX_CONCURRENT_AGENCIES = env.int("MIGRATION_MAX_CONCURRENT_AGENCIES", default=4)
# The health throttle: between batches a migration backs off while the unified database shows one of
# these over its threshold (it also serves live AudienceOS traffic). See services/throttle.py.
THROTTLE_MAX_TRANSACTION_SECONDS = env.float("THROTTLE_MAX_TRANSACTION_SECONDS", default=120)
THROTTLE_MAX_LOCK_WAITS = env.int("THROTTLE_MAX_LOCK_WAITS", default=0)
THROTTLE_MAX_REPLICATION_LAG_SECONDS = env.float("THROTTLE_MAX_REPLICATION_LAG_SECONDS", default=30)
THROTTLE_ON_AUTOVACUUM = env.bool("THROTTLE_ON_AUTOVACUUM", default=True)
# How long a throttled or waiting run sleeps before it looks again; a throttled run doubles the
# sleep each time, up to the maximum.
THROTTLE_CHECK_INTERVAL_SECONDS = env.float("THROTTLE_CHECK_INTERVAL_SECONDS", default=5)
THROTTLE_MAX_SLEEP_SECONDS = env.float("THROTTLE_MAX_SLEEP_SECONDS", default=60)
# Bulk auto-stop: once BULK_AUTO_STOP_MIN_FINISHED runs of a bulk request have finished, if more
# than this share of them failed, the bulk's queued runs are paused (1.0 never stops).
BULK_AUTO_STOP_FAILURE_SHARE = env.float("BULK_AUTO_STOP_FAILURE_SHARE", default=0.25)
BULK_AUTO_STOP_MIN_FINISHED = env.int("BULK_AUTO_STOP_MIN_FINISHED", default=4)
if not 0 <= BULK_AUTO_STOP_FAILURE_SHARE <= 1:
    raise ImproperlyConfigured(
        f"BULK_AUTO_STOP_FAILURE_SHARE={BULK_AUTO_STOP_FAILURE_SHARE} is not a share; set it between 0 and 1."
    )

# seed_demo may wipe (--reset) or open up (--with-phase0-problems) only databases marked as demo or
# test ones (services/database_marks.py); with DEBUG off it refuses outright unless this is set.
DEMO_COMMANDS_ALLOWED = env.bool("DEMO_COMMANDS_ALLOWED", default=False)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "var" / "static")))

# Production (DEBUG off): HTTPS only, served by gunicorn behind a TLS-terminating proxy that sets
# X-Forwarded-Proto; WhiteNoise serves the collected admin static files. Every value can be
# overridden from the environment, but the defaults are the ones `check --deploy` accepts.
if not DEBUG:
    if not env.list("ALLOWED_HOSTS", default=[]):
        raise ImproperlyConfigured(
            "ALLOWED_HOSTS is not set. Set it to the host names the admin is served on "
            "(ALLOWED_HOSTS=controlplane.example.com), or DEBUG=true for development."
        )
    _proxy_header = env.str("SECURE_PROXY_SSL_HEADER", default="HTTP_X_FORWARDED_PROTO")
    SECURE_PROXY_SSL_HEADER = (_proxy_header, "https") if _proxy_header else None
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=365 * 86400)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    MIDDLEWARE.insert(
        MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
        "whitenoise.middleware.WhiteNoiseMiddleware",
    )
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        # Hashed, compressed file names: browsers may cache them forever. Needs `collectstatic`.
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }

LOGIN_URL = "admin:login"

# One line per record, `key=value` (or `json`, or `plain` text); migration lines carry agency_id and run_id.
LOG_FORMAT = env.str("LOG_FORMAT", default="keyvalue")
if LOG_FORMAT not in {"keyvalue", "json", "plain"}:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r} is not one of keyvalue, json, plain.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"run_context": {"()": "migration_jobs.log.RunContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "keyvalue": {"()": "migration_jobs.log.KeyValueFormatter"},
        "json": {"()": "migration_jobs.log.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["run_context"]}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # Django gives its `django` logger a console handler of its own (with DEBUG on) and lets records
    # propagate to the root too, so every django.* line was printed twice: only the root prints here.
    # (`django.server`, runserver's request lines, keeps Django's handler and does not propagate.)
    "loggers": {"django": {"handlers": [], "level": "INFO", "propagate": True}},
}

# The flag read API's per-agency answers are cached here; every flag change bumps a version key.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "controlplane",
    }
}
# Whether the RevOS and unified Supabase projects sign tokens with the same JWT secret (each project
# has its own unless set otherwise). When they differ, the agency's people sign in again at its
# cutover and the flags API says when (selectors/sessions.py).
AUTH_JWT_SECRET_SHARED = env.bool("AUTH_JWT_SECRET_SHARED", default=False)
# The service token both apps send as `Authorization: Bearer ...`; unset, the API answers 503.
FLAGS_API_TOKEN = env.str("FLAGS_API_TOKEN", default="")
# Where manage.py rehearse_fleet writes its reports (latest.json, latest.html); the admin's Rehearsal page reads it.
REHEARSAL_REPORT_DIR = Path(env.str("REHEARSAL_REPORT_DIR", default=str(BASE_DIR / "var" / "rehearsal")))
# GET /api/metrics (Prometheus' format) for a scraper sending `Authorization: Bearer <token>`;
# empty: only logged-in staff may read it.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
