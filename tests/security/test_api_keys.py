"""Our API keys: only a SHA-256 of the secret is stored, it is compared in constant time, and
a wrong or revoked key gets nothing."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from django.db import connection

from routing.keys import api_key_create, api_key_revoke
from routing.models import ApiKey

pytestmark = pytest.mark.django_db


def database_text() -> str:
    """Every value of every table, as one string: where a leaked secret would show up."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            chunks.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(chunks)


@pytest.fixture
def compare_digest_calls(monkeypatch) -> list[tuple]:
    """Every hmac.compare_digest call (the real function still answers)."""
    calls: list[tuple] = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    return calls


def test_the_database_holds_the_sha256_of_a_key_never_the_key(team, client_for):
    key, raw = api_key_create(team=team, name="ci")
    assert client_for(raw).get("/api/v1/me").status_code == 200  # used once, too

    key.refresh_from_db()
    assert key.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert key.prefix == raw[:12] and len(raw) - len(key.prefix) >= 22  # >= 128 secret bits
    dump = database_text()
    assert key.key_hash in dump  # the scan does read the api key table
    assert raw not in dump
    assert raw[12:] not in dump  # not even the part after the shown prefix


def test_a_good_key_is_checked_with_compare_digest_against_the_stored_hash(
    team, client_for, compare_digest_calls
):
    key, raw = api_key_create(team=team, name="ci")

    assert client_for(raw).get("/api/v1/me").status_code == 200

    assert (key.key_hash, hashlib.sha256(raw.encode()).hexdigest()) in compare_digest_calls


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda raw: raw[:-1] + ("A" if raw[-1] != "A" else "B"), id="last-char"),
        pytest.param(lambda raw: raw[:12] + "x" * (len(raw) - 12), id="right-prefix"),
        pytest.param(lambda raw: hashlib.sha256(raw.encode()).hexdigest(), id="the-hash"),
        pytest.param(lambda raw: raw.upper(), id="upper-case"),
    ],
)
def test_a_wrong_key_is_refused(team, client_for, mangle):
    _, raw = api_key_create(team=team, name="ci")

    response = client_for(mangle(raw)).get("/api/v1/workloads")

    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid or revoked API key."


def test_a_revoked_key_is_refused_on_every_surface(team, client_for):
    key, raw = api_key_create(team=team, name="ci", role=ApiKey.Role.ADMIN)
    client = client_for(raw)
    assert client.get("/api/v1/me").status_code == 200

    assert api_key_revoke(key=key)

    assert client.get("/api/v1/me").status_code == 401
    assert client.get("/v1/files").status_code == 401
    chat = client.post(
        "/v1/chat/completions",
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        format="json",
    )
    assert chat.status_code == 401
    key.refresh_from_db()
    assert key.revoked_at is not None
