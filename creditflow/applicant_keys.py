"""An applicant's entity keys in our tables: a keyed hash to find them, a ciphertext to use them.

The prediction log never holds raw ``dob_ssn``. It keeps the keyed hash (HMAC-SHA256, secret
in the home), which joins and erasure (`creditflow forget`) look rows up by, and the keys
encrypted with Fernet (``cryptography``: AES-CBC with an HMAC, so a token that was tampered
with fails to decrypt instead of decrypting to something else). Feedback decrypts them to turn
an outcome into a labeled application that Feast can join point-in-time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from creditflow.config import Settings, get_settings
from creditflow.contract import APPLICATIONS

__all__ = ["InvalidToken", "KeyCipher", "entity_hasher", "key_cipher"]


def _secret_file(path: Path, make: Callable[[], str]) -> str:
    """The secret kept in ``path`` (mode 0600), created on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(make())
    return path.read_text().strip()


def entity_hasher(key_file: Path) -> Callable[..., str]:
    """HMAC-SHA256 of the entity keys with a secret kept in ``key_file`` (created on first use)."""
    key = bytes.fromhex(_secret_file(key_file, lambda: secrets.token_hex(32)))

    def entity_hash(*keys: object) -> str:
        """The hash of an application's entity key values (``APPLICATIONS.key``, in order)."""
        return hmac.new(key, "|".join(map(str, keys)).encode(), hashlib.sha256).hexdigest()

    return entity_hash


class KeyCipher:
    """Encrypts and decrypts an application's entity keys (``APPLICATIONS.key``, in order)."""

    def __init__(self, key: str | bytes) -> None:
        self._fernet = Fernet(key)

    def encrypt(self, keys: Sequence[object]) -> str:
        return self._fernet.encrypt(json.dumps(list(keys)).encode()).decode()

    def decrypt(self, token: str) -> dict[str, object]:
        """The keys by name; raises ``InvalidToken`` for a token not made with this key."""
        values = json.loads(self._fernet.decrypt(token.encode()))
        return dict(zip(APPLICATIONS.key, values, strict=True))


def key_cipher(settings: Settings | None = None) -> KeyCipher:
    """The cipher of this home: CREDITFLOW_LOG_KEY if set, else the key file in the home."""
    settings = settings or get_settings()
    if settings.log_key is not None:
        return KeyCipher(settings.log_key.get_secret_value())
    return KeyCipher(_secret_file(settings.log_key_file, lambda: Fernet.generate_key().decode()))


def home_entity_hasher(settings: Settings | None = None) -> Callable[..., str]:
    """The keyed hash of this home."""
    settings = settings or get_settings()
    return entity_hasher(settings.entity_hash_key_file)
