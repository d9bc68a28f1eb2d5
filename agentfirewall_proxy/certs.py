"""The gateway's certificate authority and the leaf certificates it mints.

Pure functions over keys and certificates, plus :class:`CertStore`, a capped LRU of ready
server ``SSLContext`` objects (one per intercepted host). The CA is ECDSA P-256, created once
in the CA directory (made 0700) as ``ca.crt`` / ``ca.key`` (both written 0600, the key never
logged); leaves are ECDSA P-256 too, valid for the one host they name (DNS name or IP in
the SAN).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "CertStore",
    "CertificateAuthority",
    "create_ca",
    "load_or_create_ca",
    "mint_leaf",
]

CA_CERT_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"
_LEAF_DAYS = 397
_CA_DAYS = 3650


@dataclass(frozen=True)
class CertificateAuthority:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def create_ca(common_name: str = "TameFlare Gateway CA") -> CertificateAuthority:
    """A fresh self-signed ECDSA P-256 CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TameFlare"),
        ]
    )
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=_CA_DAYS))
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
    return CertificateAuthority(cert, key)


def _write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` with mode 0600 from the first byte (atomic rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _make_private_dirs(directory: Path) -> None:
    """Create `directory` and any missing parent 0700, whatever the umask (the ones that
    exist are left as they are): nobody else may swap the CA in them."""
    missing = []
    for path in (directory, *directory.parents):
        if path.is_dir():
            break
        missing.append(path)
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue  # made meanwhile by someone else: theirs
        os.chmod(path, 0o700)


def load_or_create_ca(directory: Path) -> CertificateAuthority:
    """Load ``ca.crt``/``ca.key`` from `directory`, creating them on first use (the
    directories it makes 0700, both files 0600, whatever the umask)."""
    _make_private_dirs(directory)
    cert_path, key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
    if cert_path.exists() and key_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"`{key_path}` is not an ECDSA private key")
        return CertificateAuthority(x509.load_pem_x509_certificate(cert_path.read_bytes()), key)
    ca = create_ca()
    key_pem = ca.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_private(key_path, key_pem)
    # public, but whoever could replace it would have agents trust their CA: 0600 like every
    # file of the state directory (`tf doctor` checks); copy it for agents of other users
    _write_private(cert_path, ca.cert_pem)
    return ca


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def mint_leaf(ca: CertificateAuthority, host: str) -> tuple[bytes, bytes]:
    """(certificate chain PEM, key PEM) for `host`, signed by `ca`."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:64])]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=_LEAF_DAYS))
        .add_extension(x509.SubjectAlternativeName([_san(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM) + ca.cert_pem, key_pem


def _sni_guard(host: str) -> object:
    """An SNI callback refusing a handshake whose server name is not `host`."""

    def check(_obj: object, server_name: str | None, _ctx: ssl.SSLContext) -> int | None:
        if server_name is None or server_name.lower().rstrip(".") == host:
            return None
        return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME

    return check


class CertStore:
    """Server SSL contexts for intercepted hosts, minted on demand, LRU-capped."""

    def __init__(self, ca: CertificateAuthority, capacity: int = 1024) -> None:
        self.ca = ca
        self.capacity = capacity
        self._contexts: OrderedDict[str, ssl.SSLContext] = OrderedDict()
        self._dir = tempfile.TemporaryDirectory(prefix="tf-leaves-")

    def context_for(self, host: str) -> ssl.SSLContext:
        """The server context for `host` (SNI must name `host`; ALPN http/1.1 only)."""
        found = self._contexts.get(host)
        if found is not None:
            self._contexts.move_to_end(host)
            return found
        chain, key = mint_leaf(self.ca, host)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["http/1.1"])
        ctx.sni_callback = _sni_guard(host)  # type: ignore[assignment]
        # ssl only loads chains from files: write both, load, delete at once.
        fd, path = tempfile.mkstemp(dir=self._dir.name, suffix=".pem")
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, key + chain)
        finally:
            os.close(fd)
        try:
            ctx.load_cert_chain(path)
        finally:
            os.unlink(path)
        self._contexts[host] = ctx
        if len(self._contexts) > self.capacity:
            self._contexts.popitem(last=False)
        return ctx

    def close(self) -> None:
        self._dir.cleanup()
