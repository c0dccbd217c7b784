"""An index on django-q2's ``Task.stopped`` (public schema): the operator tick deletes old
results by age (operations.retention.prune_queue_results); without it every batch of the
delete, and every look that finds nothing, read the whole table (371 ms at 2 million rows).
Built concurrently: q2's workers keep writing results meanwhile."""

from django.db import migrations

INDEX = "django_q_task_stopped_idx"


def create_index(apps, schema_editor):
    if schema_editor.connection.schema_name != "public":
        return
    schema_editor.execute(
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} ON django_q_task (stopped)"
    )


def drop_index(apps, schema_editor):
    if schema_editor.connection.schema_name != "public":
        return
    schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY runs outside a transaction

    dependencies = [
        ("tenants", "0008_tenant_sweep_rotation"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_index, drop_index)]
