"""The dev cluster's certificates (s3compat.devcluster.tls): made once, reused, reissued by
the same CA when the names change, keys private."""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from s3compat.devcluster import tls
from s3compat.devcluster.tls import DevTLS, ensure_dev_tls, server_names


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _san(paths: DevTLS) -> tuple[set[str], set[str]]:
    ext = _load(paths.cert).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return (
        set(ext.value.get_values_for_type(x509.DNSName)),
        {str(ip) for ip in ext.value.get_values_for_type(x509.IPAddress)},
    )


def _files(paths: DevTLS) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (paths.ca_cert, paths.ca_key, paths.cert, paths.key)}


def test_first_start_makes_a_ca_and_a_server_certificate(tmp_path: Path) -> None:
    paths = ensure_dev_tls(tmp_path, host="127.0.0.1", domain="s3.localhost")
    assert paths.ca_cert == (tmp_path / "tls" / "ca.pem").resolve()
    ca, server = _load(paths.ca_cert), _load(paths.cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    server.verify_directly_issued_by(ca)
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    dns, ips = _san(paths)
    assert dns == {"localhost", "*.localhost", "s3.localhost", "*.s3.localhost"}
    assert ips == {"127.0.0.1", "::1"}
    assert server.not_valid_before_utc < datetime.now(UTC) < server.not_valid_after_utc


def test_keys_are_0600_in_a_0700_directory(tmp_path: Path) -> None:
    old = os.umask(0)  # a permissive umask must not widen anything
    try:
        paths = ensure_dev_tls(tmp_path, host="127.0.0.1", domain=None)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "tls").stat().st_mode) == 0o700
    assert stat.S_IMODE(paths.ca_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.ca_cert.stat().st_mode) == 0o644
    assert not list((tmp_path / "tls").glob(".*.tmp"))


def test_later_starts_reuse_everything(tmp_path: Path) -> None:
    first = _files(ensure_dev_tls(tmp_path, host="127.0.0.1", domain="s3.localhost"))
    again = _files(ensure_dev_tls(tmp_path, host="127.0.0.1", domain="s3.localhost"))
    assert again == first


def test_new_names_reissue_the_server_certificate_with_the_same_ca(tmp_path: Path) -> None:
    first = _files(ensure_dev_tls(tmp_path, host="127.0.0.1", domain=None))
    paths = ensure_dev_tls(tmp_path, host="10.1.2.3", domain="objects.test")
    second = _files(paths)
    assert second["ca.pem"] == first["ca.pem"] and second["ca-key.pem"] == first["ca-key.pem"]
    assert second["server.pem"] != first["server.pem"]
    assert second["server-key.pem"] != first["server-key.pem"]
    dns, ips = _san(paths)
    assert {"objects.test", "*.objects.test"} <= dns
    assert "10.1.2.3" in ips
    _load(paths.cert).verify_directly_issued_by(_load(paths.ca_cert))


def test_an_expiring_or_broken_server_certificate_is_reissued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = ensure_dev_tls(tmp_path, host="127.0.0.1", domain=None)
    ca = paths.ca_cert.read_bytes()
    paths.cert.write_text("not a certificate")
    ensure_dev_tls(tmp_path, host="127.0.0.1", domain=None)
    assert paths.cert.read_text().startswith("-----BEGIN CERTIFICATE-----")
    before = paths.cert.read_bytes()
    ensure_dev_tls(tmp_path, host="localhost", domain=None)  # names it has: no change
    assert paths.cert.read_bytes() == before
    monkeypatch.setattr(tls, "RENEW_BEFORE", timedelta(days=10_000))  # "about to expire"
    ensure_dev_tls(tmp_path, host="127.0.0.1", domain=None)
    assert paths.cert.read_bytes() != before
    assert paths.ca_cert.read_bytes() == ca


def test_a_lost_ca_key_makes_a_new_ca_and_server_certificate(tmp_path: Path) -> None:
    first = _files(ensure_dev_tls(tmp_path, host="127.0.0.1", domain=None))
    (tmp_path / "tls" / "ca-key.pem").unlink()
    paths = ensure_dev_tls(tmp_path, host="127.0.0.1", domain=None)
    assert paths.ca_cert.read_bytes() != first["ca.pem"]
    _load(paths.cert).verify_directly_issued_by(_load(paths.ca_cert))


@pytest.mark.parametrize(
    ("host", "dns", "ips"),
    [
        ("127.0.0.1", set(), set()),
        ("0.0.0.0", set(), set()),
        ("::", set(), set()),
        ("192.168.7.9", set(), {"192.168.7.9"}),
        ("[fd00::5]", set(), {"fd00::5"}),
        ("Storage.Example", {"storage.example"}, set()),
    ],
)
def test_server_names_cover_a_specific_bind(host: str, dns: set[str], ips: set[str]) -> None:
    names, addresses = server_names(host, None)
    assert set(names) == {"localhost", "*.localhost", *dns}
    assert {str(a) for a in addresses} == {"127.0.0.1", "::1", *ips}
    assert all(isinstance(a, ipaddress.IPv4Address | ipaddress.IPv6Address) for a in addresses)


def test_python_ssl_verifies_the_chain_strictly(tmp_path: Path) -> None:
    """A real handshake, with VERIFY_X509_STRICT (Python 3.13's default) where available."""
    paths = ensure_dev_tls(tmp_path, host="127.0.0.1", domain="s3.localhost")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(paths.cert, paths.key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls_conn:
                    tls_conn.sendall(b"ok")
            except (ssl.SSLError, OSError):
                conn.close()

    threading.Thread(target=serve, daemon=True).start()
    client_ctx = ssl.create_default_context(cafile=str(paths.ca_cert))
    client_ctx.verify_flags |= getattr(ssl, "VERIFY_X509_STRICT", 0)
    try:
        for name in ("127.0.0.1", "localhost", "s3.localhost", "bucket.s3.localhost"):
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                client_ctx.wrap_socket(raw, server_hostname=name) as conn,
            ):
                assert conn.recv(2) == b"ok"
        # OpenSSL wants two labels under a wildcard: *.localhost never matches, so virtual
        # hosts need a domain such as s3.localhost.
        for name in ("example.com", "a.b.s3.localhost"):
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                pytest.raises(ssl.SSLCertVerificationError),
            ):
                client_ctx.wrap_socket(raw, server_hostname=name)
    finally:
        listener.close()
