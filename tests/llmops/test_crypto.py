from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

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
