"""The reservation's ticket INSERT is one raw statement (reservations.TICKET_INSERT), not ``Ticket.save()``:
it must write exactly the row the ORM would, and fail the way the ORM does."""

from __future__ import annotations

import datetime
import re

import pytest
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.services.identity import Principal
from queueing.models import Ticket
from queueing.services import catalog, reservations
from queueing.services.store import datetime_to_ms
from tests.factory import make_slot, make_user

pytestmark = pytest.mark.django_db


def principal(user) -> Principal:
    return Principal(id=user.pk, has_nik=True, person=user.person_key)


def columns_of(sql: str) -> list[str]:
    listed = re.search(r'INSERT INTO "?queueing_ticket"? \(([^)]*)\)', sql).group(1)
    return [name.strip().strip('"') for name in listed.split(",")]


def test_every_column_of_the_ticket_table_but_the_id_is_written_as_the_orm_writes_it(settings):
    model_columns = [f.column for f in Ticket._meta.concrete_fields if not f.primary_key]
    assert sorted(reservations.TICKET_INSERT_COLUMNS) == sorted(model_columns)  # a new field fails here

    slot = make_slot(quota_size=5)
    ref = catalog.by_id(slot.pk)
    raw_buyer, orm_buyer = make_user(), make_user()
    reserved_ms = datetime_to_ms(timezone.now() - datetime.timedelta(seconds=3))
    for one_per_day in (True, False):
        settings.WAR_ONE_PER_DAY = one_per_day
        Ticket.objects.all().delete()
        before = timezone.now()
        with CaptureQueriesContext(connection) as raw_queries:
            reservations._insert_ticket(principal(raw_buyer), ref, 1, "RAWW-0000-0001", reserved_ms)
        with CaptureQueriesContext(connection) as orm_queries:
            reservations._new_ticket(principal(orm_buyer), ref, 2, "ORMM-0000-0002", reserved_ms).save(
                force_insert=True
            )
        after = timezone.now()
        assert len(raw_queries) == len(orm_queries) == 1
        # The ORM's own INSERT names the same columns (it adds RETURNING the id, which nobody reads).
        assert sorted(columns_of(orm_queries[0]["sql"])) == sorted(columns_of(raw_queries[0]["sql"]))

        raw = Ticket.objects.get(code="RAWW-0000-0001")
        orm = Ticket.objects.get(code="ORMM-0000-0002")
        differ = {"id", "user", "code", "queue_number", "person", "created_at"}
        for field in Ticket._meta.concrete_fields:
            if field.name not in differ:
                assert getattr(raw, field.attname) == getattr(orm, field.attname), field.name
        assert (raw.user_id, raw.queue_number, raw.person) == (raw_buyer.pk, 1, raw_buyer.person_key)
        assert (raw.status, raw.cancelled_at, raw.one_per_day) == (Ticket.Status.ACTIVE, None, one_per_day)
        assert raw.war_day == slot.date and raw.slot_id == slot.pk
        assert datetime_to_ms(raw.reserved_at) == reserved_ms
        # created_at is the app's clock at the INSERT, as auto_now_add sets it.
        assert before <= raw.created_at <= orm.created_at <= after


def test_a_constraint_violation_is_djangos_integrity_error_with_the_constraint_name():
    slot = make_slot(quota_size=5)
    ref = catalog.by_id(slot.pk)
    buyer, other = make_user(), make_user()
    reservations._insert_ticket(principal(buyer), ref, 1, "AAAA-0000-0001", datetime_to_ms(timezone.now()))
    with pytest.raises(IntegrityError) as taken:
        reservations._insert_ticket(principal(other), ref, 1, "AAAA-0000-0002", datetime_to_ms(timezone.now()))
    assert reservations._constraint(taken.value) == reservations.NUMBER_TAKEN
