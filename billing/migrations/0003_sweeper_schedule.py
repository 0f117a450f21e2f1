from django.db import migrations

FUNC = "billing.tasks.sweep_expired_holds"


def create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    # Holds of requests that died are released by this, every minute (a hold resolves once).
    Schedule.objects.update_or_create(
        func=FUNC,
        defaults={
            "name": "Expire stale budget holds",
            "schedule_type": "I",
            "minutes": 1,
            "repeats": -1,
        },
    )


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(func=FUNC).delete()


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_ledger_append_only"), ("django_q", "0018_task_success_index")]

    operations = [migrations.RunPython(create, remove)]
