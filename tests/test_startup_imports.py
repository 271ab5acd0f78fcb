"""What a web process imports at boot and on its first reservation: nothing heavier than it needs.

A replacement web worker used to spend ~2.4 s importing aiogram through the URLconf (the Telegram
views), and the first reservation of each worker paid the same again inside a buyer's request (queueing a
notification imported the tasks, the delivery service, and aiogram). Each check runs in a fresh
interpreter, since this test process has long imported everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

REPO = Path(__file__).resolve().parent.parent

PROBE = """
import json, sys
import django
django.setup()
import wartiket.urls
import wartiket.wsgi  # what the web server imports before forking its workers: settings, apps, URLconf
from django.db import connections
booted = {
    "aiogram": "aiogram" in sys.modules,
    "bot": "notifications.bot" in sys.modules,
    # --preload imports this in the master before forking: an open connection would be shared by workers.
    "db_connections": [alias for alias in connections if connections[alias].connection is not None],
}
from notifications.services import publisher, queue  # what a reservation imports to queue its event
publisher.put("ticket_reserved", "NO-SUCH-CODE")  # what its commit hook runs (no database needed here)
assert publisher.flush()  # and the publisher thread's send, which imports whatever a publish imports
booted["aiogram_after_queueing"] = "aiogram" in sys.modules
booted["tasks_after_queueing"] = "notifications.tasks" in sys.modules
print(json.dumps(booted))
"""


def probe() -> dict:
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="wartiket.settings", REDIS_URL=settings.REDIS_URL)
    env["CELERY_BROKER_URL"] = settings.REDIS_URL  # the suite's Redis database, flushed between tests
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_web_boot_and_a_queued_notification_import_no_aiogram_and_open_no_database_connection():
    booted = probe()
    assert booted["aiogram"] is False, "the URLconf imports aiogram again (see notifications/views.py)"
    assert booted["bot"] is False
    assert booted["db_connections"] == []
    assert booted["aiogram_after_queueing"] is False, "queueing a notification imports aiogram again"
    assert booted["tasks_after_queueing"] is False
