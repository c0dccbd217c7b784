"""The engine's periodic sweep (recover lost runs, wake due retries), scheduled in django-q2.

Schedules run in the public schema; the sweep itself visits only tenants that have
running or due work (tenants.TenantQueue), each in its own schema.
"""

from django.db import migrations


def create_schedule(apps, schema_editor):
    if schema_editor.connection.schema_name != "public":
        return
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.get_or_create(
        name="orchestration-sweep",
        defaults={
            "func": "orchestration.tasks.sweep",
            "schedule_type": "I",  # minutes
            "minutes": 1,
            "repeats": -1,
        },
    )


def delete_schedule(apps, schema_editor):
    if schema_editor.connection.schema_name != "public":
        return
    apps.get_model("django_q", "Schedule").objects.filter(name="orchestration-sweep").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("tenants", "0002_work_index"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
