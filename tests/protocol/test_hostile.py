"""Hostile input at the HTTP edge: every one is refused with AWS's error code and status,
never a 500 or a traceback, and never leaves anything stored half-way."""

from __future__ import annotations

import base64
import hashlib
import socket
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest
from lxml import etree

from tests.cluster import Cluster, sign, wait_for


def _error(body: bytes) -> dict[str, str]:
    root = etree.fromstring(body)
    assert root.tag == "Error", body[:200]
    return {child.tag: child.text or "" for child in root}


def _clean(status: int, body: bytes) -> None:
    assert status < 500, (status, body[:500])
    assert b"Traceback" not in body
    assert b"root:" not in body  # no /etc/passwd content


def _code(status: int, body: bytes) -> tuple[int, str]:
    _clean(status, body)
    return status, _error(body)["Code"]


def _alive(cluster: Cluster) -> None:
    status, _, body = cluster.raw("GET", "/")
    assert status == 200, body[:300]


def _md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def _keys(s3: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def _connect(cluster: Cluster, timeout: float = 10) -> socket.socket:
    parts = urlsplit(cluster.endpoint)
    return socket.create_connection((parts.hostname, parts.port), timeout=timeout)


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes] | None:
    """One HTTP/1.1 response from a raw socket (None if the server closed instead)."""
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            piece = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            piece = b""
        if not piece:
            return None if not data else _split(data, sock)
        data += piece
    return _split(data, sock)


def _split(data: bytes, sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        piece = sock.recv(65536)
        if not piece:
            break
        rest += piece
    return status, headers, rest[:length]


def _signed_request_head(
    cluster: Cluster, method: str, path: str, headers: dict[str, str]
) -> bytes:
    url = cluster.endpoint + path
    signed = sign(cluster, method, url, headers, unsigned_payload=True)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {urlsplit(url).netloc}"]
    lines += [f"{k}: {v}" for k, v in signed.items() if k.lower() != "host"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# --------------------------------------------------------------------------- XML bodies


def _hostile_documents(root: str) -> dict[str, bytes]:
    def xxe(inner: str) -> bytes:
        return (
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            + inner.encode()
        )

    laughs_dtd = b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">' + b"".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'.encode()
        for i in range(1, 10)
    )
    inner = {
        "CreateBucketConfiguration": "<LocationConstraint>{}</LocationConstraint>",
        "CompleteMultipartUpload": "<Part><PartNumber>1</PartNumber><ETag>{}</ETag></Part>",
        "LifecycleConfiguration": (
            "<Rule><ID>{}</ID><Status>Enabled</Status><Filter><Prefix></Prefix></Filter>"
            "<AbortIncompleteMultipartUpload><DaysAfterInitiation>1"
            "</DaysAfterInitiation></AbortIncompleteMultipartUpload></Rule>"
        ),
    }[root]
    padding = "x" * (2 << 20)
    return {
        "xxe": xxe(f"<{root}>{inner.format('&xxe;')}</{root}>"),
        "laughs": laughs_dtd + f"]><{root}>{inner.format('&lol9;')}</{root}>".encode(),
        "huge": f"<{root}>{inner.format(padding)}</{root}>".encode(),
        "deep": f"<{root}>{'<a>' * 100}{'</a>' * 100}{inner.format('x')}</{root}>".encode(),
    }


@pytest.mark.parametrize("kind", ["xxe", "laughs", "huge", "deep"])
def test_hostile_xml_create_bucket(cluster: Cluster, s3: Any, kind: str) -> None:
    name = f"hostile-{uuid.uuid4().hex[:12]}"
    body = _hostile_documents("CreateBucketConfiguration")[kind]
    status, _, resp = cluster.raw("PUT", f"/{name}", body=body)
    assert _code(status, resp) == (400, "MalformedXML")
    # Nothing created.
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    status, _, _ = cluster.raw("HEAD", f"/{name}")
    assert status == 404


@pytest.mark.parametrize("kind", ["xxe", "laughs", "huge", "deep"])
def test_hostile_xml_complete_multipart(cluster: Cluster, s3: Any, bucket: str, kind: str) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, Body=b"part")
    body = _hostile_documents("CompleteMultipartUpload")[kind]
    status, _, resp = cluster.raw("POST", f"/{bucket}/mp?uploadId={upload}", body=body)
    assert _code(status, resp) == (400, "MalformedXML")
    assert _keys(s3, bucket) == []
    # The upload is still there, untouched, and can be aborted.
    assert [
        p["PartNumber"] for p in s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload)["Parts"]
    ] == [1]
    s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload)


@pytest.mark.parametrize("kind", ["xxe", "laughs", "huge", "deep"])
def test_hostile_xml_lifecycle(cluster: Cluster, s3: Any, bucket: str, kind: str) -> None:
    body = _hostile_documents("LifecycleConfiguration")[kind]
    status, _, resp = cluster.raw(
        "PUT", f"/{bucket}?lifecycle", body=body, headers={"Content-MD5": _md5(body)}
    )
    assert _code(status, resp) == (400, "MalformedXML")
    status, _, resp = cluster.raw("GET", f"/{bucket}?lifecycle")
    assert _code(status, resp) == (404, "NoSuchLifecycleConfiguration")


# --------------------------------------------------------------------------- headers


def test_metadata_too_large(cluster: Cluster, s3: Any, bucket: str) -> None:
    meta = {f"x-amz-meta-m{i}": "v" * 100 for i in range(25)}  # > 2 KB in total
    status, _, resp = cluster.raw("PUT", f"/{bucket}/k", body=b"data", headers=meta)
    assert _code(status, resp) == (400, "MetadataTooLarge")
    assert _keys(s3, bucket) == []


OVERSIZED = pytest.mark.parametrize(
    "headers",
    [
        {"X-Junk": "v" * (64 << 10)},
        {f"X-Junk-{i}": "v" * 1000 for i in range(100)},
    ],
    ids=["one-64KiB-header", "100KiB-of-headers"],
)


def _send_oversized(
    cluster: Cluster, bucket: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes] | None:
    sock = _connect(cluster)
    try:
        sock.sendall(_signed_request_head(cluster, "GET", f"/{bucket}", headers))
        return _read_response(sock)
    finally:
        sock.close()


@OVERSIZED
def test_oversized_headers_never_500(
    cluster: Cluster, bucket: str, headers: dict[str, str]
) -> None:
    got = _send_oversized(cluster, bucket, headers)
    if got is not None:  # closing the connection is an answer too
        _clean(got[0], got[2])
    _alive(cluster)


@OVERSIZED
def test_oversized_headers_refused(cluster: Cluster, bucket: str, headers: dict[str, str]) -> None:
    got = _send_oversized(cluster, bucket, headers)
    assert got is not None, "the gateway answers, it does not just drop the connection"
    assert got[0] == 400, (got[0], got[2][:300])
    assert b"<Code>RequestHeaderSectionTooLarge</Code>" in got[2]


# --------------------------------------------------------------------------- Range


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes=abc", 200),  # unparseable: ignored, whole object (headers.parse_range)
        ("bytes=5-1", 200),  # last < first: ignored
        ("items=0-1", 200),  # another unit: ignored
        ("bytes=99999999999999999999-", 416),  # starts past the end
        ("bytes=" + "9" * 5000 + "-", 416),  # longer than int() converts
        ("bytes=0-" + "9" * 5000, 206),  # clamped to the end
        ("bytes=-" + "9" * 5000, 206),  # suffix longer than the object: all of it
    ],
)
def test_bad_range(cluster: Cluster, s3: Any, bucket: str, value: str, expected: int) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"0123456789")
    status, _, body = cluster.raw("GET", f"/{bucket}/k", headers={"Range": value})
    _clean(status, body)
    assert status == expected, body[:300]
    if expected == 416:
        assert _error(body)["Code"] == "InvalidRange"
    else:
        assert body == b"0123456789"


# --------------------------------------------------------------------------- part numbers

BAD_PART_NUMBERS = ["0", "-1", "10001", "abc", "99999999999999999999", "1.5", "%201", ""]


@pytest.mark.parametrize("number", BAD_PART_NUMBERS)
def test_bad_part_number_upload_part(cluster: Cluster, s3: Any, bucket: str, number: str) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    try:
        status, _, body = cluster.raw(
            "PUT", f"/{bucket}/mp?partNumber={number}&uploadId={upload}", body=b"part"
        )
        assert _code(status, body) == (400, "InvalidArgument")
        assert s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload).get("Parts", []) == []
    finally:
        s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload)


@pytest.mark.parametrize("number", [*BAD_PART_NUMBERS, "2"])
def test_bad_part_number_get(cluster: Cluster, s3: Any, bucket: str, number: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"0123456789")
    status, _, body = cluster.raw("GET", f"/{bucket}/k?partNumber={number}")
    # An out-of-range but valid number is InvalidPartNumber (416); a malformed one is
    # InvalidArgument (400).
    assert _code(status, body) in ((400, "InvalidArgument"), (416, "InvalidPartNumber"))
    status, _, body = cluster.raw("HEAD", f"/{bucket}/k?partNumber={number}")
    assert status in (400, 416) and body == b""


def test_part_number_longer_than_int_converts(cluster: Cluster, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    status, _, body = cluster.raw("GET", f"/{bucket}/k?partNumber={'9' * 5000}")
    assert _code(status, body) in ((400, "InvalidArgument"), (416, "InvalidPartNumber"))


# --------------------------------------------------------------------------- max-*

BAD_MAX = ["-1", "abc", "99999999999999999999"]


@pytest.mark.parametrize("value", BAD_MAX)
@pytest.mark.parametrize(
    "query",
    ["list-type=2&max-keys={}", "max-keys={}", "uploads&max-uploads={}", "uploadId&max-parts={}"],
)
def test_bad_max_parameters(cluster: Cluster, s3: Any, bucket: str, query: str, value: str) -> None:
    path = f"/{bucket}"
    if query.startswith("uploadId"):
        upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
        path, query = f"/{bucket}/mp", query.replace("uploadId", f"uploadId={upload}")
    try:
        status, _, body = cluster.raw("GET", f"{path}?{query.format(value)}")
    finally:
        for up in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            s3.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
    _clean(status, body)
    if status != 200:  # S3 clamps some over-large values instead of refusing them
        assert (status, _error(body)["Code"]) == (400, "InvalidArgument"), body[:300]
    else:
        assert value == "99999999999999999999"


# --------------------------------------------------------------------------- keys


def test_invalid_utf8_key(cluster: Cluster, s3: Any, bucket: str) -> None:
    status, _, body = cluster.raw("PUT", f"/{bucket}/a%FF%FEb", body=b"x")
    assert _code(status, body) == (400, "InvalidURI")
    status, _, body = cluster.raw("GET", f"/{bucket}/a%FF%FEb")
    assert _code(status, body) == (400, "InvalidURI")
    assert _keys(s3, bucket) == []


def test_control_character_key(cluster: Cluster, s3: Any, bucket: str) -> None:
    status, _, body = cluster.raw("PUT", f"/{bucket}/a%01b", body=b"x")
    assert _code(status, body) == (400, "InvalidArgument")
    assert _keys(s3, bucket) == []
    # Control characters echoed into the error document (Resource, ArgumentValue) must not
    # break it: a bare 500 before the fix.
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    for target in (f"/{bucket}/a%01b", f"/{bucket}/k?partNumber=%01", f"/{bucket}?max-keys=%01"):
        status, _, body = cluster.raw("GET", target)
        _clean(status, body)
        assert 400 <= status < 500, (target, status, body[:300])
        err = _error(body)
        assert err["Code"] in ("InvalidArgument", "NoSuchKey"), (target, err)
    status, _, _ = cluster.raw("HEAD", f"/{bucket}/a%01b")
    assert 400 <= status < 500


@pytest.mark.parametrize("raw_key", ["..%2F..%2Fetc%2Fpasswd", "../../x", "..%2F..%2F..%2Fpasswd"])
def test_traversal_keys_stay_keys(cluster: Cluster, s3: Any, bucket: str, raw_key: str) -> None:
    before = sorted(p.name for p in cluster.data_dir.iterdir())
    status, _, body = cluster.raw("PUT", f"/{bucket}/{raw_key}", body=b"not a passwd file")
    assert status == 200, body[:300]
    key = raw_key.replace("%2F", "/")
    assert _keys(s3, bucket) == [key]
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"not a passwd file"
    status, _, body = cluster.raw("GET", f"/{bucket}/{raw_key}")
    assert (status, body) == (200, b"not a passwd file")
    # Nothing escaped into (or next to) the data directory.
    assert sorted(p.name for p in cluster.data_dir.iterdir()) == before
    assert not [p for p in cluster.data_dir.parent.rglob("passwd")]
    assert not (cluster.data_dir.parent / "x").exists()
    s3.delete_object(Bucket=bucket, Key=key)


# --------------------------------------------------------------------------- query


@pytest.mark.parametrize(
    ("method", "query"),
    [
        ("GET", "list-type=2&list-type=2"),
        ("GET", "prefix=a&prefix=b"),
        ("PUT", "partNumber=1&uploadId=a&uploadId=b"),
        ("DELETE", "uploadId=a&uploadId=b"),
    ],
)
def test_duplicate_query_parameters(
    cluster: Cluster, s3: Any, bucket: str, method: str, query: str
) -> None:
    path = f"/{bucket}" if method == "GET" else f"/{bucket}/k"
    status, _, body = cluster.raw(method, f"{path}?{query}", body=b"x" if method == "PUT" else b"")
    assert _code(status, body) == (400, "InvalidArgument")
    assert _keys(s3, bucket) == []


def test_huge_query_string(cluster: Cluster, bucket: str) -> None:
    query = "prefix=" + "a" * (64 << 10)
    sock = _connect(cluster)
    try:
        sock.sendall(_signed_request_head(cluster, "GET", f"/{bucket}?{query}", {}))
        got = _read_response(sock)
    finally:
        sock.close()
    if got is not None:
        status, _, body = got
        _clean(status, body)
        assert 400 <= status < 500, (status, body[:300])
    _alive(cluster)


# --------------------------------------------------------------------------- bodies


def _chunks_collected(cluster: Cluster) -> bool:
    files = {n: c for n, c in cluster.chunk_files().items() if c}
    return files == {n: c for n, c in cluster.referenced_chunks().items() if c}


@pytest.mark.parametrize("how", ["close", "half-close"])
def test_short_body_stores_nothing(cluster: Cluster, s3: Any, bucket: str, how: str) -> None:
    length = 3 << 20
    head = _signed_request_head(cluster, "PUT", f"/{bucket}/short", {"Content-Length": str(length)})
    sock = _connect(cluster)
    try:
        sock.sendall(head + b"x" * (length // 3))
        time.sleep(0.3)
        if how == "half-close":
            sock.shutdown(socket.SHUT_WR)
            got = _read_response(sock)
            if got is not None:
                _clean(got[0], got[2])
                assert got[0] >= 400
    finally:
        sock.close()
    status, _, _ = cluster.raw("HEAD", f"/{bucket}/short")
    assert status == 404
    assert _keys(s3, bucket) == []
    assert wait_for(lambda: _chunks_collected(cluster), timeout=30), (
        cluster.chunk_files(),
        cluster.referenced_chunks(),
    )


@pytest.mark.parametrize("pause", [True, False], ids=["separate-packet", "same-packet"])
def test_body_longer_than_content_length(
    cluster: Cluster, s3: Any, bucket: str, pause: bool
) -> None:
    head = _signed_request_head(cluster, "PUT", f"/{bucket}/exact", {"Content-Length": "10"})
    junk = b"THIS IS NOT A REQUEST\r\nX-Junk: 1\r\n\r\n"
    sock = _connect(cluster)
    try:
        if pause:
            # The excess arrives once the request is complete: the PUT stores its
            # Content-Length bytes, the excess is parsed as the next request and refused.
            sock.sendall(head + b"0123456789")
            first = _read_response(sock)
            assert first is not None and first[0] == 200, first
            sock.sendall(junk)
        else:
            # All at once: the server may answer the PUT first, or refuse the connection
            # as a whole when its parser reaches the junk.
            sock.sendall(head + b"0123456789" + junk)
        got = _read_response(sock)
        if got is not None and got[0] == 200 and not pause:
            got = _read_response(sock)
        if got is not None:
            _clean(got[0], got[2])
            assert got[0] == 400, got
    finally:
        sock.close()
    _alive(cluster)
    keys = _keys(s3, bucket)
    assert keys == ["exact"] if pause else keys in ([], ["exact"])
    if keys:
        assert s3.get_object(Bucket=bucket, Key="exact")["Body"].read() == b"0123456789"


# --------------------------------------------------------------------------- anonymous


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", "/{b}"),
        ("GET", "/{b}/k"),
        ("HEAD", "/{b}"),
        ("HEAD", "/{b}/k"),
        ("PUT", "/{b}/k"),
        ("PUT", "/{new}"),
        ("POST", "/{b}/k?uploads"),
        ("POST", "/{b}?delete"),
        ("DELETE", "/{b}/k"),
        ("DELETE", "/{b}"),
        ("PUT", "/{b}?lifecycle"),
    ],
)
def test_anonymous_requests_denied(
    cluster: Cluster, s3: Any, bucket: str, method: str, path: str
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"kept")
    new = f"anon-{uuid.uuid4().hex[:12]}"
    target = path.format(b=bucket, new=new)
    body = b"" if method in ("GET", "HEAD", "DELETE") else b"<x/>"
    status, _, resp = cluster.raw(method, target, body=body, sign=False)
    if method == "HEAD":
        assert (status, resp) == (403, b"")
    else:
        assert _code(status, resp) == (403, "AccessDenied")
    assert _keys(s3, bucket) == ["k"]
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"kept"
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert new not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
