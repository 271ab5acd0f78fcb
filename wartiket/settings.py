"""War Tiket Engine settings: one file, driven by the environment.

Defaults make ``make run`` work on a laptop (DEBUG on, embedded servers). Production sets
``DJANGO_DEBUG=false`` plus the secrets and hosts; ``manage.py check --deploy`` then passes.
Every variable is listed with a one-line comment in ``.env.example``.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from django.core.exceptions import ImproperlyConfigured

from wartiket.env import database_from_url, env, envbool, envint, envlist

BASE_DIR = Path(__file__).resolve().parent.parent

# The test suite runs the same settings; WAR_TESTING only switches on test-only conveniences
# (fast password hashing, a separate Redis database, fault-injection hooks). pytest sets it through
# wartiket/settings_test.py, the servers tests start through tests/live.py, `make test` through devrun.
TESTING = envbool("WAR_TESTING", False)
DEBUG = envbool("DJANGO_DEBUG", True)

SECRET_KEY = env("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) is required when DEBUG is off")
    SECRET_KEY = "dev-only-insecure-key-never-use-in-production-0123456789abcdef"  # noqa: S105 (DEBUG only)

ALLOWED_HOSTS = envlist("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = envlist("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc files for /api/docs/ and /api/redoc/, served by us
    "channels",
    "axes",  # failed-login lockout (accounts/services/throttle.py)
    "accounts",
    "queueing",
    "notifications",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "wartiket.middleware.ServiceUnavailableMiddleware",
    "wartiket.middleware.SessionMiddleware",
    "wartiket.middleware.IndonesianFirstLocaleMiddleware",
    "wartiket.middleware.ApiErrorMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Turns a login refused for lockout into 429 + Retry-After (accounts.services.throttle.lockout_response).
    "axes.middleware.AxesMiddleware",
]
ROOT_URLCONF = "wartiket.urls"
# A refused form (expired CSRF token) gets the site's branded 403 page, or JSON under /api/.
CSRF_FAILURE_VIEW = "wartiket.api_errors.csrf_failure"
WSGI_APPLICATION = "wartiket.wsgi.application"
ASGI_APPLICATION = "wartiket.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- PostgreSQL: the durable truth --------------------------------------------------------------
DATABASE_URL = env("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/wartiket")
DATABASES = {"default": database_from_url(DATABASE_URL)}
DATABASES["default"]["CONN_MAX_AGE"] = envint("DB_CONN_MAX_AGE", 60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# A war must fail fast (503) rather than pile up requests behind a stuck database.
DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", envint("DB_CONNECT_TIMEOUT", 3))

# --- Redis: hot counters, the reservation script, sessions, cache, channels, Celery broker --------
REDIS_URL = env("REDIS_URL", "redis://127.0.0.1:6379/0")
if TESTING:
    # The suite flushes its Redis database: never the one `make run` keeps its data in.
    _parts = urlsplit(REDIS_URL)
    REDIS_URL = env("TEST_REDIS_URL") or (
        urlunsplit(_parts._replace(path="/15")) if _parts.scheme in {"redis", "rediss"} else REDIS_URL
    )
REDIS_SOCKET_TIMEOUT = float(env("REDIS_SOCKET_TIMEOUT", "2"))

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "cache",
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "SOCKET_CONNECT_TIMEOUT": REDIS_SOCKET_TIMEOUT,
            "SOCKET_TIMEOUT": REDIS_SOCKET_TIMEOUT,
        },
    }
}
# Sessions live only in Redis so the war endpoint can identify a buyer without touching PostgreSQL.
SESSION_ENGINE = "django.contrib.sessions.backends.cache"
SESSION_CACHE_ALIAS = "default"

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # redis-py 8 reads with a 5 s socket timeout by default, the same 5 s channels_redis blocks in BZPOPMIN
        # waiting for a message: an idle receiver (the live-quota fan-out hub) then dies with TimeoutError
        # (redis/redis-py#4091, django/channels_redis#422). Reads may block longer than that pop.
        # max_connections: redis-py's async pool cap per process. Viewers no longer use the layer (only the
        # hub and live_quota do), so this is headroom rather than a need; kept configurable.
        "CONFIG": {
            "hosts": [
                {
                    "address": REDIS_URL,
                    "socket_timeout": 15,
                    "max_connections": envint("CHANNELS_MAX_CONNECTIONS", 1000),
                }
            ],
            "prefix": "wt-channels",
            # The one group is the live-quota fan-out (queueing/services/fanout.py), whose members re-join
            # every 2 s: a process that died stops receiving broadcasts within half a minute.
            "group_expiry": 30,
        },
    }
}

# --- Auth --------------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# django-axes first: it refuses a locked-out account or address before any password is checked, so not
# even the right password gets in during a lockout.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]

# --- Abuse: login lockout, registration limit, proof of work (docs/fairness.md) -------------------------
# Failed logins (login page, POST /api/auth/token, admin) are counted in Redis per account and per client
# address; past either limit both are refused with 429 + Retry-After until the counter expires. The counter
# lives WAR_LOGIN_LOCKOUT_SECONDS after the latest failure, so that is both the window and the lockout.
WAR_LOGIN_FAILURES_PER_ACCOUNT = envint("WAR_LOGIN_FAILURES_PER_ACCOUNT", 10)
# Far higher per address: one carrier-grade NAT address carries hundreds of buyers, some of them mistyping.
WAR_LOGIN_FAILURES_PER_IP = envint("WAR_LOGIN_FAILURES_PER_IP", 300)
WAR_LOGIN_LOCKOUT_SECONDS = envint("WAR_LOGIN_LOCKOUT_SECONDS", 300)
# New accounts per client address per day (Asia/Jakarta), counted in Redis.
WAR_REGISTRATIONS_PER_IP_PER_DAY = envint("WAR_REGISTRATIONS_PER_IP_PER_DAY", 20)
# Proof of work (ALTCHA, accounts/services/challenge.py): always for sign-ups; for logins and tokens only
# after this many recent failures for the account / from the address (so a first login is a plain request).
WAR_POW_ENABLED = envbool("WAR_POW_ENABLED", True)
WAR_LOGIN_POW_AFTER_FAILURES = envint("WAR_LOGIN_POW_AFTER_FAILURES", 3)
WAR_LOGIN_POW_AFTER_IP_FAILURES = envint("WAR_LOGIN_POW_AFTER_IP_FAILURES", 30)
# Difficulty: the counter to find lies in [MAX/2, MAX), each try costing WAR_POW_COST PBKDF2-SHA256 rounds
# (~3/4 x 5000 x 1000 rounds: a second or two of a phone's CPU). The suite solves hundreds of challenges: it
# lowers the work, never the verification.
WAR_POW_MAX_NUMBER = envint("WAR_POW_MAX_NUMBER", 40 if TESTING else 5000)
WAR_POW_COST = envint("WAR_POW_COST", 10 if TESTING else 1000)
# War attempts on a slot whose challenge is "hot" (queueing.models.Challenge) search this many counters
# instead (4x the work: ~5-10 s of a phone, solved during the countdown); "on" uses WAR_POW_MAX_NUMBER.
WAR_POW_HOT_MAX_NUMBER = envint("WAR_POW_HOT_MAX_NUMBER", 160 if TESTING else 20000)
# Seconds a challenge stays valid (the page solves it on load; a person may take a while to fill the form).
WAR_POW_EXPIRES_SECONDS = envint("WAR_POW_EXPIRES_SECONDS", 1800)
# HMAC key signing challenges; default: derived from DJANGO_SECRET_KEY.
WAR_POW_HMAC_KEY = env("WAR_POW_HMAC_KEY")
AXES_HANDLER = "accounts.services.throttle.AxesHandler"
AXES_CACHE = "default"  # Redis (django-redis), shared by every process
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_FAILURE_LIMIT = WAR_LOGIN_FAILURES_PER_ACCOUNT
AXES_COOLOFF_TIME = datetime.timedelta(seconds=WAR_LOGIN_LOCKOUT_SECONDS)
# A locked-out client's further attempts do not extend its lockout: the Retry-After we send stays true.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_USERNAME_CALLABLE = "accounts.services.throttle.username"
AXES_CLIENT_IP_CALLABLE = "wartiket.http.client_ip"
AXES_LOCKOUT_CALLABLE = "accounts.services.throttle.lockout_response"
# The cache handler keeps nothing in PostgreSQL: axes' admin pages would only ever be empty.
AXES_ENABLE_ADMIN = False

# --- I18N --------------------------------------------------------------------------------------
LANGUAGE_CODE = "id"
LANGUAGES = [("id", "Bahasa Indonesia"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Asia/Jakarta"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
# WhiteNoise serves static files from the app server itself (no CDN, no separate file server needed);
# with DEBUG it reads them straight from the source folders.
WHITENOISE_USE_FINDERS = DEBUG
# WhiteNoise 6 has no type for the web app manifest (static/manifest.webmanifest) and would send octet-stream.
WHITENOISE_MIMETYPES = {".webmanifest": "application/manifest+json"}
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG or TESTING
        else "wartiket.storage.StaticFilesStorage"
    },
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Request bodies on this site are small; a war endpoint reading megabytes is an attack.
DATA_UPLOAD_MAX_MEMORY_SIZE = envint("DATA_UPLOAD_MAX_MEMORY_SIZE", 1024 * 1024)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.auth.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # DRF's JSONParser, but a body nested too deep is a 400 malformed_json instead of a RecursionError (500).
    "DEFAULT_PARSER_CLASSES": ["wartiket.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "wartiket.api_errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "War Tiket Engine API",
    "DESCRIPTION": "Queue numbers for boutique ticket wars: exact quota, server-side time authority.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # /api/docs/ and /api/redoc/ load their JavaScript from our static files, never from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- The war ------------------------------------------------------------------------------------
WAR_REQUIRE_NIK = envbool("WAR_REQUIRE_NIK", True)
WAR_ONE_PER_DAY = envbool("WAR_ONE_PER_DAY", True)
WAR_BYPASS_ENABLED = envbool("WAR_BYPASS_ENABLED", DEBUG)
# Attempts per window at the war endpoint, counted atomically inside the reservation script. The per-person
# limit does the real work; the per-IP one only stops a single host's flood: one mobile carrier's CGNAT
# address carries hundreds of honest buyers, who must not starve each other (docs/fairness.md).
WAR_RATE_LIMIT_USER = envint("WAR_RATE_LIMIT_USER", 10)
WAR_RATE_LIMIT_IP = envint("WAR_RATE_LIMIT_IP", 3000)
WAR_RATE_LIMIT_WINDOW_MS = envint("WAR_RATE_LIMIT_WINDOW_MS", 10_000)
# Behind a proxy, the header that carries the client address (e.g. HTTP_X_REAL_IP). Empty: REMOTE_ADDR.
WAR_CLIENT_IP_HEADER = env("WAR_CLIENT_IP_HEADER")
WAR_RETRY_AFTER_SECONDS = envint("WAR_RETRY_AFTER_SECONDS", 2)
# Draw mode (Slot.allocation = draw): entries are taken from this many minutes before the war opens
# until the slot's draw (war_opens_at + draw_grace_seconds). docs/fairness.md.
WAR_DRAW_ENTRY_MINUTES = envint("WAR_DRAW_ENTRY_MINUTES", 15)
# Each war day's reservation journal (a Redis stream read by reconcile) is capped at about this many entries.
WAR_JOURNAL_MAXLEN = envint("WAR_JOURNAL_MAXLEN", 200_000)
# A war day's Redis keys expire this many days after the day ends, once none of its wars is still
# resolvable (queueing/services/expiry.py, hourly). PostgreSQL keeps the tickets for ever.
WAR_DAY_KEYS_KEEP_DAYS = envint("WAR_DAY_KEYS_KEEP_DAYS", 3)
# Rebuild Redis from PostgreSQL by itself after it restarted empty or from an older dump
# (queueing/services/heal.py). Off only for tests that must watch a broken Redis stay broken.
WAR_SELF_HEAL = envbool("WAR_SELF_HEAL", True)
# Before such a rebuild reads PostgreSQL, attempts already past Redis get this long to commit their rows.
WAR_HEAL_GRACE_MS = envint("WAR_HEAL_GRACE_MS", 1000)
# Celery beat compares PostgreSQL with Redis this often (seconds); drift is logged at ERROR and shown in
# the war room and `war_status`. With WAR_RECONCILE_REPAIR on, the safe repairs run too (never a rebuild).
WAR_RECONCILE_INTERVAL = envint("WAR_RECONCILE_INTERVAL", 60)
WAR_RECONCILE_REPAIR = envbool("WAR_RECONCILE_REPAIR", True)
# Test-only hooks; refused outside WAR_TESTING so a production process can never honour them.
WAR_FAULT_INJECTION = TESTING and envbool("WAR_FAULT_INJECTION", False)
WAR_UNSAFE_TEST_PATH = TESTING and envbool("WAR_UNSAFE_TEST_PATH", False)

# --- Telegram -------------------------------------------------------------------------------------
TELEGRAM_BOT_TOKEN = env("TELEGRAM_BOT_TOKEN")
TELEGRAM_WEBHOOK_SECRET = env("TELEGRAM_WEBHOOK_SECRET")
TELEGRAM_API_URL = env("TELEGRAM_API_URL")
TELEGRAM_BOT_USERNAME = env("TELEGRAM_BOT_USERNAME", "WarTiketBot")
# A /start link token is valid this long, once.
TELEGRAM_LINK_TOKEN_MINUTES = envint("TELEGRAM_LINK_TOKEN_MINUTES", 15)
# Reminders go out this many minutes before a war the user opted in to opens.
TELEGRAM_REMINDER_MINUTES = envint("TELEGRAM_REMINDER_MINUTES", 15)
# Telegram's limits: ~30 messages/s per bot, ~1/s per chat (over that: 429 with retry_after).
TELEGRAM_RATE_PER_SECOND = envint("TELEGRAM_RATE_PER_SECOND", 30)
TELEGRAM_CHAT_INTERVAL_MS = envint("TELEGRAM_CHAT_INTERVAL_MS", 1000)
# Failed sends (other than 429 and "blocked") are retried with exponential backoff, then recorded as failed.
TELEGRAM_SEND_MAX_ATTEMPTS = envint("TELEGRAM_SEND_MAX_ATTEMPTS", 6)
TELEGRAM_HTTP_TIMEOUT = envint("TELEGRAM_HTTP_TIMEOUT", 10)
# How long a worker may hold a notification it is sending; must exceed the HTTP timeout. A lapsed lease
# means the worker died and another may take the row over.
TELEGRAM_SEND_LEASE_SECONDS = envint("TELEGRAM_SEND_LEASE_SECONDS", 60)
# A worker that died *during* the HTTP call leaves it unknown whether Telegram got the message: resend
# (a duplicate is possible) or record it as failed for staff to resend from admin (a loss is possible).
TELEGRAM_RESEND_UNCERTAIN = envbool("TELEGRAM_RESEND_UNCERTAIN", True)
# The site users open to link their account (named in the bot's /start reply).
TELEGRAM_SITE_URL = env("TELEGRAM_SITE_URL", "http://127.0.0.1:8000")
# Test-only: seconds a delivery waits after claiming, before the HTTP call (so a test can SIGKILL it there).
TELEGRAM_TEST_PAUSE_BEFORE_SEND = float(env("TELEGRAM_TEST_PAUSE_BEFORE_SEND", "0") or 0) if TESTING else 0.0

# --- Celery: Telegram messages, reminders, self-heal and reconcile in the background ---------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
# A worker killed mid-task must hand the task back, not swallow it (acks_late alone does not).
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "Asia/Jakarta"
# A message a dead worker left unacknowledged is handed out again once older than visibility_timeout; a
# worker looks for such messages every unacked_restore_interval seconds, scanning on every
# unacked_restore_throttle-th look (kombu's defaults: 10 and 10).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": envint("CELERY_VISIBILITY_TIMEOUT", 300),
    "unacked_restore_interval": envint("CELERY_UNACKED_RESTORE_INTERVAL", 10),
    "unacked_restore_throttle": envint("CELERY_UNACKED_RESTORE_THROTTLE", 10),
}
CELERY_BEAT_SCHEDULE = {
    "telegram-reminders": {"task": "notifications.send_due_reminders", "schedule": 30.0},
    "telegram-sweep": {"task": "notifications.sweep", "schedule": 60.0},
    # Self-heal (also run by live_quota every second, and kicked by requests that meet not_ready).
    "war-heal": {"task": "queueing.heal", "schedule": 5.0, "options": {"expires": 5}},
    # Draw mode backstop (live_quota checks every 100 ms, and late war requests kick a due draw).
    "war-draws": {"task": "queueing.draws", "schedule": 2.0, "options": {"expires": 2}},
    "war-reconcile": {
        "task": "queueing.reconcile",
        "schedule": float(WAR_RECONCILE_INTERVAL),
        "options": {"expires": 60},
    },
    "war-expire-days": {"task": "queueing.expire_war_days", "schedule": 3600.0, "options": {"expires": 3600}},
}

# --- Production hardening (active whenever DEBUG is off) -------------------------------------------
if not DEBUG:
    SECURE_SSL_REDIRECT = envbool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = envint("DJANGO_SECURE_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    # The war's refusals (4xx) are its normal answers, counted by the war room: no log line each.
    "filters": {"quiet_war_refusals": {"()": "wartiket.logfilters.QuietClientErrors", "paths": ["/api/war"]}},
    "loggers": {
        "django.request": {"filters": ["quiet_war_refusals"]},
        "django.server": {"level": "WARNING"},
        # axes: its INFO lines (start-up banner, every successful login) would be noise; failures stay WARNING.
        "axes": {"level": "WARNING"},
    },
}

# --- Buyer pages ------------------------------------------------------------------------------
# How often `live_quota` reads every slot's counters and pushes the changed ones to open war pages:
# the longest a viewer waits for a change, and 1000/interval the most messages per second a viewer gets.
WAR_LIVE_INTERVAL_MS = envint("WAR_LIVE_INTERVAL_MS", 250)
# WebSocket frames per second one daphne process spends on a slot's count while it is merely going down:
# with many viewers of a slot, its updates are spaced so that viewers x rate stays within this budget
# (2,000 viewers: one update a second). A change of state (opening, sold out, closed) is never delayed.
WAR_LIVE_FRAMES_PER_SECOND = envint("WAR_LIVE_FRAMES_PER_SECOND", 2000)
