"""HTTPS: `s3compat dev --tls` (private CA, server certificate) and `s3compat serve
--certfile/--keyfile`, driven by boto3, urllib and raw TLS sockets."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import ssl
import stat
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.exceptions import SSLError
from cryptography import x509

from s3compat.devcluster.tls import ensure_dev_tls
from tests.cluster import Cluster, ExtraGateway, NonSeekable, sign

DOMAIN = "s3.localhost"


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(
        tmp_path_factory.mktemp("tls-cluster"), env={"S3COMPAT_DOMAIN": DOMAIN}, tls=True
    ).start()
    yield c
    c.stop()


@pytest.fixture
def tls_bucket(tls_cluster: Cluster) -> Iterator[str]:
    s3 = tls_cluster.client(request_checksum_calculation="when_required")
    name = f"tls-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    yield name
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=obj["Key"])
    s3.delete_bucket(Bucket=name)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------- the certificates


def test_endpoint_is_https_and_ca_is_a_ca_certificate(tls_cluster: Cluster) -> None:
    assert tls_cluster.endpoint.startswith("https://")
    ca_path = Path(tls_cluster.ca)
    assert ca_path.is_absolute() and ca_path.is_file()
    assert ca_path == (tls_cluster.data_dir / "tls" / "ca.pem").resolve()
    assert tls_cluster.info["ca"] == str(ca_path)
    ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert ca.subject == ca.issuer

    server = x509.load_pem_x509_certificate((ca_path.parent / "server.pem").read_bytes())
    server.verify_directly_issued_by(ca)
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = set(san.get_values_for_type(x509.DNSName))
    assert {"localhost", "*.localhost", DOMAIN, f"*.{DOMAIN}"} <= dns
    assert "127.0.0.1" in {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


def test_private_keys_are_private_and_never_printed(tls_cluster: Cluster) -> None:
    tls_dir = tls_cluster.data_dir / "tls"
    assert stat.S_IMODE(tls_dir.stat().st_mode) == 0o700
    keys = [tls_dir / "ca-key.pem", tls_dir / "server-key.pem"]
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    logs = [p.read_text("utf-8", "replace") for p in (tls_cluster.data_dir / "logs").iterdir()]
    for text in ["".join(tls_cluster.output), *logs]:
        assert "PRIVATE KEY" not in text
        for key in keys:
            body = "".join(key.read_text().splitlines()[1:-1])
            assert body[:40] not in text.replace("\n", "")


# ------------------------------------------------------------------------------ clients


def test_boto3_round_trip_over_https(tls_cluster: Cluster) -> None:
    # Checksums only when required: boto3's default over HTTPS is an aws-chunked body,
    # covered by the next test.
    s3 = tls_cluster.client(request_checksum_calculation="when_required")
    name = f"tls-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    s3.head_bucket(Bucket=name)
    objects = {"small.txt": b"hello over TLS", "dir/bin ary": os.urandom(300_000)}
    for key, body in objects.items():
        s3.put_object(Bucket=name, Key=key, Body=body)
    for key, body in objects.items():
        got = s3.get_object(Bucket=name, Key=key)["Body"].read()
        assert _sha256(got) == _sha256(body)
    ranged = s3.get_object(Bucket=name, Key="dir/bin ary", Range="bytes=1000-1999")
    assert ranged["Body"].read() == objects["dir/bin ary"][1000:2000]
    listed = s3.list_objects_v2(Bucket=name)["Contents"]
    assert {o["Key"]: o["Size"] for o in listed} == {k: len(v) for k, v in objects.items()}
    for key in objects:
        s3.delete_object(Bucket=name, Key=key)
    assert s3.list_objects_v2(Bucket=name)["KeyCount"] == 0
    s3.delete_bucket(Bucket=name)
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_boto3_defaults_over_https(tls_cluster: Cluster, tls_bucket: str) -> None:
    """Over HTTPS boto3 sends aws-chunked bodies with a trailing CRC32."""
    s3 = tls_cluster.client()
    body = os.urandom(3 * 1024 * 1024 + 17)
    put = s3.put_object(Bucket=tls_bucket, Key="default", Body=body)
    assert "ChecksumCRC32" in put
    got = s3.get_object(Bucket=tls_bucket, Key="default", ChecksumMode="ENABLED")
    assert got["ChecksumCRC32"] == put["ChecksumCRC32"]
    assert _sha256(got["Body"].read()) == _sha256(body)
    assert "ContentEncoding" not in got  # aws-chunked is framing, never stored


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"])
def test_checksum_matrix_over_https(tls_cluster: Cluster, tls_bucket: str, algorithm: str) -> None:
    from boto3.s3.transfer import TransferConfig

    s3 = tls_cluster.client()
    body = os.urandom(6 * 1024 * 1024 + 5)
    put = s3.put_object(
        Bucket=tls_bucket, Key=f"put-{algorithm}", Body=body, ChecksumAlgorithm=algorithm
    )
    assert put[f"Checksum{algorithm}"]
    got = s3.get_object(Bucket=tls_bucket, Key=f"put-{algorithm}")["Body"].read()
    assert _sha256(got) == _sha256(body)
    # upload_fileobj from a non-seekable stream, through multipart (5 MiB parts).
    config = TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20)
    s3.upload_fileobj(
        NonSeekable(body),
        tls_bucket,
        f"stream-{algorithm}",
        ExtraArgs={"ChecksumAlgorithm": algorithm},
        Config=config,
    )
    got = s3.get_object(Bucket=tls_bucket, Key=f"stream-{algorithm}")["Body"].read()
    assert _sha256(got) == _sha256(body)


def test_presigned_urls_over_https(tls_cluster: Cluster, tls_bucket: str) -> None:
    s3 = tls_cluster.client(request_checksum_calculation="when_required")
    s3.put_object(Bucket=tls_bucket, Key="k", Body=b"presigned over TLS")
    context = tls_cluster.ssl_context()
    for version in ("s3", "s3v4"):
        url = tls_cluster.client(signature_version=version).generate_presigned_url(
            "get_object", Params={"Bucket": tls_bucket, "Key": "k"}, ExpiresIn=60
        )
        assert url.startswith("https://")
        with urllib.request.urlopen(url, timeout=30, context=context) as resp:
            assert resp.read() == b"presigned over TLS"


def test_raw_requests_over_https(tls_cluster: Cluster, tls_bucket: str) -> None:
    status, headers, _ = tls_cluster.raw("PUT", f"/{tls_bucket}/raw", body=b"raw bytes")
    assert status == 200 and "etag" in headers
    status, _, body = tls_cluster.raw("GET", f"/{tls_bucket}/raw")
    assert (status, body) == (200, b"raw bytes")
    status, _, body = tls_cluster.raw("GET", f"/{tls_bucket}/raw", sign=False)
    assert status == 403 and b"AccessDenied" in body


def test_virtual_host_name_is_in_the_certificate(tls_cluster: Cluster, tls_bucket: str) -> None:
    """`bucket.s3.localhost` is checked against `*.s3.localhost` (no DNS needed: the
    connection goes to 127.0.0.1 with that name for SNI and verification)."""
    status, _, _ = tls_cluster.raw("PUT", f"/{tls_bucket}/vh", body=b"virtual over TLS")
    assert status == 200
    port = urlsplit(tls_cluster.endpoint).port
    host = f"{tls_bucket}.{DOMAIN}"
    headers = sign(tls_cluster, "GET", f"https://{host}:{port}/vh")
    headers["Host"] = f"{host}:{port}"
    context = tls_cluster.ssl_context()
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        request = ["GET /vh HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
        request.append("Connection: close")
        tls.sendall(("\r\n".join(request) + "\r\n\r\n").encode())
        reply = b""
        while chunk := tls.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200")
    assert reply.endswith(b"\r\n\r\nvirtual over TLS")


# ------------------------------------------------------------------------------ refusals


def test_plain_http_to_the_https_port_fails(tls_cluster: Cluster) -> None:
    port = urlsplit(tls_cluster.endpoint).port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        with pytest.raises((http.client.HTTPException, OSError)):
            conn.request("GET", "/-/health")
            conn.getresponse().read()
    finally:
        conn.close()


def test_a_client_without_the_ca_fails_verification(tls_cluster: Cluster, tmp_path: Path) -> None:
    plain = boto3.client(
        "s3",
        endpoint_url=tls_cluster.endpoint,
        aws_access_key_id=tls_cluster.access_key,
        aws_secret_access_key=tls_cluster.secret_key,
        region_name="us-east-1",
    )
    with pytest.raises(SSLError):
        plain.list_buckets()
    with pytest.raises(urllib.error.URLError) as info:
        urllib.request.urlopen(f"{tls_cluster.endpoint}/-/health", timeout=10)
    assert isinstance(info.value.reason, ssl.SSLCertVerificationError)
    # Nor does another dev cluster's CA.
    other = ensure_dev_tls(tmp_path, host="127.0.0.1", domain=None)
    context = ssl.create_default_context(cafile=str(other.ca_cert))
    with pytest.raises(urllib.error.URLError) as info:
        urllib.request.urlopen(f"{tls_cluster.endpoint}/-/health", timeout=10, context=context)
    assert isinstance(info.value.reason, ssl.SSLCertVerificationError)


# ------------------------------------------------------------------- s3compat serve


def test_serve_with_certfile_and_keyfile(tls_cluster: Cluster) -> None:
    """A second gateway with `--certfile/--keyfile`, on the dev cluster's certificate."""
    tls_dir = tls_cluster.data_dir / "tls"
    gateway = ExtraGateway(
        tls_cluster,
        args=[
            "--certfile",
            str(tls_dir / "server.pem"),
            "--keyfile",
            str(tls_dir / "server-key.pem"),
        ],
        tls=True,
    ).start()
    try:
        with urllib.request.urlopen(
            f"{gateway.endpoint}/-/health", timeout=10, context=tls_cluster.ssl_context()
        ) as resp:
            assert json.loads(resp.read())["status"] == "ok"
        s3 = boto3.client(
            "s3",
            endpoint_url=gateway.endpoint,
            aws_access_key_id=tls_cluster.access_key,
            aws_secret_access_key=tls_cluster.secret_key,
            region_name="us-east-1",
            verify=tls_cluster.ca,
        )
        assert isinstance(s3.list_buckets()["Buckets"], list)
        with pytest.raises((http.client.HTTPException, OSError)):
            conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
            conn.request("GET", "/-/health")
            conn.getresponse().read()
    finally:
        gateway.stop()


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--certfile", "/etc/hostname"], {}, "both a certificate and its key"),
        ([], {"S3COMPAT_TLS_KEY": "/etc/hostname"}, "both a certificate and its key"),
        (["--certfile", "/nonexistent.pem", "--keyfile", "/etc/hostname"], {}, "cannot read"),
    ],
)
def test_serve_refuses_half_a_tls_configuration(
    args: list[str], env: dict[str, str], message: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "s3compat", "serve", *args],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("S3COMPAT_TLS_")},
            "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
            "S3COMPAT_NODES": ",".join(f"n{i}=127.0.0.1:{i}" for i in range(1, 7)),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert message in result.stderr


# ------------------------------------------------------------------------- restarts


def test_certificates_are_reused_across_restarts(tls_cluster: Cluster) -> None:
    """Last in the module: restarts the cluster in place."""
    tls_dir = tls_cluster.data_dir / "tls"
    before = {p.name: p.read_bytes() for p in tls_dir.iterdir()}
    s3 = tls_cluster.client(request_checksum_calculation="when_required")
    name = f"tls-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="k", Body=b"kept")
    ca = tls_cluster.ca
    assert tls_cluster.stop() == 0
    tls_cluster.start()
    assert tls_cluster.ca == ca
    assert {p.name: p.read_bytes() for p in tls_dir.iterdir()} == before
    # A client made before the restart still trusts the server.
    assert s3.get_object(Bucket=name, Key="k")["Body"].read() == b"kept"
    s3.delete_object(Bucket=name, Key="k")
    s3.delete_bucket(Bucket=name)
