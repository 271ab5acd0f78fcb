"""queue_number <= slot.quota, enforced by PostgreSQL even when Redis is wrong.

A CHECK constraint cannot read another table, so two triggers do it:
- on tickets: a holding ticket's number must fit its slot's quota. ``FOR SHARE`` on the slot row makes a
  concurrent quota change wait for this insert's transaction (and vice versa), so the two cannot
  interleave into a number above a just-lowered quota;
- on slots: the quota may not drop below a number a holding ticket has.
"""

from django.db import migrations

FORWARD = """
CREATE FUNCTION queueing_ticket_within_quota() RETURNS trigger AS $$
DECLARE slot_quota integer;
BEGIN
    IF NEW.status NOT IN ('active', 'checked_in') THEN
        RETURN NEW;
    END IF;
    SELECT quota INTO slot_quota FROM queueing_slot WHERE id = NEW.slot_id FOR SHARE;
    IF NEW.queue_number > slot_quota THEN
        RAISE EXCEPTION 'queue number % is above the quota % of slot %', NEW.queue_number, slot_quota, NEW.slot_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ticket_number_within_quota';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER ticket_number_within_quota
    BEFORE INSERT OR UPDATE OF queue_number, status, slot_id ON queueing_ticket
    FOR EACH ROW EXECUTE FUNCTION queueing_ticket_within_quota();

CREATE FUNCTION queueing_slot_quota_covers_tickets() RETURNS trigger AS $$
DECLARE highest integer;
BEGIN
    SELECT max(queue_number) INTO highest FROM queueing_ticket
        WHERE slot_id = NEW.id AND status IN ('active', 'checked_in');
    IF highest IS NOT NULL AND NEW.quota < highest THEN
        RAISE EXCEPTION 'quota % of slot % is below issued queue number %', NEW.quota, NEW.id, highest
            USING ERRCODE = 'check_violation', CONSTRAINT = 'slot_quota_covers_tickets';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER slot_quota_covers_tickets
    BEFORE UPDATE OF quota ON queueing_slot
    FOR EACH ROW WHEN (NEW.quota < OLD.quota)
    EXECUTE FUNCTION queueing_slot_quota_covers_tickets();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS slot_quota_covers_tickets ON queueing_slot;
DROP FUNCTION IF EXISTS queueing_slot_quota_covers_tickets();
DROP TRIGGER IF EXISTS ticket_number_within_quota ON queueing_ticket;
DROP FUNCTION IF EXISTS queueing_ticket_within_quota();
"""


class Migration(migrations.Migration):
    dependencies = [("queueing", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
