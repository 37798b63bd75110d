"""What a user gives to reach their database — the URL and, optionally, their provider's CA
certificate — kept together as one secret, so both are encrypted in the connection record
(one ciphertext, one key rotation) and travel together to every connection.

The stored plaintext is the URL alone when there is no CA certificate (as records written
before CA certificates existed), else a small JSON object.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from byodb.instances.connection.tls import CaCertificate
from byodb.vault.secret import Secret


@dataclass(frozen=True)
class Credentials:
    url: Secret[str]
    ca_certificate: CaCertificate | None = None

    @classmethod
    def given(cls, url: str, ca_certificate: str | None = None) -> Credentials:
        """From a request: the CA certificate validated (raises ``tls_failed``)."""
        ca = CaCertificate.parse(ca_certificate) if ca_certificate else None
        return cls(Secret(url.strip()), ca)

    def packed(self) -> Secret[str]:
        if self.ca_certificate is None:
            return self.url
        return Secret(json.dumps({"url": self.url.reveal(),
                                  "ca_certificate": self.ca_certificate.pem}))

    @classmethod
    def unpacked(cls, stored: Secret[str]) -> Credentials:
        text = stored.reveal()
        if not text.startswith("{"):
            return cls(stored)
        values = json.loads(text)
        ca = values.get("ca_certificate")
        return cls(Secret(str(values["url"])), CaCertificate(str(ca)) if ca else None)
