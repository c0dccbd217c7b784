"""The scheduled cleanup of stale uploads (a django-q2 Schedule, every hour).

This app is tenant-only, so this runs in each tenant schema as it is migrated (django-tenants'
router skips it in the public schema); the schedule table is django-q2's, found in the
public schema through the search path. ``get_or_create`` by name: one schedule in all.
It runs in the public schema and fans out one task per tenant (``uploads.tasks``).
"""

from django.db import migrations

NAME = "uploads-expire-stale"


def create_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.get_or_create(
        name=NAME,
        defaults={
            "func": "uploads.tasks.expire_stale_uploads_all_tenants",
            "schedule_type": "H",  # hourly
            "repeats": -1,
        },
    )


def delete_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("uploads", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
