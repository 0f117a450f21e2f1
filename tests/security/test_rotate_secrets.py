"""`manage.py rotate_secrets` re-encrypts every stored secret under the first key of
LLMOPS_ENCRYPTION_KEYS, all or nothing, and a second run changes nothing."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.cache import cache
from django.core.management import call_command, execute_from_command_line
from django.core.management.base import CommandError
from django.db import OperationalError
from django.db.models import QuerySet

from llmops import memo
from routing.models import LatencyClass, Provider, RoutingPolicy, Team, Workload

pytestmark = pytest.mark.django_db

OLD, NEW, NEWER, STRANGER = (Fernet.generate_key().decode() for _ in range(4))


def provider(slug: str, secret: str = "") -> Provider:
    row = Provider(slug=slug, name=slug, kind="openai", base_url="https://api.example.com/v1")
    row.set_api_key(secret)
    row.save()
    return row


def webhook_workload(secret: str) -> Workload:
    team = Team.objects.create(slug="acme", name="Acme")
    workload = Workload(
        team=team,
        slug="nightly",
        latency_class=LatencyClass.SCHEDULED,
        deadline=timedelta(hours=24),
        policy=RoutingPolicy.objects.create(team=team, name="overnight"),
        batch_webhook_url="https://hooks.example.com/llmops",
    )
    workload.set_webhook_secret(secret)
    workload.save()
    return workload


def rotate() -> str:
    out = io.StringIO()
    call_command("rotate_secrets", stdout=out)
    return out.getvalue()


def stored() -> dict[str, str]:
    values = dict(Provider.objects.values_list("slug", "api_key_encrypted"))
    values.update(Workload.objects.values_list("slug", "batch_webhook_secret_encrypted"))
    return values


def test_rotation_moves_every_secret_to_the_new_key_and_a_rerun_changes_nothing(settings):
    settings.ENCRYPTION_KEYS = [OLD]
    openai = provider("openai", "sk-openai-secret")
    provider("keyless")  # nothing stored: nothing to rotate
    workload = webhook_workload("whsec-signing-secret")
    updated_at = openai.updated_at

    settings.ENCRYPTION_KEYS = [NEW, OLD]  # step 1 of a rotation: prepend the new key
    out = rotate()

    assert "Re-encrypted 2 secret(s)" in out and "0 already used it" in out
    assert "the others can be removed" in out
    settings.ENCRYPTION_KEYS = [NEW]  # step 2: the old key is gone
    openai.refresh_from_db()
    workload.refresh_from_db()
    assert openai.get_api_key() == "sk-openai-secret"
    assert workload.get_webhook_secret() == "whsec-signing-secret"
    assert Provider.objects.get(slug="keyless").api_key_encrypted == ""
    with pytest.raises(InvalidToken):
        Fernet(OLD.encode()).decrypt(openai.api_key_encrypted.encode())
    assert openai.updated_at == updated_at  # a rotation is not an edit

    settings.ENCRYPTION_KEYS = [NEW, OLD]
    before = stored()
    again = rotate()

    assert "Re-encrypted 0 secret(s)" in again and "2 already used it" in again
    assert stored() == before  # not even re-encrypted with a fresh IV


# Committed rows: the command line closes the database connection when it exits.
@pytest.mark.django_db(transaction=True)
def test_a_value_no_key_decrypts_refuses_the_rotation_and_changes_nothing(settings, capsys):
    settings.ENCRYPTION_KEYS = [OLD]
    provider("aaa-first", "sk-first")  # would be rewritten first if the run went row by row
    webhook_workload("whsec-signing-secret")
    settings.ENCRYPTION_KEYS = [STRANGER]
    stranger = provider("stranger", "sk-from-another-installation")
    settings.ENCRYPTION_KEYS = [NEW, OLD]
    before = stored()

    with pytest.raises(SystemExit) as exited:
        execute_from_command_line(["manage.py", "rotate_secrets"])

    assert exited.value.code != 0
    error = capsys.readouterr().err
    assert f"provider 'stranger' (id {stranger.pk}) API key" in error
    assert "Nothing was changed" in error and "LLMOPS_ENCRYPTION_KEYS" in error
    assert "aaa-first" not in error  # only the unreadable rows are named
    assert stored() == before
    assert Provider.objects.get(slug="aaa-first").get_api_key() == "sk-first"


def test_an_unreadable_webhook_secret_is_named_with_its_team(settings):
    settings.ENCRYPTION_KEYS = [STRANGER]
    workload = webhook_workload("whsec-signing-secret")
    settings.ENCRYPTION_KEYS = [NEWER, NEW]

    with pytest.raises(
        CommandError, match=rf"workload acme/nightly \(id {workload.pk}\)"
    ) as refused:
        rotate()
    assert refused.value.returncode != 0
    workload.refresh_from_db()
    settings.ENCRYPTION_KEYS = [STRANGER]
    assert workload.get_webhook_secret() == "whsec-signing-secret"


def test_a_rotation_tells_every_process_to_drop_its_memoized_providers(
    settings, django_capture_on_commit_callbacks
):
    settings.ENCRYPTION_KEYS = [OLD]
    provider("openai", "sk-openai-secret")
    settings.ENCRYPTION_KEYS = [NEW, OLD]
    before = cache.get(memo.VERSION_KEY)

    with django_capture_on_commit_callbacks(execute=True):
        rotate()

    assert cache.get(memo.VERSION_KEY) not in (None, before)


def test_a_failure_half_way_through_the_writes_rolls_every_value_back(settings, monkeypatch):
    settings.ENCRYPTION_KEYS = [OLD]
    provider("first", "sk-first")
    provider("second", "sk-second")
    settings.ENCRYPTION_KEYS = [NEW, OLD]
    before = stored()
    real_update, writes = QuerySet.update, []

    def update_then_fail(queryset, **values):
        writes.append(values)
        if len(writes) == 2:  # a fault the database could raise: the disk filled up
            raise OperationalError("disk I/O error")
        return real_update(queryset, **values)

    monkeypatch.setattr(QuerySet, "update", update_then_fail)

    with pytest.raises(OperationalError):
        rotate()

    monkeypatch.undo()
    assert len(writes) == 2  # the first value had been rewritten...
    assert stored() == before  # ...and was rolled back with the rest
