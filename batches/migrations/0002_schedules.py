from django.db import migrations

SCHEDULES = {
    "batches.tasks.tick": ("Batches: flush buffers, advance jobs", 1),
    "batches.tasks.reconcile": ("Batches: adopt or cancel orphans", 10),
}


def create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for func, (name, minutes) in SCHEDULES.items():
        Schedule.objects.update_or_create(
            func=func,
            defaults={"name": name, "schedule_type": "I", "minutes": minutes, "repeats": -1},
        )


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(func__in=list(SCHEDULES)).delete()


class Migration(migrations.Migration):
    dependencies = [("batches", "0001_initial"), ("django_q", "0018_task_success_index")]

    operations = [migrations.RunPython(create, remove)]
