"""One holding ticket per person per war day, and per person per slot, enforced by PostgreSQL.

Tickets learn the person they were issued to (the account's NIK at the time) and their war day. Tickets
issued before this migration take the NIK their account has now. Should an existing database already hold
two tickets for one person on one day (possible before: the rule lived only in Redis, keyed by account),
the later ones are kept but marked as issued outside the rule, so the migration never cancels a ticket.
"""

from django.db import migrations, models
from django.db.models import Q

HOLDING = ["active", "checked_in"]


def fill_person_and_day(apps, schema_editor):
    Ticket = apps.get_model("queueing", "Ticket")
    seen_day: set[tuple[str, object]] = set()
    seen_user_day: set[tuple[int, object]] = set()
    seen_slot: set[tuple[str, int]] = set()
    tickets = Ticket.objects.select_related("user", "slot").order_by("reserved_at", "pk")
    for ticket in tickets.iterator():
        nik = ticket.user.nik
        ticket.person = f"nik:{nik}" if nik else f"user:{ticket.user_id}"
        ticket.war_day = ticket.slot.date
        if ticket.status in HOLDING:
            day_key, slot_key = (ticket.person, ticket.war_day), (ticket.person, ticket.slot_id)
            if day_key in seen_day or (ticket.user_id, ticket.war_day) in seen_user_day:
                ticket.one_per_day = False
            seen_day.add(day_key)
            seen_user_day.add((ticket.user_id, ticket.war_day))
            if slot_key in seen_slot:
                # Two holding tickets for one person in one slot cannot be grandfathered by a flag: key the
                # later one by its account, which the old (slot, user) constraint already kept unique.
                ticket.person = f"user:{ticket.user_id}"
            seen_slot.add(slot_key)
        ticket.save(update_fields=["person", "war_day", "one_per_day"])


class Migration(migrations.Migration):
    dependencies = [("queueing", "0002_ticket_quota_trigger")]

    operations = [
        migrations.AddField(model_name="ticket", name="person", field=models.CharField(max_length=40, null=True)),
        migrations.AddField(model_name="ticket", name="war_day", field=models.DateField(null=True)),
        migrations.AddField(model_name="ticket", name="one_per_day", field=models.BooleanField(default=True)),
        migrations.RunPython(fill_person_and_day, migrations.RunPython.noop),
        migrations.AlterField(model_name="ticket", name="person", field=models.CharField(max_length=40)),
        migrations.AlterField(model_name="ticket", name="war_day", field=models.DateField()),
        migrations.AddConstraint(
            model_name="ticket",
            constraint=models.UniqueConstraint(
                condition=Q(status__in=HOLDING), fields=("slot", "person"), name="ticket_one_holding_per_person_slot"
            ),
        ),
        migrations.AddConstraint(
            model_name="ticket",
            constraint=models.UniqueConstraint(
                condition=Q(status__in=HOLDING, one_per_day=True),
                fields=("person", "war_day"),
                name="ticket_one_holding_per_person_day",
            ),
        ),
        migrations.AddConstraint(
            model_name="ticket",
            constraint=models.UniqueConstraint(
                condition=Q(status__in=HOLDING, one_per_day=True),
                fields=("user", "war_day"),
                name="ticket_one_holding_per_user_day",
            ),
        ),
        migrations.AddIndex(
            model_name="ticket", index=models.Index(fields=["war_day", "status"], name="queueing_ti_war_day_fc56b5_idx")
        ),
    ]
