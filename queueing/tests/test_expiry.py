"""War days' Redis keys expire once the day is over (queueing/services/expiry.py), on real Redis."""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone

from queueing import tasks
from queueing.services import expiry
from queueing.services.store import day_tag
from tests.factory import make_slot
from wartiket.redis_client import get_redis

pytestmark = pytest.mark.django_db
DAY = 86400


def past_war(days_ago: int, label: str = "10:00"):
    """A slot on a day ``days_ago`` back whose war closed that day, its keys built in Redis."""
    date = timezone.localdate() - datetime.timedelta(days=days_ago)
    return make_slot(date=date, opens_in=-(days_ago * DAY + 7200), closes_in=-(days_ago * DAY + 3600), label=label)


def keys_of(slot) -> list[str]:
    return sorted(get_redis().scan_iter(match=f"{day_tag(slot.war_day)}:*"))


def test_keys_of_war_days_that_are_over_get_their_expiry_and_live_days_keep_theirs(settings):
    settings.WAR_DAY_KEYS_KEEP_DAYS = 3
    long_gone = past_war(5)  # the day ended 4 days ago: past its 3 days, its keys go now
    recent = past_war(3)  # the day ended 2 days ago: its keys stay one more day
    still_resolvable = past_war(1)  # closed a day ago: within KEEP_AFTER_CLOSE, the war API still answers
    upcoming = make_slot(opens_in=3600, label="13:00")
    r = get_redis()
    r.incr(f"{day_tag(long_gone.war_day)}:rl:u:1")  # any key of the day, not only the slot's
    for slot in (long_gone, recent, still_resolvable, upcoming):
        assert keys_of(slot), slot  # negative control: every day has keys before

    done = {d.day: d for d in expiry.expire_war_days()}

    assert keys_of(long_gone) == []
    assert set(done) == {long_gone.war_day, recent.war_day}
    recent_keys = keys_of(recent)
    assert recent_keys and done[recent.war_day].keys == len(recent_keys)
    end_of_day = datetime.datetime.combine(recent.date + datetime.timedelta(days=1), datetime.time())
    expected = timezone.make_aware(end_of_day) + datetime.timedelta(days=3)
    assert done[recent.war_day].expire_at == expected
    for key in recent_keys:
        assert abs(r.ttl(key) - (expected - timezone.now()).total_seconds()) < 60, key
    for slot in (still_resolvable, upcoming):
        assert {r.ttl(key) for key in keys_of(slot)} == {-1}, slot

    # A day whose keys are gone is not scanned again; a key written late to a day still kept gets the expiry too.
    r.set(f"{day_tag(recent.war_day)}:rl:u:2", 1)
    assert tasks.expire_war_days_task.run() == len(recent_keys) + 1  # the Celery task, run in this process
    assert r.ttl(f"{day_tag(recent.war_day)}:rl:u:2") > 0


def test_the_task_is_scheduled_hourly(settings):
    [entry] = [e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "queueing.expire_war_days"]
    assert entry["schedule"] == 3600.0
