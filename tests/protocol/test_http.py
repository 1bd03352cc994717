"""HTTP-level behaviour: request ids, 100-continue, virtual hosts, health."""

from __future__ import annotations

import json
import socket
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from tests.cluster import Cluster, sign


def test_request_id_on_every_response(cluster: Cluster, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    for method, path, signed in [
        ("GET", f"/{bucket}/k", True),
        ("HEAD", f"/{bucket}/k", True),
        ("GET", f"/{bucket}/missing", True),
        ("GET", "/", True),
        ("GET", "/", False),
        ("DELETE", f"/{bucket}/gone", True),
    ]:
        status, headers, _ = cluster.raw(method, path, sign=signed)
        assert headers.get("x-amz-request-id"), (method, path, status)
        assert headers.get("x-amz-id-2")


def _signed_head(cluster: Cluster, path: str, body_len: int, secret: str | None = None) -> bytes:
    url = cluster.endpoint + path
    headers = sign(
        cluster,
        "PUT",
        url,
        {"Content-Length": str(body_len), "Expect": "100-continue"},
        unsigned_payload=True,
        secret_key=secret,
    )
    lines = [f"PUT {path} HTTP/1.1", f"Host: {urlsplit(url).netloc}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _connect(cluster: Cluster) -> socket.socket:
    parts = urlsplit(cluster.endpoint)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    return sock


def _read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            break
        data += piece
    return data


def test_expect_100_continue(cluster: Cluster, s3: Any, bucket: str) -> None:
    sock = _connect(cluster)
    try:
        sock.sendall(_signed_head(cluster, f"/{bucket}/cont", 5))
        interim = _read_head(sock)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b"hello")
        final = _read_head(sock)
        assert final.startswith(b"HTTP/1.1 200")
    finally:
        sock.close()
    assert s3.get_object(Bucket=bucket, Key="cont")["Body"].read() == b"hello"


def test_refused_before_100_continue(cluster: Cluster, s3: Any, bucket: str) -> None:
    """A bad signature is answered at once: the client never has to send its body."""
    sock = _connect(cluster)
    try:
        sock.sendall(_signed_head(cluster, f"/{bucket}/nope", 10_000_000, secret="bad" * 10))
        reply = _read_head(sock)
        assert reply.startswith(b"HTTP/1.1 403")
        assert b"connection: close" in reply.lower()
    finally:
        sock.close()


def test_virtual_host_style(cluster: Cluster, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="dir/vh key", Body=b"virtual")
    port = urlsplit(cluster.endpoint).port
    host = f"{bucket}.s3.localhost:{port}"
    headers = sign(cluster, "GET", f"http://{host}/dir/vh%20key")
    headers["Host"] = host
    status, _, body = cluster.raw("GET", "/dir/vh%20key", headers=headers, sign=False)
    assert (status, body) == (200, b"virtual")


def test_health_endpoint(cluster: Cluster) -> None:
    with urllib.request.urlopen(f"{cluster.endpoint}/-/health", timeout=10) as resp:
        report = json.loads(resp.read())
    assert report["status"] == "ok"
    assert report["database"]["status"] == "ok"
    assert sorted(report["nodes"]) == [f"node{i}" for i in range(1, 7)]
    assert all(n["status"] == "ok" for n in report["nodes"].values())
    assert "secret" not in json.dumps(report).lower()
