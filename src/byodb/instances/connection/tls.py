"""A CA certificate a user pasted, for ``sslmode=verify-full``/``verify-ca`` against their
provider's private CA (Supabase's, the AWS RDS global bundle, a self-signed server's).

Validated at the border: PEM text of at most :data:`MAX_PEM_BYTES`, only ``CERTIFICATE``
blocks (one or many), each a parseable X.509 certificate. What libpq reads is our own
re-encoding of the certificates, written to a file named by its SHA-256 in the
deployment's private TLS folder — no user text ever names a file.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from byodb.instances.connection.guard import ConnectionCheckError

MAX_PEM_BYTES = 512 * 1024
"""Room for the largest bundles providers hand out (RDS's global bundle is ~150 KB)."""
MAX_CERTIFICATES = 500
_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----")


def _refuse(message: str) -> ConnectionCheckError:
    return ConnectionCheckError(
        message, code="tls_failed",
        hint="Paste the CA certificate file your provider offers (PEM text that starts with "
             "-----BEGIN CERTIFICATE-----), or upload the file.")


@dataclass(frozen=True)
class CaCertificate:
    """One or more CA certificates, re-encoded as PEM by us."""

    pem: str

    @classmethod
    def parse(cls, text: str) -> CaCertificate:
        if not isinstance(text, str) or not text.strip():
            raise _refuse("The CA certificate is empty.")
        if len(text.encode("utf-8", "replace")) > MAX_PEM_BYTES:
            raise _refuse(f"The CA certificate is larger than {MAX_PEM_BYTES // 1024} KB.")
        kinds = set(_BLOCK.findall(text))
        if not kinds:
            raise _refuse("The CA certificate is not PEM text.")
        if kinds != {"CERTIFICATE"}:
            raise _refuse("Paste certificates only: the text holds other PEM blocks "
                          "(never paste a private key).")
        try:
            certificates = x509.load_pem_x509_certificates(text.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise _refuse("The CA certificate could not be read.") from None
        if len(certificates) > MAX_CERTIFICATES:
            raise _refuse(f"The bundle holds more than {MAX_CERTIFICATES} certificates.")
        pem = b"".join(c.public_bytes(Encoding.PEM) for c in certificates).decode("ascii")
        return cls(pem)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.pem.encode("ascii")).hexdigest()

    def file_in(self, directory: Path) -> str:
        """The path of a file holding these certificates in ``directory`` (private to this
        process's user), written once."""
        path = directory / f"ca-{self.fingerprint}.pem"
        if not path.is_file():
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=directory, prefix=".ca-", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="ascii") as out:
                    out.write(self.pem)
                os.replace(temporary, path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        return str(path)

    def __repr__(self) -> str:
        return f"CaCertificate(sha256={self.fingerprint[:16]}…)"
