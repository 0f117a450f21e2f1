from __future__ import annotations

import pytest
from cryptography.fernet import Fernet, MultiFernet

from llmops import crypto


def test_encrypted_value_round_trips_and_hides_the_plaintext():
    token = crypto.encrypt("sk-secret")
    assert "sk-secret" not in token
    assert crypto.decrypt(token) == "sk-secret"


def test_rotation_keeps_old_values_readable_and_reencrypts_with_the_new_key(settings):
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [old_key]
    token = crypto.encrypt("sk-secret")

    settings.ENCRYPTION_KEYS = [new_key, old_key]
    assert crypto.decrypt(token) == "sk-secret"
    rotated = crypto.reencrypt(token)

    settings.ENCRYPTION_KEYS = [new_key]
    assert crypto.decrypt(rotated) == "sk-secret"
    with pytest.raises(crypto.DecryptionError, match="LLMOPS_ENCRYPTION_KEYS"):
        crypto.decrypt(token)


def test_a_value_is_decrypted_once_per_process_and_a_withdrawn_key_still_refuses(
    settings, monkeypatch
):
    key, other = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [key]
    token = crypto.encrypt("sk-once")
    passes = []
    real = MultiFernet.decrypt
    monkeypatch.setattr(MultiFernet, "decrypt", lambda self, *a: passes.append(1) or real(self, *a))

    assert [crypto.decrypt(token) for _ in range(5)] == ["sk-once"] * 5
    assert len(passes) == 1  # the provider's key of every call: decrypted once

    settings.ENCRYPTION_KEYS = [other]
    for _ in range(2):
        with pytest.raises(crypto.DecryptionError):
            crypto.decrypt(token)
    settings.ENCRYPTION_KEYS = [other, key]
    assert crypto.decrypt(token) == "sk-once"
