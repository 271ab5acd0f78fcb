from django.db import migrations, models


def flag_rehearsal_locations(apps, schema_editor):
    # `simulate_war` and `make bench` write their slots to the location with this slug
    # (queueing.services.rehearsal.REHEARSAL_LOCATION); copied here as migrations must not import services.
    Location = apps.get_model("queueing", "Location")
    Location.objects.filter(slug="latihan").update(is_rehearsal=True)


class Migration(migrations.Migration):
    dependencies = [
        ("queueing", "0003_ticket_person_day"),
    ]

    operations = [
        migrations.AddField(
            model_name="location",
            name="is_rehearsal",
            field=models.BooleanField(
                default=False,
                help_text="Disembunyikan dari pembeli; staf tetap melihatnya.",
                verbose_name="lokasi latihan",
            ),
        ),
        migrations.RunPython(flag_rehearsal_locations, migrations.RunPython.noop),
    ]
