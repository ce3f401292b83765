"""Myko's own certificate authority: the certificates services prove who they are with.

    ca = CertificateAuthority.create(Path("pki"))             # pki/ca.crt, pki/ca.key
    ca.issue("repo", hosts=["repo", "tasks.repo"])            # pki/repo.crt, pki/repo.key
    identity = load_identity(cert_pem, key_pem, ca_pem)        # "repo", checked

A service certificate names its service in the subject's common name (the
identity servers check, myko/tls.py) and as a DNS name (what clients verify
the server against: they connect with the service's name as TLS server name,
wherever the address points). `localhost` and 127.0.0.1 are added so local
runs and container health probes verify too. Keys are ECDSA P-256: small,
fast, and accepted by gRPC, browsers and Kafka's PEM key stores.

The CA key signs; keep it off the machines that run services (`myko certs`
writes it beside the certificates only so a local run can issue more).
docs/security.md ("Transport") has the operator's view.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from myko.errors import ConfigError

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
CA_DAYS = 3650
SERVICE_DAYS = 365
# Reissued by `ensure_service_certs` when less than this is left.
RENEW_BEFORE = dt.timedelta(days=30)
# Clocks of the machines that check a certificate may run a little behind ours.
_BACKDATE = dt.timedelta(minutes=5)
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Identity:
    """What a checked service certificate says: whose it is and until when."""

    name: str
    not_after: dt.datetime


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_private(path: Path, data: bytes) -> None:
    # Created 0600 from the start: a key must never be readable by others, even briefly.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _san(name: str, hosts: Iterable[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    seen: set[str] = set()
    for host in (name, *hosts, *_LOCAL_HOSTS):
        if host in seen:
            continue
        seen.add(host)
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            entries.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(entries)


def check_identity_name(name: str) -> str:
    """A service identity: what a DNS label allows, so it can be a TLS server name too."""
    if not (0 < len(name) <= 63 and name.replace("-", "").isalnum() and name.isascii()):
        raise ConfigError(f"identity {name!r} must be 1-63 letters, digits or '-'")
    if name.startswith("-") or name.endswith("-"):
        raise ConfigError(f"identity {name!r} must not start or end with '-'")
    return name.lower()


class CertificateAuthority:
    def __init__(self, directory: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self.directory = directory
        self._key = key
        self.cert = cert

    @property
    def cert_path(self) -> Path:
        return self.directory / CA_CERT

    @classmethod
    def create(
        cls, directory: Path, *, name: str = "Myko internal CA", days: int = CA_DAYS
    ) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + dt.timedelta(days=days))
            # Signs service certificates only, never another CA.
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private(directory / CA_KEY, _key_pem(key))
        (directory / CA_CERT).write_bytes(_cert_pem(cert))
        return cls(directory, key, cert)

    @classmethod
    def load(cls, directory: Path) -> CertificateAuthority:
        try:
            key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), password=None)
            cert = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load the CA in {directory}: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError(f"{directory / CA_KEY} is not an EC key")
        return cls(directory, key, cert)

    @classmethod
    def open(cls, directory: Path) -> CertificateAuthority:
        """The CA in `directory`, created there first if there is none."""
        if (directory / CA_CERT).exists() or (directory / CA_KEY).exists():
            return cls.load(directory)
        return cls.create(directory)

    def issue(
        self, name: str, *, hosts: Sequence[str] = (), days: int = SERVICE_DAYS, out: Path | None = None
    ) -> CertFiles:
        """A certificate for service `name` (its identity), valid for `hosts` too; <out>/<name>.crt/.key."""
        name = check_identity_name(name)
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        not_after = min(now + dt.timedelta(days=days), self.cert.not_valid_after_utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            # Both: every service is a server to some and a client of others.
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(_san(name, hosts), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        out = out or self.directory
        files = CertFiles(cert=out / f"{name}.crt", key=out / f"{name}.key")
        _write_private(files.key, _key_pem(key))
        files.cert.write_bytes(_cert_pem(cert))
        return files


def ensure_service_certs(
    directory: Path, names: Iterable[str], *, hosts: Sequence[str] = ()
) -> dict[str, CertFiles]:
    """A CA in `directory` and a current certificate per name (reissued when missing or near expiry).

    What the local stack calls before it starts services with TLS (myko/local/).
    """
    ca = CertificateAuthority.open(directory)
    ca_pem = ca.cert_path.read_bytes()
    files: dict[str, CertFiles] = {}
    for name in names:
        have = CertFiles(cert=directory / f"{name}.crt", key=directory / f"{name}.key")
        try:
            identity = load_identity(have.cert.read_bytes(), have.key.read_bytes(), ca_pem)
            fresh = identity.name == name and identity.not_after - _now() > RENEW_BEFORE
        except (OSError, ConfigError):
            fresh = False
        files[name] = have if fresh else ca.issue(name, hosts=hosts)
    return files


def load_identity(cert_pem: bytes, key_pem: bytes, ca_pem: bytes, *, what: str = "certificate") -> Identity:
    """Check a service's own certificate before serving with it; its identity.

    ConfigError unless the key is the certificate's, the CA signed it, and it
    is valid now: a service fails at start rather than at its first handshake.
    """
    try:
        certs = x509.load_pem_x509_certificates(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        cas = x509.load_pem_x509_certificates(ca_pem)
    except ValueError as exc:
        raise ConfigError(f"{what}: not PEM ({exc})") from None
    cert = certs[0]
    public = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if (
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        != public
    ):
        raise ConfigError(f"{what}: the private key does not belong to the certificate")
    # The chain as sent (leaf, then any intermediates) must end at one of the CAs.
    chain = list(certs)
    for child, parent in itertools.pairwise(chain):
        _check_signed(child, parent, what)
    top = chain[-1]
    if not any(_signed_by(top, ca) for ca in cas):
        raise ConfigError(f"{what}: not signed by the CA ({cas[0].subject.rfc4514_string()})")
    now = _now()
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise ConfigError(
            f"{what}: valid from {cert.not_valid_before_utc:%Y-%m-%d %H:%M} to "
            f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, not now"
        )
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        raise ConfigError(f"{what}: no common name (the service identity)")
    return Identity(name=str(names[0].value), not_after=cert.not_valid_after_utc)


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _check_signed(cert: x509.Certificate, issuer: x509.Certificate, what: str) -> None:
    if not _signed_by(cert, issuer):
        raise ConfigError(f"{what}: {cert.subject.rfc4514_string()} is not signed by the next certificate")
