"""AES-256-GCM for credentials at rest (DESIGN.md §6).

Ciphertext format (text, safe for a column)::

    v1.<key_id>.<base64url(nonce 12 bytes || ciphertext || tag 16 bytes)>

The associated data binds a ciphertext to its user and field
(``byodb:<field>:<user_id>``), so a ciphertext copied to another row does not decrypt.
The key id inside every ciphertext lets older keys keep decrypting after a rotation.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from byodb.errors import ConfigurationError, DecryptionError
from byodb.vault.secret import Secret

_FORMAT = "v1"
_NONCE_BYTES = 12


def generate_key_hex() -> str:
    """A new random 256-bit key as 64 hex characters (what ``byodb keygen`` prints)."""
    return secrets.token_hex(32)


def key_id_for(key: bytes) -> str:
    """A short, stable, non-secret name for a key (first 8 hex of SHA-256 of the key)."""
    return hashlib.sha256(b"byodb-key-id:" + key).hexdigest()[:8]


def parse_key_hex(value: str) -> bytes:
    value = value.strip()
    try:
        key = bytes.fromhex(value)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ConfigurationError(
            "BYOD_ENCRYPTION_KEY must be 64 hex characters (32 bytes)",
            hint="generate one with `byodb keygen`",
        )
    return key


@dataclass(frozen=True)
class KeyRing:
    """The current key plus older keys that still decrypt."""

    current: bytes
    previous: tuple[bytes, ...] = ()

    @classmethod
    def from_hex(cls, current: str, previous: str | None = None) -> KeyRing:
        older = tuple(
            parse_key_hex(item.split(":")[-1]) for item in (previous or "").split(",") if item
        )
        return cls(parse_key_hex(current), older)

    @property
    def current_id(self) -> str:
        return key_id_for(self.current)

    @property
    def ids(self) -> frozenset[str]:
        """The ids of every key in the ring (current and previous)."""
        return frozenset(key_id_for(k) for k in (self.current, *self.previous))

    def key(self, key_id: str) -> bytes | None:
        for candidate in (self.current, *self.previous):
            if key_id_for(candidate) == key_id:
                return candidate
        return None


def _associated_data(user_id: str, field: str) -> bytes:
    return f"byodb:{field}:{user_id}".encode()


class Vault:
    """Encrypts and decrypts credential fields with the key ring."""

    def __init__(self, keys: KeyRing):
        self._keys = keys

    @property
    def current_key_id(self) -> str:
        return self._keys.current_id

    def encrypt(self, plaintext: Secret[str], *, user_id: str, field: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(self._keys.current).encrypt(
            nonce, plaintext.reveal().encode(), _associated_data(user_id, field)
        )
        body = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{_FORMAT}.{self._keys.current_id}.{body}"

    def decrypt(self, ciphertext: str, *, user_id: str, field: str) -> Secret[str]:
        try:
            fmt, key_id, body = ciphertext.split(".", 2)
        except ValueError:
            raise DecryptionError("stored credential is malformed") from None
        key = self._keys.key(key_id)
        if fmt != _FORMAT or key is None:
            raise DecryptionError(
                "stored credential was encrypted with an unknown key",
                hint="restore the old key in BYOD_PREVIOUS_ENCRYPTION_KEYS",
            )
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            plain = AESGCM(key).decrypt(
                raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _associated_data(user_id, field)
            )
        except (InvalidTag, ValueError):
            raise DecryptionError(
                "stored credential does not decrypt (tampered or not this user's)"
            ) from None
        return Secret(plain.decode())

    @staticmethod
    def key_id_of(ciphertext: str) -> str | None:
        parts = ciphertext.split(".", 2)
        return parts[1] if len(parts) == 3 else None
