"""Encryption at rest for provider API keys.

MultiFernet: the first key in LLMOPS_ENCRYPTION_KEYS encrypts, every key
decrypts, so keys can be rotated by prepending a new one and re-encrypting.
The keys come from the environment, never from the database.
"""

from __future__ import annotations

from functools import cache, lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class DecryptionError(Exception):
    """The ciphertext was not made by any of the configured keys."""


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


@cache
def _primary(key: str) -> Fernet:
    return Fernet(key.encode())


def _current() -> MultiFernet:
    return _fernet(tuple(settings.ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return _current().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    return _decrypted(tuple(settings.ENCRYPTION_KEYS), ciphertext)


# A provider's key is decrypted for every call made to it (each realtime request: an HMAC and
# an AES pass, ~1% of its CPU). Kept per process by the ciphertext and the keys that read it:
# a key set or rotated is a new ciphertext, a key withdrawn from the settings is new keys. A
# value that does not decrypt is not kept (lru_cache keeps no exception): it raises each time.
@lru_cache(maxsize=1024)
def _decrypted(keys: tuple[str, ...], ciphertext: str) -> str:
    try:
        return _fernet(keys).decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise DecryptionError(
            "cannot decrypt: none of LLMOPS_ENCRYPTION_KEYS matches this value"
        ) from None


def reencrypt(ciphertext: str) -> str:
    """The same secret encrypted under the current primary key (for rotation)."""
    try:
        return _current().rotate(ciphertext.encode()).decode()
    except InvalidToken:
        raise DecryptionError(
            "cannot rotate: none of LLMOPS_ENCRYPTION_KEYS matches this value"
        ) from None


def reencrypt_if_stale(ciphertext: str) -> str | None:
    """The secret encrypted under the current primary key, or None if it already is.

    MultiFernet.rotate re-encrypts every time (a fresh IV), so a rotation built on it alone
    would rewrite every row on every run; this keeps a repeated rotation a no-op.
    """
    try:
        _primary(settings.ENCRYPTION_KEYS[0]).decrypt(ciphertext.encode())
    except InvalidToken:
        return reencrypt(ciphertext)
    return None
