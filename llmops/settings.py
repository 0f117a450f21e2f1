"""Settings for llmops, driven by environment variables (see README "Configuration").

Local defaults need nothing: SQLite in WAL mode, the django-q2 ORM broker, the
in-memory channel layer. `DATABASE_URL` switches to PostgreSQL and `REDIS_URL`
to Redis for channels, the task broker and the cache. `LLMOPS_DEBUG=false` is
production mode and refuses to start without the secrets it needs.
"""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from llmops.env import Env, redact_url
from llmops.outbound import parse_allow_list

BASE_DIR = Path(__file__).resolve().parent.parent
env = Env()

DEBUG = env.bool("LLMOPS_DEBUG", True)
# Absolute: a relative file-cache location makes `check --deploy` warn (caches.W003).
DATA_DIR = Path(env.str("LLMOPS_DATA_DIR", str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)  # SQLite and the file cache live here

_DEV_SECRET_KEY = "django-insecure-llmops-local-development-key-do-not-use-in-production"  # noqa: S105
SECRET_KEY = env.str("LLMOPS_SECRET_KEY") or (_DEV_SECRET_KEY if DEBUG else None)
if not SECRET_KEY:
    raise ImproperlyConfigured("LLMOPS_SECRET_KEY must be set when LLMOPS_DEBUG is false")
if not DEBUG and (len(SECRET_KEY) < 50 or SECRET_KEY.startswith("django-insecure")):
    raise ImproperlyConfigured(
        "LLMOPS_SECRET_KEY must be at least 50 random characters in production"
    )


def _fernet_keys() -> list[str]:
    """Keys that encrypt provider API keys at rest; the first encrypts, all decrypt (rotation)."""
    keys = env.list("LLMOPS_ENCRYPTION_KEYS", [])
    if not keys:
        if not DEBUG:
            raise ImproperlyConfigured(
                "LLMOPS_ENCRYPTION_KEYS must be set when LLMOPS_DEBUG is false "
                '(comma-separated Fernet keys; make one with `python -c "from cryptography.fernet '
                'import Fernet; print(Fernet.generate_key().decode())"`)'
            )
        # A stable local key so a developer's encrypted rows survive restarts.
        digest = hashlib.sha256(f"llmops-fernet:{SECRET_KEY}".encode()).digest()
        return [base64.urlsafe_b64encode(digest).decode()]
    for position, key in enumerate(keys, start=1):
        try:
            if len(base64.urlsafe_b64decode(key.encode())) != 32:
                raise ValueError
        except ValueError:
            raise ImproperlyConfigured(
                f"LLMOPS_ENCRYPTION_KEYS: key #{position} is not a Fernet key "
                "(32 url-safe base64-encoded bytes)"
            ) from None
    return keys


ENCRYPTION_KEYS = _fernet_keys()

ALLOWED_HOSTS = env.list("LLMOPS_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("LLMOPS_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",  # first, so `runserver` is the ASGI one
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "channels",
    "llmops",
    "routing",
    "billing",
    "batches",
    "axes",  # last, as its docs ask: its checks wrap the other apps' login views
]

MIDDLEWARE = [
    "llmops.middleware.ApiHostCheck",  # a foreign Host on /v1 or /api/v1: JSON, never a page
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: turns a locked-out login into the lockout page (registration/lockout.html).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "llmops.urls"
ASGI_APPLICATION = "llmops.asgi.application"
WSGI_APPLICATION = None

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

# --- Database -----------------------------------------------------------------
DATABASE_URL = env.url(
    "DATABASE_URL",
    f"sqlite:///{DATA_DIR / 'llmops.sqlite3'}",
    schemes=("sqlite", "postgres", "postgresql"),
)
try:
    _db = dj_database_url.parse(DATABASE_URL)
except Exception as exc:  # the library raises several types; all mean "bad URL"
    raise ImproperlyConfigured(
        f"DATABASE_URL is not valid ({exc}): {redact_url(DATABASE_URL)}"
    ) from None

LLMOPS_SQLITE_CACHE_KIB = env.int("LLMOPS_SQLITE_CACHE_KIB", 256, min=16, max=1_048_576)
# While a batch's results are ingested (llmops.rows.bulk_page_cache); 0 keeps the one above.
LLMOPS_SQLITE_BULK_CACHE_KIB = env.int("LLMOPS_SQLITE_BULK_CACHE_KIB", 32_768, min=0, max=1_048_576)
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # Measured with the worker cluster: without WAL + IMMEDIATE + a busy timeout, a burst of
    # django-q2 tasks loses results to "database is locked".
    # Each connection's page cache grows to its cache_size as the database does (SQLite's
    # default is 2 MB, never given back): with a connection per database thread that was most
    # of a server's memory growth (M6: 3.5 MB over its first 20,000 requests, 0.5 MB with
    # 256 KiB). Pages beyond it are read from the operating system's file cache.
    _db["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": (
            # WAL mode: set by the backend (llmops.backends.sqlite3), only if not set yet.
            "PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000; "
            f"PRAGMA cache_size=-{LLMOPS_SQLITE_CACHE_KIB};"
        ),
    }
    # A file, not :memory:, so tests with several threads share one test database.
    _db["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
else:
    # Under ASGI each sync_to_async thread holds its own connection; persistent
    # connections would pile up, so close them per request and health-check reuse.
    _db["CONN_MAX_AGE"] = 0
    _db["CONN_HEALTH_CHECKS"] = True
# Django's own backends but for DEBUG's query log, kept only with LLMOPS_LOG_SQL (a cost
# on every statement otherwise; llmops/backends).
LLMOPS_LOG_SQL = env.bool("LLMOPS_LOG_SQL", False)
_DJANGO_ENGINE = _db["ENGINE"]
_db["ENGINE"] = {
    "django.db.backends.sqlite3": "llmops.backends.sqlite3",
    "django.db.backends.postgresql": "llmops.backends.postgresql",
}[_DJANGO_ENGINE]
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channels, tasks, cache ----------------------------------------------
REDIS_URL = env.url("REDIS_URL", None, schemes=("redis", "rediss", "unix"))

Q_CLUSTER = {
    "name": "llmops",
    "workers": env.int("LLMOPS_Q_WORKERS", 2, min=1, max=64),
    # `retry` must exceed `timeout` or a slow task runs twice; finite attempts and
    # no catch-up, because the reconciler (not the queue) owns re-running work.
    "timeout": 60,
    "retry": 120,
    "max_attempts": 1,
    "catch_up": False,
    "save_limit": 250,
    "ack_failures": True,
    "label": "Task queue",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 times socket reads out after 5 s by default, which kills the layer's
            # blocking receive (BZPOPMIN for up to 5 s) on every idle websocket
            # (channels_redis#422). Longer than that wait, a dead server is still noticed.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15}]},
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
        },
        # Per-key rate counts: every daphne process counts against the same limit.
        "throttle": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
        },
        "responses": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
        },
    }
else:
    Q_CLUSTER.update({"orm": "default", "poll": 0.5})
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # django-q2 publishes cluster heartbeats through the cache, and every serving unit reads
    # the configuration's version token from it: one SQLite file, shared by every process on
    # this machine without writing to the main database (llmops/cache.py: a file per entry
    # cost a millisecond per write and a file read per lookup).
    CACHES = {
        "default": {
            "BACKEND": "llmops.cache.SQLiteCache",
            "LOCATION": str(DATA_DIR / "cache.sqlite3"),
            "OPTIONS": {"MAX_ENTRIES": 10_000},
        },
        # Per-key rate counts, rewritten on every API call: one daphne process serves a
        # machine, so they live in its memory (a file write per call cost ~2 ms).
        "throttle": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        # The response cache, in a file of its own: culling its thousands of answers never
        # drops a heartbeat or the version token.
        "responses": {
            "BACKEND": "llmops.cache.SQLiteCache",
            "LOCATION": str(DATA_DIR / "responses.cache.sqlite3"),
            "OPTIONS": {"MAX_ENTRIES": 10_000},
        },
    }

# --- Auth, i18n, static -----------------------------------------------------------
# Production behind a TLS-terminating proxy that sets X-Forwarded-Proto and X-Forwarded-For.
BEHIND_TLS_PROXY = not DEBUG and env.bool("LLMOPS_BEHIND_TLS_PROXY", False)
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "playground"
LOGOUT_REDIRECT_URL = "home"
# Axes first: it refuses a locked-out username+address before any password is checked. API
# keys (routing.auth) are not passwords and never pass through these backends.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Password guessing on /accounts/login/ and /admin/login/ (django-axes): this many wrong
# passwords for one username from one address lock that pair out for the cool-off, in minutes,
# even with the right password; each try while locked restarts the cool-off.
LLMOPS_LOGIN_FAILURES = env.int("LLMOPS_LOGIN_FAILURES", 5, min=1, max=1000)
LLMOPS_LOGIN_COOLOFF_MINUTES = env.int("LLMOPS_LOGIN_COOLOFF_MINUTES", 15, min=1, max=10_080)
AXES_FAILURE_LIMIT = LLMOPS_LOGIN_FAILURES
AXES_COOLOFF_TIME = timedelta(minutes=LLMOPS_LOGIN_COOLOFF_MINUTES)
# Per username and address together: one guesser cannot lock a colleague out from elsewhere.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/lockout.html"


def _login_client_address(request) -> str:
    """The address login failures count against: REMOTE_ADDR, or behind the TLS proxy
    (LLMOPS_BEHIND_TLS_PROXY) the last X-Forwarded-For entry, the one that proxy appended;
    entries left of it are whatever the client chose to send."""
    remote = request.META.get("REMOTE_ADDR", "")
    if not BEHIND_TLS_PROXY:
        return remote
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").rsplit(",", 1)[-1].strip()
    return forwarded or remote


AXES_CLIENT_IP_CALLABLE = _login_client_address
# Server-side: a new API key is shown once through a message and must not ride in a cookie.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"  # filled by collectstatic (make run does it)
STATIC_ROOT.mkdir(exist_ok=True)
# In debug, serve straight from the apps so a developer never needs collectstatic.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# --- Security (production mode passes `check --deploy` with no warnings) ----------
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("LLMOPS_SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # load balancers probe over plain HTTP
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("LLMOPS_HSTS_SECONDS", 31_536_000, min=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("LLMOPS_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env.bool("LLMOPS_HSTS_PRELOAD", True)
    if BEHIND_TLS_PROXY:
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- API ---------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "routing.auth.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "llmops.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        *(["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    ],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_THROTTLE_CLASSES": ["routing.auth.PerKeyRateThrottle"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "llmops API",
    "DESCRIPTION": (
        "Native API of llmops. Authenticate with `Authorization: Bearer <api key>`; "
        "every object is scoped to the key's team."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Several models have a `status`: name each choice set after its model.
    "ENUM_NAME_OVERRIDES": {
        "RequestStatusEnum": "routing.models.Request.Status",
        "BatchJobStatusEnum": "batches.models.BatchJob.Status",
        "BatchItemStatusEnum": "batches.models.BatchItem.Status",
    },
}

# --- llmops ------------------------------------------------------------------------
# `manage.py run` (make run): where daphne and the simulator listen.
LLMOPS_HOST = env.str("LLMOPS_HOST", "127.0.0.1")
LLMOPS_PORT = env.int("LLMOPS_PORT", 8000, min=1, max=65535)
LLMOPS_SIM_HOST = env.str("LLMOPS_SIM_HOST", LLMOPS_HOST)
LLMOPS_SIM_PORT = env.int("LLMOPS_SIM_PORT", 8100, min=1, max=65535)
# Where `seed_demo` points the demo providers (the built-in simulator).
_sim_reach_host = "127.0.0.1" if LLMOPS_SIM_HOST in ("0.0.0.0", "::") else LLMOPS_SIM_HOST  # noqa: S104
LLMOPS_SIMULATOR_URL = env.url(
    "LLMOPS_SIMULATOR_URL", f"http://{_sim_reach_host}:{LLMOPS_SIM_PORT}", schemes=("http", "https")
).rstrip("/")
# Provider base URLs and batch webhooks (llmops.outbound) may not reach loopback, private,
# link-local (the cloud metadata service), unspecified, multicast or reserved addresses, unless
# listed here: host, host:port, [v6]:port, an address or a CIDR block, comma-separated. An admin
# account is not the operator: this is the operator's word. Debug mode trusts this machine's
# loopback (the simulator, a local webhook receiver) and the simulator's own address.
_sim_netloc = urlsplit(LLMOPS_SIMULATOR_URL).netloc
LLMOPS_OUTBOUND_ALLOW_PRIVATE = env.list(
    "LLMOPS_OUTBOUND_ALLOW_PRIVATE", ["127.0.0.0/8", "::1", _sim_netloc] if DEBUG else []
)
try:
    parse_allow_list(LLMOPS_OUTBOUND_ALLOW_PRIVATE)
except ValueError as exc:
    raise ImproperlyConfigured(f"LLMOPS_OUTBOUND_ALLOW_PRIVATE: {exc}") from None
# /healthz probes each provider at most this often; the result is cached.
LLMOPS_PROVIDER_PROBE_TTL = env.int("LLMOPS_PROVIDER_PROBE_TTL", 15, min=0, max=3600)
# A worker cluster counts as up if its last heartbeat is younger than this.
LLMOPS_WORKER_HEARTBEAT_MAX_AGE = env.int("LLMOPS_WORKER_HEARTBEAT_MAX_AGE", 30, min=1)

# --- the request path ----------------------------------------------------------------
# Provider calls: seconds to connect, to the first byte of the answer, and in all.
LLMOPS_PROVIDER_TIMEOUT_CONNECT = env.int("LLMOPS_PROVIDER_TIMEOUT_CONNECT", 5, min=1, max=120)
LLMOPS_PROVIDER_TIMEOUT_FIRST_BYTE = env.int(
    "LLMOPS_PROVIDER_TIMEOUT_FIRST_BYTE", 60, min=1, max=3600
)
LLMOPS_PROVIDER_TIMEOUT_TOTAL = env.int("LLMOPS_PROVIDER_TIMEOUT_TOTAL", 600, min=1, max=3600)
# Consecutive failures that open a provider's circuit, and seconds before a probe.
LLMOPS_CIRCUIT_FAILURES = env.int("LLMOPS_CIRCUIT_FAILURES", 5, min=1, max=1000)
LLMOPS_CIRCUIT_COOLDOWN = env.int("LLMOPS_CIRCUIT_COOLDOWN", 30, min=1, max=86400)
# Request bodies above this are refused with 413 before they are parsed.
LLMOPS_MAX_BODY_BYTES = env.int("LLMOPS_MAX_BODY_BYTES", 1_048_576, min=1024, max=104_857_600)
DATA_UPLOAD_MAX_MEMORY_SIZE = LLMOPS_MAX_BODY_BYTES
# A /v1/messages/batches create carries its requests in its body (Anthropic takes up to 256 MB);
# it is read in pieces up to this cap, parsed whole. Larger batches: /v1/files + /v1/batches.
LLMOPS_MAX_MESSAGE_BATCH_BYTES = env.int(
    "LLMOPS_MAX_MESSAGE_BATCH_BYTES", 64 * 1_048_576, min=1024, max=268_435_456
)
# /metrics wants `Authorization: Bearer <token>` (it names every team's workloads). Unset, it
# is open in debug mode and answers 403 naming this setting in production: metrics are optional,
# so a deployment without them still starts, but never shows them to anyone.
LLMOPS_METRICS_TOKEN = env.str("LLMOPS_METRICS_TOKEN", "")
LLMOPS_METRICS_NEED_TOKEN = not DEBUG  # not settings.DEBUG: the test runner turns that off
# Threads that run the serving endpoints' database work, each keeping its connection
# (llmops/dbthreads.py); 0 runs it in each request's own thread, as Django does. On SQLite one:
# every unit of the serving path writes, and SQLite lets one connection write at a time, so
# more threads only wait for its lock in its busy handler (sleeping and polling) and for
# Python's lock, where one thread takes the units in turn (bench/throughput.py's arms with 1
# and 4 threads, alternating: 5 to 8% less CPU per request with one). PostgreSQL writes rows in
# parallel, and its statements wait on the network: four.
LLMOPS_DB_THREADS = env.int(
    "LLMOPS_DB_THREADS", 1 if _DJANGO_ENGINE == "django.db.backends.sqlite3" else 4, min=0, max=64
)
# Requests per API key (DRF rate syntax: N/second|minute|hour|day), counted in the cache. It
# stops a runaway client, not an application's own load: 100 a second is about half of what
# one daphne process serves (BENCHMARKS.md, M2). At 1,200 a minute (a burst of 1,200) a
# 16-client timing of `make run`, ~180 requests a second, is throttled after seven seconds.
LLMOPS_API_RATE = env.str("LLMOPS_API_RATE", "6000/minute")
if not re.fullmatch(r"[1-9][0-9]*/(second|minute|hour|day)", LLMOPS_API_RATE):
    raise ImproperlyConfigured(
        f"LLMOPS_API_RATE must look like 600/minute (per second|minute|hour|day), "
        f"got {LLMOPS_API_RATE!r}"
    )

# --- websockets ------------------------------------------------------------------------
# A client that leaves mid-stream: read the answer on for up to this many seconds to bill its
# real usage; past that the upstream call is cancelled and an estimate is billed instead.
LLMOPS_WS_DRAIN_SECONDS = env.int("LLMOPS_WS_DRAIN_SECONDS", 3, min=0, max=8)
# /ws/requests/ catches up on changes it was not told of (another process on the in-memory
# channel layer, a dropped message) by reading the database this often, in seconds.
LLMOPS_WS_RESYNC_SECONDS = env.int(
    "LLMOPS_WS_RESYNC_SECONDS", 15 if REDIS_URL else 2, min=1, max=3600
)

# A socket re-reads its credentials (the key not revoked, the session not ended, the user
# still active) at least this often, in seconds; a revocation in this process closes its
# sockets at once (routing.socket_auth).
LLMOPS_WS_AUTH_RECHECK_SECONDS = env.int("LLMOPS_WS_AUTH_RECHECK_SECONDS", 2, min=1, max=60)
# Messages a socket may send: a sustained rate per second and a burst above it. Past them a
# socket gets an error; a socket that keeps flooding is closed (policy violation, 1008).
LLMOPS_WS_MESSAGES_PER_SECOND = env.int("LLMOPS_WS_MESSAGES_PER_SECOND", 10, min=1, max=10_000)
LLMOPS_WS_MESSAGE_BURST = env.int("LLMOPS_WS_MESSAGE_BURST", 30, min=1, max=100_000)
# Largest message a socket accepts, in bytes (a start message carries a whole prompt).
LLMOPS_WS_MAX_MESSAGE_BYTES = env.int(
    "LLMOPS_WS_MAX_MESSAGE_BYTES", LLMOPS_MAX_BODY_BYTES, min=1024, max=104_857_600
)
# Open sockets per API key and per signed-in user, across both websocket endpoints.
LLMOPS_WS_MAX_SOCKETS_PER_CALLER = env.int(
    "LLMOPS_WS_MAX_SOCKETS_PER_CALLER", 20, min=1, max=10_000
)
# Request ids one /ws/requests/ socket may follow (or `all` of its teams').
LLMOPS_WS_MAX_SUBSCRIPTIONS = env.int("LLMOPS_WS_MAX_SUBSCRIPTIONS", 1_000, min=1, max=100_000)

# --- limits every API path shares (llmops.limits) -------------------------------------------
# `metadata`: at most this many characters of JSON, nested at most this deep.
LLMOPS_MAX_METADATA_CHARS = env.int("LLMOPS_MAX_METADATA_CHARS", 4_000, min=100, max=1_000_000)
LLMOPS_MAX_METADATA_DEPTH = env.int("LLMOPS_MAX_METADATA_DEPTH", 5, min=1, max=64)
# Headers a client names values with (Idempotency-Key, X-Request-Id...): at most this long.
LLMOPS_MAX_KEY_HEADER_CHARS = env.int("LLMOPS_MAX_KEY_HEADER_CHARS", 200, min=16, max=4096)

# --- batches ---------------------------------------------------------------------------
# Fault injection for the crash tests only: a worker reaching the named point of a batch job's
# lifecycle (batches.services.crash_point) kills itself with SIGKILL. Never set it otherwise.
LLMOPS_BATCH_CRASH_AT = env.str("LLMOPS_BATCH_CRASH_AT", "")
# Results recorded per ingest transaction: larger is faster, smaller loses less to a crash and
# holds SQLite's write lock for less. A chunk is 13 statements whatever its size
# (batches/services/ingest.py); 2,000 hold the lock about 0.8 s (200 took 1.2 s before the
# ingest was set-based), and a 50,000-result ingest pauses 25 times for waiting writers, not 250.
LLMOPS_BATCH_INGEST_CHUNK = env.int("LLMOPS_BATCH_INGEST_CHUNK", 2000, min=1, max=10_000)
# Seconds a worker step that sent a provider batch's cancel keeps looking for the provider to
# confirm it (most confirm within seconds); past that the job is polled again at the next tick.
LLMOPS_BATCH_CANCEL_WAIT_SECONDS = env.int("LLMOPS_BATCH_CANCEL_WAIT_SECONDS", 15, min=0, max=50)
# Lines a client's batch file (/v1/files) may hold. llmops splits a file into provider jobs at
# each provider's own limit (OpenAI 50,000, Azure with an expiry and Anthropic and Gemini
# 100,000), so a file may be bigger than one provider batch: a client moving from Azure's
# 100,000-line files, or one with more, is not refused. The 200 MB cap stays.
LLMOPS_BATCH_FILE_MAX_LINES = env.int("LLMOPS_BATCH_FILE_MAX_LINES", 200_000, min=1, max=1_000_000)
# Lines of a client's batch file (/v1/batches) admitted per database transaction by a worker:
# each transaction holds SQLite's one write lock, which every realtime request waits for
# (100 lines: about 40 ms on this machine).
LLMOPS_BATCH_ADMIT_CHUNK = env.int("LLMOPS_BATCH_ADMIT_CHUNK", 100, min=1, max=10_000)
# Milliseconds a long batch write (admission, ingest, cancellation) leaves at least between two
# of its transactions so that waiting writers get SQLite's lock (the work it does in between
# counts: batches.services.common.WriteGaps). SQLite's busy handler retries at
# growing intervals, every 100 ms once a writer has waited about a quarter of a second, so a
# shorter pause can fall between two tries and the long write wins the lock again and again
# (seen: realtime p99 0.68 s with 40 ms pauses during a 50,000-line admission). PostgreSQL
# locks rows, not the database: no pause unless asked for.
LLMOPS_BATCH_WRITE_PAUSE_MS = env.int(
    "LLMOPS_BATCH_WRITE_PAUSE_MS",
    110 if _DJANGO_ENGINE == "django.db.backends.sqlite3" else 0,
    min=0,
    max=5_000,
)

LOG_LEVEL = env.choice(
    "LLMOPS_LOG_LEVEL", "INFO", ("debug", "info", "warning", "error", "critical")
).upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        # One line per event; request bodies and prompts are never put in a log record.
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "filters": {"healthz": {"()": "llmops.logging.HealthzUnavailableIsNotAnError"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Replaces Django's default console handler, which would print each record twice.
        "django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "django.request": {"filters": ["healthz"]},
        "django.db.backends": {"level": "WARNING"},
        "daphne": {"level": "WARNING" if LOG_LEVEL == "INFO" else LOG_LEVEL},
        # The SDKs' HTTP client logs every call at INFO; a batch poll loop would flood the log.
        "httpx": {"level": "WARNING" if LOG_LEVEL == "INFO" else LOG_LEVEL},
        "httpx2": {"level": "WARNING" if LOG_LEVEL == "INFO" else LOG_LEVEL},
        # At DEBUG the SDKs log each request's options, prompts included (anthropic does;
        # older openai versions too): prompts are never logged, whatever LLMOPS_LOG_LEVEL says.
        "anthropic._base_client": {"level": "INFO"},
        "openai._base_client": {"level": "INFO"},
        # Its version banner at every start; lockouts (WARNING) and failures (INFO) still log.
        "axes.apps": {"level": "WARNING"},
    },
}
