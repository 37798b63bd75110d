"""Credential encryption (AES-256-GCM), the key ring and the redacted secret type."""

from byodb.vault.crypto import KeyRing, Vault, generate_key_hex
from byodb.vault.secret import Secret

__all__ = ["KeyRing", "Secret", "Vault", "generate_key_hex"]
