"""Writes for API keys: created with a secret shown once, stored as a hash, revoked."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

import django.dispatch
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from llmops import memo, rows
from routing.models import ApiKey, Team

# Sent (with `key`) once a revocation is committed. A revocation is a queryset update, which
# sends no post_save; the websocket registry (routing.socket_auth, connected in
# routing.apps) closes the key's sockets on it.
key_revoked = django.dispatch.Signal()


API_KEY_PREFIX = "llm_"


MIN_CUSTOM_SECRET_LENGTH = 16


# last_used_at is a hint for humans; writing it on every call would make each
# API request a database write, so it is refreshed at most this often.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_api_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_key_create(
    *,
    team: Team,
    name: str,
    role: str = ApiKey.Role.MEMBER,
    created_by: AbstractBaseUser | None = None,
    secret: str | None = None,
) -> tuple[ApiKey, str]:
    """Create a key and return it with its secret, which is never retrievable again.

    `secret` lets scripts choose the key (seed_demo --api-key); otherwise 256
    random bits are generated.
    """
    raw = secret if secret is not None else API_KEY_PREFIX + secrets.token_urlsafe(32)
    if len(raw) < MIN_CUSTOM_SECRET_LENGTH:
        raise ValueError(f"an API key must be at least {MIN_CUSTOM_SECRET_LENGTH} characters")
    key = ApiKey.objects.create(
        team=team,
        name=name,
        role=role,
        prefix=raw[:12],
        key_hash=hash_api_key(raw),
        created_by=created_by,
    )
    return key, raw


@transaction.atomic
def api_key_reset(*, team: Team, name: str, role: str, secret: str) -> ApiKey:
    """Make `secret` the key called `name` of `team`, creating or un-revoking it."""
    key_hash = hash_api_key(secret)
    holder = ApiKey.objects.filter(key_hash=key_hash).exclude(team=team, name=name).first()
    if holder is not None:
        raise ValueError(f"that secret is already the key {holder.name!r} of team {holder.team}")
    if len(secret) < MIN_CUSTOM_SECRET_LENGTH:
        raise ValueError(f"an API key must be at least {MIN_CUSTOM_SECRET_LENGTH} characters")
    key, _ = ApiKey.objects.update_or_create(
        team=team,
        name=name,
        defaults={"role": role, "prefix": secret[:12], "key_hash": key_hash, "revoked_at": None},
    )
    return key


def team_of(team_id: int) -> Team:
    """A team by id, memoized (llmops.memo drops it on any save of a team)."""
    return memo.memoized(("team", team_id), lambda: Team.objects.get(pk=team_id))


def api_key_authenticate(*, raw: str) -> ApiKey | None:
    """The active key matching `raw`, or None. Refreshes last_used_at (throttled)."""
    key_hash = hash_api_key(raw)
    # Every API call: read in SQL built once (llmops.rows), not through the ORM's compiler.
    key = rows.get(ApiKey, "key_hash", key_hash)
    # The lookup is by hash; compare again in constant time so that no code path
    # ever compares secrets with a short-circuiting ==.
    if key is None or not hmac.compare_digest(key.key_hash, key_hash) or not key.is_active:
        return None
    key.team = team_of(key.team_id)
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


def api_key_active(*, key_id: int) -> ApiKey | None:
    """The key with this id if it is still active, read as api_key_authenticate reads one (SQL
    built once, the team memoized): a websocket re-reads its key before every message."""
    key = rows.get(ApiKey, "id", key_id)
    if key is None or not key.is_active:
        return None
    key.team = team_of(key.team_id)
    return key


def api_key_revoke(*, key: ApiKey) -> bool:
    """Revoke a key; returns False if it was already revoked."""
    changed = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    if changed == 1:
        transaction.on_commit(lambda: key_revoked.send(sender=ApiKey, key=key))
    return changed == 1
