"""The running `make run` instance as operator commands in another terminal find it, and what they say when
they can't reach its servers.

`make run` starts PostgreSQL on a unix socket in ``.data/`` and Redis on a port that changes every start;
a second terminal's ``manage.py war_status`` knew neither and fell back to 127.0.0.1:5432 / :6379 (a
60-line traceback). The runner now writes the URLs it uses to ``$WAR_DATA_DIR/env`` while it runs and
removes the file when it stops; ``manage.py`` reads it when the environment names no servers itself.

Standard library only at import time: ``manage.py`` imports this before Django.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, MutableMapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FILE_NAME = "env"
# The servers: if the environment names any of them, it describes another setup and the file is not read
# at all (PostgreSQL of one instance with the Redis of another would be worse than either).
SERVER_VARIABLES = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")
# What the runner writes: the servers plus where it serves (simulate_war's default --url follows them).
WRITTEN = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "HOST", "PORT")
PID_KEY = "DEVRUN_PID"


def data_dir(environ: MutableMapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    return Path(environ.get("WAR_DATA_DIR") or REPO / ".data").resolve()


def env_file(environ: MutableMapping[str, str] | None = None) -> Path:
    return data_dir(environ) / FILE_NAME


@contextlib.contextmanager
def published(folder: Path, values: dict[str, str]) -> Iterator[Path]:
    """Write ``folder/env`` for as long as the block runs; remove it on the way out.

    Removed rather than kept: a file naming a server that is gone would send the next command to a dead
    (or, worse, reused) port. A runner killed with SIGKILL cannot remove it; its pid in the file tells
    readers it is stale.
    """
    path = folder / FILE_NAME
    lines = [
        "# Written by `make run` (python -m wartiket.devrun run) while it runs, removed when it stops.",
        "# manage.py reads it when DATABASE_URL, REDIS_URL and CELERY_BROKER_URL are all unset (docs/setup.md).",
        f"{PID_KEY}={os.getpid()}",
        *(f"{name}={values[name]}" for name in WRITTEN if values.get(name)),
    ]
    folder.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    # Owner-only: a DATABASE_URL from the environment may carry a password.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    os.replace(temporary, path)  # readers never see half a file
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def read(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            values[name.strip()] = value.strip()
    return values


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: exists
    return True


def load(environ: MutableMapping[str, str] | None = None) -> Path | None:
    """Fill the running instance's variables into ``environ`` (default: ``os.environ``) where unset.

    The environment always wins: nothing is read when it names any server (``SERVER_VARIABLES``, directly
    or as ``NAME_FILE``). A file whose runner is gone is ignored. Returns the file read, if any.
    """
    environ = os.environ if environ is None else environ
    if any(environ.get(name) or environ.get(f"{name}_FILE") for name in SERVER_VARIABLES):
        return None
    path = env_file(environ)
    try:
        values = read(path)
    except (FileNotFoundError, PermissionError, UnicodeDecodeError):
        return None
    try:
        pid = int(values.pop(PID_KEY, ""))
    except ValueError:
        return None
    if not _alive(pid):
        return None
    for name, value in values.items():
        if name in WRITTEN and not environ.get(name):
            environ[name] = value
    return path


# --- One line instead of a traceback when a server is unreachable ----------------------------------

HINT = "start `make run` (in this folder), or set {variable}"


def unreachable_message(exc: BaseException) -> str | None:
    """``"cannot reach PostgreSQL at …: start make run or set DATABASE_URL"`` when ``exc`` (or its cause) is
    a failed connection to a server that is indeed unreachable right now; None for any other error.

    Checked again rather than guessed from the exception type: an OperationalError can also be a
    serialization failure or a dropped connection on a server that is fine, and those keep their traceback.
    """
    from django.db.utils import OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    chain = []
    seen = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for error in chain:
        if isinstance(error, OperationalError) and not _postgres_answers():
            return f"cannot reach PostgreSQL at {_postgres_where()} ({_first_line(error)}): " + HINT.format(
                variable="DATABASE_URL"
            )
        if isinstance(error, RedisConnectionError | RedisTimeoutError) and not _redis_answers():
            return f"cannot reach Redis at {_redis_where()} ({_first_line(error)}): " + HINT.format(
                variable="REDIS_URL"
            )
    return None


def _first_line(error: BaseException) -> str:
    text = " ".join(str(error).split("\n")[0].split())
    return text.removeprefix("connection failed: ") or type(error).__name__


def _postgres_where() -> str:
    from django.conf import settings

    db = settings.DATABASES["default"]
    host = db.get("HOST") or "localhost"
    where = host if host.startswith("/") else f"{host}:{db.get('PORT') or 5432}"
    return f"{where}, database {db.get('NAME')}"


def _postgres_answers() -> bool:
    from django.db import connections

    connection = connections["default"]
    with contextlib.suppress(Exception):
        connection.close()
    try:
        connection.ensure_connection()
    except Exception:
        return False
    connection.close()
    return True


def _redis_where() -> str:
    from urllib.parse import urlsplit

    from django.conf import settings

    parts = urlsplit(settings.REDIS_URL)
    return f"{parts.hostname}:{parts.port or 6379}"


def _redis_answers() -> bool:
    import redis
    from django.conf import settings

    try:
        return bool(redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2).ping())
    except Exception:
        return False
