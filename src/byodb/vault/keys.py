"""Where the encryption key ring comes from.

Production: ``BYOD_ENCRYPTION_KEY`` (required). Development: if it is unset, a key is generated
once and kept in ``<data dir>/encryption.key`` (mode 0600), with a loud warning, so credentials
saved in development survive restarts.
"""

from __future__ import annotations

import logging
import os

from byodb.errors import ConfigurationError
from byodb.settings import Settings
from byodb.vault.crypto import KeyRing, generate_key_hex

log = logging.getLogger(__name__)


def load_key_ring(settings: Settings) -> KeyRing:
    if settings.encryption_key:
        return KeyRing.from_hex(settings.encryption_key, settings.previous_encryption_keys)
    if settings.is_production:
        raise ConfigurationError("BYOD_ENCRYPTION_KEY is required in production")
    path = settings.data_dir / "encryption.key"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(generate_key_hex() + "\n")
    log.warning(
        "DEVELOPMENT encryption key in use (%s); set BYOD_ENCRYPTION_KEY for real data", path.name
    )
    return KeyRing.from_hex(path.read_text(), settings.previous_encryption_keys)
