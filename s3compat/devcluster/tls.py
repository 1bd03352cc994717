"""Certificates for `s3compat dev --tls`: a private CA and a server certificate it signs.

Made on first start under `DIR/tls/` and reused afterwards, so a client told once to trust
`ca.pem` (`aws --ca-bundle`, boto3's `verify=`, `curl --cacert`) keeps working across
restarts. The server certificate is issued again, by the same CA, when the names it must
cover change (another `--host` or `S3COMPAT_DOMAIN`) or when it is within 30 days of
expiring; the CA itself is never replaced while its files are there.

Keys are EC P-256, written with mode 0600 in a 0700 directory, and never printed or
logged: only file paths leave this module.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = timedelta(days=3650)
SERVER_VALIDITY = timedelta(days=825)
RENEW_BEFORE = timedelta(days=30)
# Issued a little in the past, so a client whose clock is slightly behind accepts it.
BACKDATE = timedelta(hours=1)

_WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::", "[::]"})

IPName = ipaddress.IPv4Address | ipaddress.IPv6Address
_T = TypeVar("_T")


@dataclass(frozen=True)
class DevTLS:
    """Paths of the dev cluster's TLS files (the keys stay on disk, 0600)."""

    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path


def server_names(host: str, domain: str | None) -> tuple[list[str], list[IPName]]:
    """DNS names and IP addresses the server certificate covers.

    Always localhost, *.localhost, 127.0.0.1 and ::1; plus `domain` and `*.domain` for
    virtual-host-style requests, and the bind address when it is a specific one.
    """
    dns = ["localhost", "*.localhost"]
    ips: list[IPName] = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    if domain:
        name = domain.strip().strip(".").lower()
        if name:
            dns += [name, f"*.{name}"]
    bind = host.strip()
    if bind not in _WILDCARD_BINDS:
        try:
            ips.append(ipaddress.ip_address(bind.strip("[]")))
        except ValueError:
            dns.append(bind.lower())
    return _unique(dns), _unique(ips)


def ensure_dev_tls(data_dir: Path, *, host: str, domain: str | None) -> DevTLS:
    """The CA and server certificate under `data_dir/tls`, made or renewed as needed."""
    tls_dir = data_dir / "tls"
    tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(tls_dir, 0o700)
    paths = DevTLS(
        ca_cert=(tls_dir / "ca.pem").resolve(),
        ca_key=(tls_dir / "ca-key.pem").resolve(),
        cert=(tls_dir / "server.pem").resolve(),
        key=(tls_dir / "server-key.pem").resolve(),
    )
    now = datetime.now(UTC)
    ca_cert, ca_key = _load_ca(paths)
    if ca_cert is None or ca_key is None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _make_ca(ca_key, now)
        _write_key(paths.ca_key, ca_key)
        _write_public(paths.ca_cert, ca_cert)
        reissue = True
    else:
        reissue = not _server_cert_fits(paths, ca_cert, host, domain, now)
    if reissue:
        key = ec.generate_private_key(ec.SECP256R1())
        dns, ips = server_names(host, domain)
        _write_key(paths.key, key)
        _write_public(paths.cert, _make_server(key, ca_key, ca_cert, dns, ips, now))
    return paths


# ------------------------------------------------------------------------------ helpers


def _unique(items: list[_T]) -> list[_T]:
    return list(dict.fromkeys(items))


def _load_ca(
    paths: DevTLS,
) -> tuple[x509.Certificate | None, ec.EllipticCurvePrivateKey | None]:
    if not (paths.ca_cert.exists() and paths.ca_key.exists()):
        return None, None
    cert = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise RuntimeError(f"{paths.ca_key} is not the EC key s3compat dev made")
    return cert, key


def _server_cert_fits(
    paths: DevTLS, ca_cert: x509.Certificate, host: str, domain: str | None, now: datetime
) -> bool:
    """Whether the existing server certificate is this CA's, current, and names enough."""
    if not (paths.cert.exists() and paths.key.exists()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(paths.cert.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, x509.ExtensionNotFound, InvalidSignature):
        return False
    if cert.not_valid_after_utc - RENEW_BEFORE < now:
        return False
    dns, ips = server_names(host, domain)
    return set(dns) <= set(san.get_values_for_type(x509.DNSName)) and set(ips) <= set(
        san.get_values_for_type(x509.IPAddress)
    )


def _make_ca(key: ec.EllipticCurvePrivateKey, now: datetime) -> x509.Certificate:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "s3compat dev"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"s3compat dev CA ({socket.gethostname()})"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
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
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )


def _make_server(
    key: ec.EllipticCurvePrivateKey,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    dns: list[str],
    ips: list[IPName],
    now: datetime,
) -> x509.Certificate:
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
    names += [x509.IPAddress(ip) for ip in ips]
    return (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "s3compat dev"),
                    x509.NameAttribute(NameOID.COMMON_NAME, dns[0]),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + SERVER_VALIDITY, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """PEM, mode 0600 from creation (never world-readable, even for an instant)."""
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_atomic(path, data, 0o600)


def _write_public(path: Path, cert: x509.Certificate) -> None:
    _write_atomic(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # the umask may have taken bits off a public file
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
