"""A private certificate authority made in the test, and a server certificate for 127.0.0.1
signed by it: what a provider's downloadable CA (Supabase, RDS) looks like to a client."""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_PEM = serialization.Encoding.PEM


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "byodb tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA certificate (PEM) and a server certificate + key it signed."""

    ca_pem: str
    server_cert_pem: str
    server_key_pem: str

    def write_server_files(self, directory: Path, *, owner: tuple[int, int] | None = None
                           ) -> tuple[Path, Path]:
        """The server's certificate and key as files in ``directory`` (key mode 0600, owned
        by ``owner`` (uid, gid) when given, as servers refuse keys others can read)."""
        cert = directory / "server.crt"
        key = directory / "server.key"
        cert.write_text(self.server_cert_pem)
        key.write_text(self.server_key_pem)
        cert.chmod(0o644)
        key.chmod(0o600)
        if owner is not None:
            for path in (cert, key):
                os.chown(path, *owner)
        return cert, key


def make_ca(common_name: str = "byodb test CA", *, host: str = "127.0.0.1"
            ) -> CertificateAuthority:
    """A fresh CA and a server certificate for ``host`` (an IP SAN), valid for a day."""
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name)).issuer_name(_name(common_name))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(host)).issuer_name(ca_cert.subject)
        .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return CertificateAuthority(
        ca_pem=ca_cert.public_bytes(_PEM).decode(),
        server_cert_pem=server_cert.public_bytes(_PEM).decode(),
        server_key_pem=_key_pem(server_key).decode())
