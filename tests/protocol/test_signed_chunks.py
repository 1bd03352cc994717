"""STREAMING-AWS4-HMAC-SHA256-PAYLOAD bodies, signed here by an independent signer."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import zlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from tests.cluster import Cluster

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
STREAMING = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _signed_upload(
    cluster: Cluster,
    path: str,
    data: bytes,
    chunk: int,
    *,
    tamper: str | None = None,
    trailer: str | None = None,
) -> tuple[int, bytes]:
    """Sign the request and every chunk (chained from the seed), then send it.

    With `trailer` (a `name:value` line) the upload is STREAMING-…-PAYLOAD-TRAILER and the
    trailer carries its own signature, chained from the last chunk's."""
    mode = STREAMING + "-TRAILER" if trailer else STREAMING
    now = datetime.now(UTC)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    host = urlsplit(cluster.endpoint).netloc
    scope = f"{day}/us-east-1/s3/aws4_request"
    chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)] + [b""]
    body_len = sum(len(f"{len(c):x};chunk-signature=") + 64 + 2 + len(c) + 2 for c in chunks)
    if trailer:  # the final chunk has no data CRLF; the trailer and its signature follow
        body_len += -2 + len(trailer) + 2 + len("x-amz-trailer-signature:") + 64 + 2 + 2
    if tamper == "truncate":  # the framing promises more than the (signed) length carries
        body_len //= 2
    headers = {
        **({"x-amz-trailer": trailer.split(":", 1)[0]} if trailer else {}),
        "content-encoding": "aws-chunked",
        "content-length": str(body_len),
        "host": host,
        "x-amz-content-sha256": mode,
        "x-amz-date": amz_date,
        "x-amz-decoded-content-length": str(len(data)),
    }
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        ["PUT", path, "", *(f"{k}:{headers[k]}" for k in sorted(headers)), "", signed, mode]
    )
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(f"AWS4{cluster.secret_key}".encode(), day)
    for part in ("us-east-1", "s3", "aws4_request"):
        key = _hmac(key, part)
    previous = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    auth = (
        f"AWS4-HMAC-SHA256 Credential={cluster.access_key}/{scope}, "
        f"SignedHeaders={signed}, Signature={previous}"
    )
    body = b""
    for i, piece in enumerate(chunks):
        string = "\n".join(
            [
                "AWS4-HMAC-SHA256-PAYLOAD",
                amz_date,
                scope,
                previous,
                EMPTY_SHA256,
                hashlib.sha256(piece).hexdigest(),
            ]
        )
        previous = hmac.new(key, string.encode(), hashlib.sha256).hexdigest()
        sent = piece
        if tamper == "data" and i == 1:
            sent = bytes([piece[0] ^ 1]) + piece[1:]
        signature = previous
        if tamper == "signature" and i == 0:
            signature = "0" * 64
        body += f"{len(sent):x};chunk-signature={signature}\r\n".encode() + sent
        body += b"" if (trailer and not piece) else b"\r\n"
    if trailer:
        text = trailer + "\n"
        string = "\n".join(
            [
                "AWS4-HMAC-SHA256-TRAILER",
                amz_date,
                scope,
                previous,
                hashlib.sha256(text.encode()).hexdigest(),
            ]
        )
        trailer_sig = hmac.new(key, string.encode(), hashlib.sha256).hexdigest()
        if tamper == "trailer":
            trailer_sig = "f" * 64
        body += f"{trailer}\r\nx-amz-trailer-signature:{trailer_sig}\r\n\r\n".encode()
    body = body[:body_len]
    conn = cluster.connection()
    try:
        conn.putrequest("PUT", path, skip_host=True, skip_accept_encoding=True)
        for k, v in {**headers, "authorization": auth}.items():
            conn.putheader(k, v)
        conn.endheaders()
        conn.send(body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_signed_chunks_round_trip(cluster: Cluster, s3: Any, bucket: str) -> None:
    data = os.urandom(200 * 1024 + 17)
    status, body = _signed_upload(cluster, f"/{bucket}/signed", data, 64 * 1024)
    assert status == 200, body
    got = s3.get_object(Bucket=bucket, Key="signed")
    assert got["Body"].read() == data
    assert "ContentEncoding" not in got


def test_tampered_chunk_data_is_refused(cluster: Cluster, s3: Any, bucket: str) -> None:
    data = os.urandom(150 * 1024)
    status, body = _signed_upload(cluster, f"/{bucket}/t", data, 64 * 1024, tamper="data")
    assert status == 403 and b"SignatureDoesNotMatch" in body
    assert cluster.raw("HEAD", f"/{bucket}/t")[0] == 404


def test_bad_chunk_signature_is_refused(cluster: Cluster, s3: Any, bucket: str) -> None:
    status, body = _signed_upload(cluster, f"/{bucket}/t", b"x" * 1000, 512, tamper="signature")
    assert status == 403 and b"SignatureDoesNotMatch" in body
    assert cluster.raw("HEAD", f"/{bucket}/t")[0] == 404


def test_truncated_signed_body_stores_nothing(cluster: Cluster, bucket: str) -> None:
    status, body = _signed_upload(cluster, f"/{bucket}/t", b"y" * 5000, 1024, tamper="truncate")
    assert status == 400 and b"IncompleteBody" in body
    assert cluster.raw("HEAD", f"/{bucket}/t")[0] == 404


def test_signed_chunks_with_signed_trailer(cluster: Cluster, s3: Any, bucket: str) -> None:
    data = os.urandom(100 * 1024 + 3)
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    status, body = _signed_upload(
        cluster, f"/{bucket}/trailed", data, 64 * 1024, trailer=f"x-amz-checksum-crc32:{crc}"
    )
    assert status == 200, body
    got = s3.get_object(Bucket=bucket, Key="trailed", ChecksumMode="ENABLED")
    assert got["ChecksumCRC32"] == crc
    assert got["Body"].read() == data
    status, body = _signed_upload(
        cluster,
        f"/{bucket}/bad-trailer",
        data,
        64 * 1024,
        trailer=f"x-amz-checksum-crc32:{crc}",
        tamper="trailer",
    )
    assert status == 403 and b"SignatureDoesNotMatch" in body
    assert cluster.raw("HEAD", f"/{bucket}/bad-trailer")[0] == 404
