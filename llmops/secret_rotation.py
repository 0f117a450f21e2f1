"""Key rotation for the secrets stored encrypted (llmops.crypto): provider API keys and batch
webhook signing secrets.

Rotating is two steps: prepend a new key to LLMOPS_ENCRYPTION_KEYS (old values stay readable,
new ones use it), then re-encrypt every stored value under it (`manage.py rotate_secrets`);
only then may the old key leave the list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db import models, transaction

from llmops import crypto, memo
from routing.models import Provider, Workload


@dataclass(frozen=True)
class EncryptedField:
    model: type[models.Model]
    field: str
    related: tuple[str, ...]
    describe: Callable[[models.Model], str]


# Every column holding llmops.crypto ciphertext. A value left out here would become unreadable
# the day its old key is removed.
ENCRYPTED_FIELDS = (
    EncryptedField(
        Provider,
        "api_key_encrypted",
        (),
        lambda p: f"provider {p.slug!r} (id {p.pk}) API key",
    ),
    EncryptedField(
        Workload,
        "batch_webhook_secret_encrypted",
        ("team",),
        lambda w: f"workload {w.team.slug}/{w.slug} (id {w.pk}) batch webhook secret",
    ),
)


@dataclass(frozen=True)
class RotationReport:
    reencrypted: int  # values rewritten under the first key
    current: int  # values that already used it, left untouched


class UndecryptableSecrets(Exception):
    """Stored values that none of the configured keys decrypts; nothing was changed."""

    def __init__(self, rows: list[str]) -> None:
        super().__init__("; ".join(rows))
        self.rows = rows


class RotationConflict(Exception):
    """A value changed between being read and being rewritten; nothing was changed."""


def secrets_rotate() -> RotationReport:
    """Re-encrypt every stored secret that does not use the first key of
    LLMOPS_ENCRYPTION_KEYS. All of them or none: one transaction, and any value no key
    decrypts refuses the whole rotation (UndecryptableSecrets names each such row), so a
    failed run leaves every row as it was. A second run finds nothing to do."""
    with transaction.atomic():
        pending: list[tuple[EncryptedField, int, str, str]] = []
        unreadable: list[str] = []
        current = 0
        for spec in ENCRYPTED_FIELDS:
            rows = (
                spec.model.objects.select_for_update(of=("self",))
                .select_related(*spec.related)
                .exclude(**{spec.field: ""})
                .order_by("pk")
            )
            for row in rows:
                ciphertext = getattr(row, spec.field)
                try:
                    rotated = crypto.reencrypt_if_stale(ciphertext)
                except crypto.DecryptionError:
                    unreadable.append(spec.describe(row))
                    continue
                if rotated is None:
                    current += 1
                else:
                    pending.append((spec, row.pk, ciphertext, rotated))
        if unreadable:
            raise UndecryptableSecrets(unreadable)
        for spec, pk, old, new in pending:
            # update(), not save(): a rotation is not an edit (no updated_at bump), and the
            # condition on the old value refuses to overwrite a concurrent change.
            changed = spec.model.objects.filter(pk=pk, **{spec.field: old}).update(
                **{spec.field: new}
            )
            if changed != 1:
                raise RotationConflict(
                    f"{spec.model._meta.verbose_name} id {pk} changed during the rotation"
                )
        if pending:
            # update() sends no save signal: the memoized configuration (providers are in it)
            # must be dropped by hand, here and, once this commits, in every process.
            memo.invalidate()
    return RotationReport(reencrypted=len(pending), current=current)
