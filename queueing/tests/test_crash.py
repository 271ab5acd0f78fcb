"""A process killed between Redis and PostgreSQL loses no ticket and duplicates none.

The fault-injection point (honoured only under WAR_TESTING with WAR_FAULT_INJECTION=1) SIGKILLs the
web worker right after reserve.lua succeeded and before the Ticket row is written.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from django.core.management import call_command

from accounts.models import ApiToken
from queueing.models import Ticket
from queueing.services.store import slot_keys
from tests.factory import make_slot, make_user
from tests.live import wait_for, web_server
from wartiket.redis_client import get_redis

pytestmark = pytest.mark.django_db(transaction=True)


def post_war(base: str, token: str, slot, fault: str | None = None):
    body = json.dumps({"location_id": slot.location.slug, "time_slot": slot.time_label}).encode()
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    if fault:
        headers["X-War-Fault"] = fault
    request = urllib.request.Request(f"{base}/api/war", data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback only)
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def kill_mid_reservation(base: str, token: str, slot) -> None:
    with pytest.raises((ConnectionError, urllib.error.URLError)):
        post_war(base, token, slot, fault="kill-after-reserve")
    wait_for(f"{base}/api/time")  # the web server replaces the dead worker


def holder(slot, user) -> list[str]:
    return get_redis().hget(slot_keys(slot.pk, slot.war_day).holders, str(user.pk)).split("|")


def test_reconcile_repair_restores_a_ticket_lost_to_a_crash():
    slot = make_slot(quota_size=5)
    buyer = make_user()
    with web_server(workers=1, WAR_FAULT_INJECTION="1") as base:
        kill_mid_reservation(base, ApiToken.issue(buyer), slot)
    number, code, _ts, committed, _person = holder(slot, buyer)
    assert committed == "0"
    assert not Ticket.objects.exists()

    with pytest.raises(SystemExit) as drift:
        call_command("reconcile", grace_ms=0)
    assert drift.value.code == 1

    call_command("reconcile", repair=True, grace_ms=0)
    ticket = Ticket.objects.get()
    assert (ticket.code, ticket.queue_number, ticket.user_id) == (code, int(number), buyer.pk)
    call_command("reconcile", grace_ms=0)  # no drift left: returns normally
    call_command("reconcile", repair=True, grace_ms=0)
    assert Ticket.objects.count() == 1  # repairing twice writes nothing twice


def test_the_buyers_retry_after_a_crash_gets_the_same_ticket_written_once():
    slot = make_slot(quota_size=5)
    buyer = make_user()
    token = ApiToken.issue(buyer)
    with web_server(workers=1, WAR_FAULT_INJECTION="1") as base:
        kill_mid_reservation(base, token, slot)
        _number, code, _ts, _committed, _person = holder(slot, buyer)
        status, body = post_war(base, token, slot)
        assert (status, body["code"], body["ticket"]["code"]) == (200, "already_reserved", code)
        assert Ticket.objects.get().code == code
        assert holder(slot, buyer)[3] == "1"
        assert post_war(base, token, slot)[0] == 200
    assert Ticket.objects.count() == 1
    call_command("reconcile", grace_ms=0)


def test_fault_injection_is_inert_without_its_setting():
    slot = make_slot(quota_size=5)
    buyer = make_user()
    with web_server(workers=1) as base:
        status, body = post_war(base, ApiToken.issue(buyer), slot, fault="kill-after-reserve")
    assert (status, body["code"]) == (201, "reserved")
    assert Ticket.objects.filter(code=body["ticket"]["code"]).exists()
