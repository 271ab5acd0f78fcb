"""Bad input is refused with a stable code and writes nothing; the QA bypass passes the clock only."""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone

from queueing.models import BypassUse, Ticket
from queueing.services import bypass
from queueing.services.store import slot_keys
from tests.factory import make_slot, make_user, token_client, war_body
from wartiket.redis_client import get_redis

pytestmark = pytest.mark.django_db


def assert_nothing_written(slot):
    assert Ticket.objects.count() == 0
    keys = slot_keys(slot.pk, slot.war_day)
    assert get_redis().hget(keys.slot, "sold") == "0"
    assert get_redis().xlen(keys.journal) == 0


@pytest.mark.parametrize(
    ("payload", "content_type", "status", "code"),
    [
        ('{"location_id": "graha-dipta", "time_slot": "10:0', "application/json", 400, "malformed_json"),
        ('{"location_id": ["graha-dipta"], "time_slot": "10:00"}', "application/json", 400, "invalid"),
        ('{"location_id": "graha-dipta", "time_slot": 1000}', "application/json", 400, "invalid"),
        ('{"location_id": "graha-dipta", "time_slot": "25:00"}', "application/json", 400, "invalid"),
        ('{"location_id": "graha-dipta", "time_slot": "10:00", "date": "besok"}', "application/json", 400, "invalid"),
        (
            '{"location_id": "graha-dipta", "time_slot": "10:00", "user_id": {"a": 1}}',
            "application/json",
            400,
            "invalid",
        ),
        ('{"time_slot": "10:00"}', "application/json", 400, "invalid"),
        ('["graha-dipta", "10:00"]', "application/json", 400, "invalid"),
        ('{"location_id": "atlantis", "time_slot": "10:00"}', "application/json", 404, "unknown_slot"),
        ('{"location_id": "graha-dipta", "time_slot": "23:59"}', "application/json", 404, "unknown_slot"),
        (
            '{"location_id": "graha-dipta", "time_slot": "10:00", "date": "2001-01-01"}',
            "application/json",
            404,
            "unknown_slot",
        ),
        ("location_id=graha-dipta&time_slot=10:00", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (
            '{"location_id": "graha-dipta", "time_slot": "10:00", "pad": "' + "x" * 10_000 + '"}',
            "application/json",
            413,
            "too_large",
        ),
    ],
)
def test_bad_input_gets_a_clear_code_and_writes_nothing(payload, content_type, status, code):
    slot = make_slot()
    response = token_client(make_user()).post("/api/war", payload, content_type=content_type)
    assert response.status_code == status, response.content
    assert response.json()["code"] == code
    assert response.json()["detail"]
    if code == "invalid" and status == 400:
        assert response.json()["errors"]
    assert_nothing_written(slot)


def test_missing_or_wrong_credentials_get_401():
    slot = make_slot()
    from rest_framework.test import APIClient

    anonymous = APIClient().post("/api/war", war_body(slot), format="json")
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "not_authenticated")
    assert anonymous["WWW-Authenticate"] == "Token"
    forged = APIClient(HTTP_AUTHORIZATION="Token wt_not-a-real-token")
    assert forged.post("/api/war", war_body(slot), format="json").status_code == 401
    assert_nothing_written(slot)


def test_only_post_is_allowed():
    response = token_client(make_user()).get("/api/war")
    assert (response.status_code, response.json()["code"]) == (405, "method_not_allowed")


def issue(slot=None, expires_in=3600):
    return bypass.issue("QA", expires_at=timezone.now() + datetime.timedelta(seconds=expires_in), slot=slot)


def test_a_bypass_token_passes_the_time_gate_only_and_every_use_is_recorded(settings):
    settings.WAR_BYPASS_ENABLED = True
    slot = make_slot(quota_size=1, opens_in=3600)
    _token, raw = issue(slot)
    tester, second_tester = make_user(), make_user()
    response = token_client(tester).post("/api/war", war_body(slot), format="json", HTTP_X_WAR_BYPASS=raw)
    assert response.status_code == 201, response.json()
    # Duplicate and quota checks still apply with the token.
    again = token_client(tester).post("/api/war", war_body(slot), format="json", HTTP_X_WAR_BYPASS=raw)
    assert again.json()["code"] == "already_reserved"
    full = token_client(second_tester).post("/api/war", war_body(slot), format="json", HTTP_X_WAR_BYPASS=raw)
    assert full.json()["code"] == "sold_out"
    assert list(BypassUse.objects.order_by("used_at").values_list("user", "slot", "outcome")) == [
        (tester.pk, slot.pk, "reserved"),
        (tester.pk, slot.pk, "already_reserved"),
        (second_tester.pk, slot.pk, "sold_out"),
    ]
    # Without the header the same buyer is still early: the token, not the user, is trusted.
    assert token_client(make_user()).post("/api/war", war_body(slot), format="json").json()["code"] == "too_early"


def test_a_bypass_token_does_not_lift_the_rate_limit(settings):
    settings.WAR_BYPASS_ENABLED = True
    settings.WAR_RATE_LIMIT_USER = 1
    slot = make_slot(quota_size=1, opens_in=3600)
    _, raw = issue()
    client = token_client(make_user())
    client.post("/api/war", war_body(slot), format="json", HTTP_X_WAR_BYPASS=raw)
    limited = client.post("/api/war", war_body(slot), format="json", HTTP_X_WAR_BYPASS=raw)
    assert limited.json()["code"] == "rate_limited"


def test_a_bypass_token_is_ignored_when_bypass_is_disabled(settings):
    settings.WAR_BYPASS_ENABLED = False
    slot = make_slot(opens_in=3600)
    _, raw = issue(slot)
    response = token_client(make_user()).post("/api/war", war_body(slot), format="json", HTTP_X_WAR_BYPASS=raw)
    assert response.json()["code"] == "too_early"
    assert not BypassUse.objects.exists()


@pytest.mark.parametrize("problem", ["expired", "other_slot", "revoked", "unknown"])
def test_an_invalid_bypass_token_is_rejected(settings, problem):
    settings.WAR_BYPASS_ENABLED = True
    slot = make_slot(opens_in=3600)
    other = make_slot(opens_in=3600, label="13:00")
    token, raw = issue(other if problem == "other_slot" else slot, expires_in=-1 if problem == "expired" else 3600)
    if problem == "revoked":
        token.revoked = True
        token.save()
    if problem == "unknown":
        raw = "wtb_unknown"
    response = token_client(make_user()).post("/api/war", war_body(slot), format="json", HTTP_X_WAR_BYPASS=raw)
    assert (response.status_code, response.json()["code"]) == (403, "bypass_invalid")
    assert_nothing_written(slot)


def test_production_settings_keep_bypass_off_by_default():
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from django.conf import settings; import django; django.setup(); "
            "print(settings.WAR_BYPASS_ENABLED, settings.WAR_FAULT_INJECTION, settings.WAR_UNSAFE_TEST_PATH)",
        ],
        env={
            "DJANGO_SETTINGS_MODULE": "wartiket.settings",
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": "x" * 60,
            "WAR_TESTING": "0",
            "WAR_FAULT_INJECTION": "1",
            "WAR_UNSAFE_TEST_PATH": "1",
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["False", "False", "False"]
