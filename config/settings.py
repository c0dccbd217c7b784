"""Settings, read from the environment (12-factor) with development defaults.

With no ``DATABASE_URL`` the embedded PostgreSQL in ``.data/`` is started (see
``config.embedded_pg``). ``REDIS_URL`` is optional: when set, django-q2's broker
and the channel layer use Redis; otherwise both live in PostgreSQL.
"""

from __future__ import annotations

import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# DJANGO_ENV=production: no development defaults (see "security" below, docs/security.md).
DJANGO_ENV = env.str("DJANGO_ENV", default="development").strip().lower()
if DJANGO_ENV not in ("development", "production"):
    raise ImproperlyConfigured(f"DJANGO_ENV must be development or production, not {DJANGO_ENV!r}")
PRODUCTION = DJANGO_ENV == "production"


def _required(name: str, why: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise ImproperlyConfigured(f"DJANGO_ENV=production needs {name}: {why}")
    return value


if PRODUCTION:
    if env.bool("DEBUG", default=False):
        raise ImproperlyConfigured("DJANGO_ENV=production refuses DEBUG=true")
    DEBUG = False
    SECRET_KEY = _required("SECRET_KEY", "a random string of at least 50 characters")
    if len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
        raise ImproperlyConfigured("SECRET_KEY must be at least 50 random characters")
    ALLOWED_HOSTS = [
        h.strip()
        for h in _required("ALLOWED_HOSTS", "the comma-separated host names served").split(",")
        if h.strip()
    ]
else:
    DEBUG = env.bool("DEBUG", default=True)
    SECRET_KEY = env.str(
        "SECRET_KEY", default="dev-insecure-secret-key-change-me-in-production-0123456789"
    )
    ALLOWED_HOSTS = env.list(
        "ALLOWED_HOSTS", default=[".localhost", "localhost", "127.0.0.1", "testserver"]
    )
CSRF_TRUSTED_ORIGINS = env.list(
    "CSRF_TRUSTED_ORIGINS", default=["http://*.localhost:8000", "http://localhost:8000"]
)

if "DATABASE_URL" in os.environ:
    DATABASE_URL = env.str("DATABASE_URL")
    EMBEDDED_DATABASE = False
else:
    from config import embedded_pg

    DATABASE_URL = embedded_pg.ensure_running()
    EMBEDDED_DATABASE = True

_db = environ.Env.db_url_config(DATABASE_URL)
_db.update(
    ENGINE="django_tenants.postgresql_backend",
    # Persistent connections: with 0, django-q2's ORM broker reconnects per enqueue.
    CONN_MAX_AGE=env.int("CONN_MAX_AGE", default=600),
    CONN_HEALTH_CHECKS=True,
)
_db.setdefault("TEST", {})["NAME"] = env.str("TEST_DATABASE_NAME", default=f"test_{_db['NAME']}")
DATABASES = {"default": _db}
DATABASE_ROUTERS = ("django_tenants.routers.TenantSyncRouter",)

REDIS_URL = env.str("REDIS_URL", default="")

# --- tenancy ---------------------------------------------------------------
# Users, sessions and the admin log are per tenant (each seller's staff log in on
# the seller's domain). The public schema has its own users for platform staff.
_PER_SCHEMA_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.admin",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",  # login throttling: its attempt tables live with each schema's users
]
SHARED_APPS = [
    "tenants",  # before django_tenants so our create_tenant command wins
    "django_tenants",
    "channels",
    "django.contrib.postgres",  # registers OpClass for expression indexes (SKU prefix search)
    *_PER_SCHEMA_APPS,
    "django_q",  # shared only: its admin would show every tenant's tasks
    "channels_postgres",
    "ninja",  # the API docs page from local static files (no CDN: works offline, CSP-clean)
]
TENANT_APPS = [
    *_PER_SCHEMA_APPS,
    "marketplaces",
    "orchestration",
    "api",
    "uploads",
    "webhooks",
    "planning",
    "audit",
    "scheduler",
    "operations",
]
INSTALLED_APPS = list(SHARED_APPS) + [a for a in TENANT_APPS if a not in SHARED_APPS]

TENANT_MODEL = "tenants.Tenant"
TENANT_DOMAIN_MODEL = "tenants.Domain"
TENANT_LIMIT_SET_CALLS = True
PUBLIC_SCHEMA_URLCONF = "config.urls_public"
ROOT_URLCONF = "config.urls_tenant"
SHOW_PUBLIC_IF_NO_TENANT_FOUND = False

MIDDLEWARE = [
    "config.middleware.RequestIdMiddleware",
    # Static files before tenant resolution: the same assets on every host.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "config.middleware.TenantMiddleware",  # django-tenants' (503 when the database is away)
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a lockout into its 429 page
]

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
                "django.template.context_processors.csp",
            ],
        },
    },
]

ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 8},
    },
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / ".data" / "static"
MEDIA_ROOT = BASE_DIR / ".data" / "media"
# WhiteNoise serves app static files straight from their finders (no collectstatic step
# needed for `make run`); `collectstatic` into STATIC_ROOT works too for deployments.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
STORAGES = {
    "default": {"BACKEND": "django_tenants.files.storage.TenantFileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- django-q2 ----------------------------------------------------------------
# The engine's own tables are the queue of record; q2 only carries "go and claim
# work" messages. retry > timeout + queue wait (PITFALLS); queue_limit 1: the pusher
# fetches at most 2 messages ahead of its workers (one queued, one it waits to put), so a
# busy cluster keeps few drain messages from idle ones (orchestration/engine/slots.py);
# save_limit 0 (the per-result select_for_update is q2's main bottleneck): the operator tick
# deletes old results instead (Q_KEEP_SUCCESS_HOURS, Q_KEEP_FAILURE_DAYS below).
Q_CLUSTER: dict = {
    "name": "orchestrator",
    "workers": env.int("Q_WORKERS", default=2),
    "recycle": 500,
    "timeout": env.int("Q_TIMEOUT", default=300),
    "retry": env.int("Q_RETRY", default=420),
    "max_attempts": 1,
    "ack_failures": True,
    "queue_limit": env.int("Q_QUEUE_LIMIT", default=1),
    "bulk": 1,
    "save_limit": 0,
    "catch_up": False,
    "poll": 0.2,
    "label": "Django Q2",
    "sync": env.bool("Q_SYNC", default=False),
}
# q2's stored results (a row per message run) are deleted after this many hours (successes)
# and days (failures) by the operator tick (operations.retention); 0 keeps them.
Q_KEEP_SUCCESS_HOURS = env.int("Q_KEEP_SUCCESS_HOURS", default=24)
Q_KEEP_FAILURE_DAYS = env.int("Q_KEEP_FAILURE_DAYS", default=30)
for _name in ("Q_KEEP_SUCCESS_HOURS", "Q_KEEP_FAILURE_DAYS"):
    if globals()[_name] < 0:  # a negative age would delete results as they are written
        raise ImproperlyConfigured(f"{_name} must be 0 (keep) or more, not {globals()[_name]}")
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# --- channels -----------------------------------------------------------------
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "config.redis_layer.RedisChannelLayer",
            # redis-py 8's default 5 s socket timeout kills idle consumers (PITFALLS).
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": None}]},
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            # channels-postgres with a LISTEN that survives a database restart
            # (config/channel_layer.py).
            "BACKEND": "config.channel_layer.ReconnectingPostgresChannelLayer",
            # channels-postgres silently yields no layer without PASSWORD / TIME_ZONE.
            "CONFIG": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": _db["NAME"],
                "USER": _db["USER"],
                "PASSWORD": _db["PASSWORD"] or "",
                "HOST": _db["HOST"],
                "PORT": _db["PORT"],
                "TIME_ZONE": None,
                # Live messages are ephemeral (they expire in a minute; a page that misses
                # one reloads its snapshot): their commits need not wait for the WAL flush,
                # which the workers' step commits are waiting for (docs/live.md).
                # A server out of reach fails a connect (the listener's, the pool's) in 5 s,
                # not after the system's TCP timeout of minutes.
                "OPTIONS": {"options": "-c synchronous_commit=off", "connect_timeout": 5},
            },
        }
    }

# --- engine ---------------------------------------------------------------------
# Modules that register extra step providers at start-up (comma separated).
ORCHESTRATION_PROVIDER_MODULES = env.list("ORCHESTRATION_PROVIDER_MODULES", default=[])
# Periodic work the watchdog runs after each recovery sweep, tenant by tenant: name → the
# dotted path of a function taking ``now`` (the engine does not import these apps).
ORCHESTRATION_PERIODIC = {
    "fired": "scheduler.periodic.fire_due_all_tenants",
    "operations": "operations.periodic.resume_stalled_all_tenants",
    "pruned": "operations.retention.prune_due_all_tenants",
    "queue_results": "operations.retention.prune_queue_results",
}

# --- marketplaces ---------------------------------------------------------------
SANDBOX_URL = env.str("SANDBOX_URL", default="http://127.0.0.1:8100")

# Requests per caller (token or session) per window, per server process (django cache).
API_RATE_LIMIT = env.str("API_RATE_LIMIT", default="600/m")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,  # True would silence server errors (PITFALLS)
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "filters": {"request_id": {"()": "config.middleware.RequestIdLogFilter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "pgserver": {"level": "WARNING"},
        "axes": {"level": "WARNING"},  # every login at INFO otherwise; lockouts are warnings
    },
}

# --- security (docs/security.md) ---------------------------------------------------
# Outbound requests to user-given URLs (config/netsafety.py): private, loopback and
# link-local addresses only in development/tests; the sandbox's host:port always.
NETSAFETY_ALLOW_PRIVATE = env.bool("NETSAFETY_ALLOW_PRIVATE", default=not PRODUCTION)
NETSAFETY_ALLOWED_HOSTS = env.list(
    "NETSAFETY_ALLOWED_HOSTS",
    default=[] if PRODUCTION else [SANDBOX_URL.split("://", 1)[-1].split("/", 1)[0]],
)
# Product images: at most this many bytes, image/* only (marketplaces/adapters/images.py).
IMAGE_MAX_BYTES = env.int("IMAGE_MAX_BYTES", default=10 * 1024 * 1024)
# Where each marketplace's API lives: an account's base URL must start with one of these
# (marketplaces.models.base_url_problem); a port `*` takes any port.
MARKETPLACE_BASE_URLS: dict[str, list[str]] = {
    "ebay": ["https://api.ebay.com", "https://api.sandbox.ebay.com"],
    "etsy": ["https://openapi.etsy.com"],
    "vinted": env.list("VINTED_BRIDGE_URLS", default=[]),
}
if not PRODUCTION:  # the sandbox, and loopback on any port (tests start it on a free one)
    for _urls in MARKETPLACE_BASE_URLS.values():
        _urls += [SANDBOX_URL.rstrip("/"), "http://127.0.0.1:*", "http://localhost:*"]
# The diagnostic socket /ws/whoami/ (config/routing.py): never in production.
DIAGNOSTIC_SOCKETS = env.bool("DIAGNOSTIC_SOCKETS", default=not PRODUCTION)
if PRODUCTION and DIAGNOSTIC_SOCKETS:
    raise ImproperlyConfigured("DIAGNOSTIC_SOCKETS cannot be on with DJANGO_ENV=production")
# Error pages and reports: settings holding credentials or URLs are masked.
DEFAULT_EXCEPTION_REPORTER_FILTER = "config.reporting.SafeReporterFilter"
# Content Security Policy (Django's own middleware): scripts from our origin only, no
# inline script (templates pass data through data- attributes). Inline style attributes
# (progress bar widths) are allowed.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF, CSP.UNSAFE_INLINE],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}
# Page behaviours that were inline handlers live in static/ui/ (served like app assets).
STATICFILES_DIRS = [BASE_DIR / "static"]
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
# Login throttling (django-axes): failed logins are counted per username in the schema
# of the host (so per tenant and user); AXES_FAILURE_LIMIT failures lock that username
# out for AXES_COOLOFF_MINUTES (a 429 page), a successful login resets the count.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_MINUTES", default=15) / 60  # hours
# Per username (a user's password cannot be guessed) and per client address (one client
# cannot spray many usernames); the address as config.throttling.client_ip sees it.
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_CLIENT_IP_CALLABLE = "config.throttling.client_ip"
TRUSTED_PROXY_HOPS = env.int(
    "TRUSTED_PROXY_HOPS", default=1 if PRODUCTION and env.bool("BEHIND_TLS_PROXY", True) else 0
)
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
AXES_VERBOSE = False
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # TLS ends at the proxy in front, which must set X-Forwarded-Proto (and strip a
    # client's own). BEHIND_TLS_PROXY=false when Django itself sees the TLS connection.
    if env.bool("BEHIND_TLS_PROXY", default=True):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz"]  # probes from inside, often plain http
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
    CSRF_TRUSTED_ORIGINS = env.list(
        "CSRF_TRUSTED_ORIGINS",
        default=[f"https://*{h}" if h.startswith(".") else f"https://{h}" for h in ALLOWED_HOSTS],
    )

# --- uploads (chunked resumable uploads and the product import; see docs/uploads.md) ---
# Files live in <UPLOADS_ROOT>/<schema>/<upload uuid>/. Sizes in bytes.
UPLOADS_ROOT = env.str("UPLOADS_ROOT", default=str(BASE_DIR / ".data" / "uploads"))
UPLOADS_DEFAULT_PART_SIZE = env.int("UPLOADS_DEFAULT_PART_SIZE", default=8 * 1024 * 1024)
UPLOADS_MIN_PART_SIZE = env.int("UPLOADS_MIN_PART_SIZE", default=1024 * 1024)
UPLOADS_MAX_PART_SIZE = env.int("UPLOADS_MAX_PART_SIZE", default=64 * 1024 * 1024)
UPLOADS_MAX_PARTS = env.int("UPLOADS_MAX_PARTS", default=10_000)
UPLOADS_TENANT_QUOTA_BYTES = env.int("UPLOADS_TENANT_QUOTA_BYTES", default=50 * 1024**3)
UPLOADS_EXPIRE_HOURS = env.int("UPLOADS_EXPIRE_HOURS", default=24)

# --- webhooks (outbound; see docs/webhooks.md) ---------------------------------------
# Endpoints on private, loopback or link-local addresses are refused unless this is true
# (by default as NETSAFETY_ALLOW_PRIVATE: development and tests). Timeouts, retries and
# the lease: ``WEBHOOKS = {...}`` or ``WEBHOOKS_<KEY>`` variables (webhooks/conf.py).
WEBHOOKS_ALLOW_PRIVATE_URLS = env.bool(
    "WEBHOOKS_ALLOW_PRIVATE_URLS", default=NETSAFETY_ALLOW_PRIVATE
)

# --- planning (stock plans as engine jobs; see docs/planning.md) ----------------------
# Time limits of a plan's steps override what the steps declare (seconds), e.g.
# PLANNING_STEP_TIMEOUTS=forecast_demand=120,push_quantities=90
PLANNING = {
    "STEP_TIMEOUTS": {
        step: float(limit) for step, limit in env.dict("PLANNING_STEP_TIMEOUTS", default={}).items()
    },
}

# --- operator: audit, scheduler, operations (see docs/operations.md) --------------------
# Bulk operations: jobs per chunk (one transaction), and how many jobs a bulk request may
# carry out itself before a worker takes over.
OPERATIONS_CHUNK = env.int("OPERATIONS_CHUNK", default=200)
OPERATIONS_INLINE_MAX = env.int("OPERATIONS_INLINE_MAX", default=500)
