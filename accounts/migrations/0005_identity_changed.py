"""A changed account reaches the Redis identity cache, however it was changed.

``post_save`` receivers drop the cache on ``save()``, but ``QuerySet.update()`` and raw SQL send no signal,
and a banned account would keep reserving on its cached facts for the cache's hour. This trigger, on any
change of a cached fact (active, NIK, password, staff), stamps ``identity_changed_at`` and sends
``NOTIFY identity, '<user id>'`` (delivered at commit); ``accounts.services.identity``'s listener drops the
user's entries when it hears it, and on every (re)connect catches up from ``identity_changed_at``.
A row whose cached facts did not change keeps its stamp, whatever value ``save()`` sends for it.
"""

from django.db import migrations, models

FORWARD = """
CREATE FUNCTION accounts_user_identity_changed() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('identity', OLD.id::text);
        RETURN OLD;
    END IF;
    IF NEW.is_active IS DISTINCT FROM OLD.is_active OR NEW.nik IS DISTINCT FROM OLD.nik
            OR NEW.password IS DISTINCT FROM OLD.password OR NEW.is_staff IS DISTINCT FROM OLD.is_staff THEN
        NEW.identity_changed_at := now();
        PERFORM pg_notify('identity', NEW.id::text);
    ELSE
        NEW.identity_changed_at := OLD.identity_changed_at;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER accounts_user_identity_changed
    BEFORE UPDATE OR DELETE ON accounts_user
    FOR EACH ROW EXECUTE FUNCTION accounts_user_identity_changed();
"""

BACKWARD = """
DROP TRIGGER accounts_user_identity_changed ON accounts_user;
DROP FUNCTION accounts_user_identity_changed();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_registration_ip"),
    ]

    operations = [
        migrations.AddField(
            model_name="user",
            name="identity_changed_at",
            field=models.DateTimeField(db_index=True, editable=False, null=True, verbose_name="identitas berubah"),
        ),
        migrations.RunSQL(FORWARD, BACKWARD),
    ]
