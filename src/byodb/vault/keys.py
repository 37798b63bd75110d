"""Where the encryption key ring comes from.

Production: ``BYOD_ENCRYPTION_KEY`` (required). Development: if it is unset, a key is generated
once and kept in ``<data dir>/encryption.key`` (mode 0600), with a loud warning, so credentials
saved in development survive restarts.

A key is only generated where a deployment is being set up (``serve``, ``init``) and main
holds no credentials yet: :func:`key_ring_for_deployment` refuses a missing key, or one that
does not open main's stored credentials, instead of writing a second key beside the first.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Set
from pathlib import Path

from byodb.errors import ConfigurationError
from byodb.settings import Settings
from byodb.vault.crypto import KeyRing, generate_key_hex

log = logging.getLogger(__name__)
_announced: set[Path] = set()


def load_key_ring(settings: Settings, *, create: bool = True) -> KeyRing:
    """The configured key ring; in development the data dir's key, generated when missing
    only if ``create``."""
    if settings.encryption_key:
        return KeyRing.from_hex(settings.encryption_key, settings.previous_encryption_keys)
    if settings.is_production:
        raise ConfigurationError("BYOD_ENCRYPTION_KEY is required in production")
    path = settings.data_dir / "encryption.key"
    if not path.exists():
        if not create:
            raise ConfigurationError(
                f"no encryption key: BYOD_ENCRYPTION_KEY is unset and there is no "
                f"{path.resolve()}; point at the deployment's data dir with --data-dir DIR "
                f"(or BYODB_DATA_DIR), or set BYOD_ENCRYPTION_KEY", code="key_not_found")
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(generate_key_hex() + "\n")
    if path.resolve() not in _announced:  # once per process, however often it is loaded
        _announced.add(path.resolve())
        log.warning("DEVELOPMENT encryption key in use (%s); set BYOD_ENCRYPTION_KEY for real "
                    "data", path.name)
    return KeyRing.from_hex(path.read_text(), settings.previous_encryption_keys)


def key_ring_for_deployment(settings: Settings, stored_ids: Set[str], *,
                            create: bool) -> KeyRing:
    """The key ring, checked against the key ids of main's stored credentials.

    A development key is generated only when ``create`` and main holds no credentials (a
    missing key then is a fresh deployment, not a lost one). A ring lacking a stored id is
    refused: it would not open those credentials.
    """
    where = ("BYOD_ENCRYPTION_KEY" if settings.encryption_key
             else f"the development key {(settings.data_dir / 'encryption.key').resolve()}")
    try:
        ring = load_key_ring(settings, create=create and not stored_ids)
    except ConfigurationError as exc:
        if stored_ids and exc.code == "key_not_found":
            raise ConfigurationError(
                f"this deployment's stored credentials were encrypted with key id(s) "
                f"{', '.join(sorted(stored_ids))}, and {exc.message}",
                code="key_not_found") from None
        raise
    unknown = sorted(set(stored_ids) - ring.ids)
    if unknown:
        raise ConfigurationError(
            f"{where} (key id {ring.current_id}) does not open this deployment's stored "
            f"credentials (encrypted with key id(s) {', '.join(unknown)}); set the key the "
            f"deployment was set up with, or add it to BYOD_PREVIOUS_ENCRYPTION_KEYS and run "
            f"`byodb rotate-key`", code="key_mismatch")
    return ring
