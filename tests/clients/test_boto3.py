"""boto3 against the cluster, over HTTP and HTTPS, as applications use it: the resource API,
the client API, the managed transfers (upload_fileobj from a stream that cannot seek,
download_file by parallel ranged GETs) and presigned URLs fetched by plain HTTP.

Every request boto3 sends is recorded (method, path, query, the headers that matter, and
the status of the answer); a failing test carries that record and the gateway's access log
for its bucket, so it says which request the server answered how.
"""

from __future__ import annotations

import contextlib
import hashlib
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from tests import checks
from tests.cluster import Cluster, NonSeekable

MiB = 1 << 20
PART = 8 * MiB  # boto3's default multipart_threshold and multipart_chunksize
INTERESTING_HEADERS = (
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "range",
    "if-match",
    "x-amz-content-sha256",
    "x-amz-decoded-content-length",
    "x-amz-trailer",
    "x-amz-copy-source",
    "x-amz-metadata-directive",
    "x-amz-checksum-crc32",
    "content-md5",
)


# --------------------------------------------------------------------------------------
# Recording what boto3 sends


@dataclass
class Sent:
    operation: str
    method: str
    path: str
    query: str
    headers: dict[str, str]
    status: int | None = None

    def __str__(self) -> str:
        query = f"?{self.query}" if self.query else ""
        shown = " ".join(f"{k}={v!r}" for k, v in self.headers.items())
        return f"{self.operation}: {self.method} {self.path}{query} [{shown}] -> {self.status}"


@dataclass
class Recorder:
    """Hooks on a botocore client's events: one entry per HTTP request, with its answer."""

    cluster: Cluster
    bucket: str
    sent: list[Sent] = field(default_factory=list)

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-send.s3", self._before_send)
        client.meta.events.register("needs-retry.s3", self._needs_retry)
        return client

    def _before_send(self, request: Any, event_name: str, **_: Any) -> None:
        parts = urlsplit(request.url)
        headers = {
            k.lower(): (v.decode() if isinstance(v, bytes) else str(v))
            for k, v in request.headers.items()
            if k.lower() in INTERESTING_HEADERS
        }
        operation = event_name.rsplit(".", 1)[-1]
        self.sent.append(Sent(operation, request.method, parts.path, parts.query, headers))

    def _needs_retry(self, response: Any, operation: Any, **_: Any) -> None:
        if response is None:  # a connection error: nothing was answered
            return
        for entry in reversed(self.sent):
            if entry.operation == operation.name and entry.status is None:
                entry.status = response[0].status_code
                break

    def of(self, operation: str) -> list[Sent]:
        return [s for s in self.sent if s.operation == operation]

    @contextlib.contextmanager
    def diagnosed(self) -> Iterator[None]:
        """Failures inside carry what boto3 sent and the gateway's access log."""
        try:
            yield
        except Exception as exc:
            exc.add_note("--- requests boto3 sent ---\n" + "\n".join(map(str, self.sent[-80:])))
            exc.add_note(
                f"--- gateway access log for {self.bucket} ---\n"
                + _gateway_lines(self.cluster, self.bucket)
            )
            raise


def _gateway_lines(cluster: Cluster, bucket: str, last: int = 60) -> str:
    """The gateway's access-log lines for this bucket (method, path, operation, status)."""
    try:
        text = (cluster.data_dir / "logs" / "gateway.log").read_text(errors="replace")
    except FileNotFoundError:
        return "(no gateway log)"
    return "\n".join([line for line in text.splitlines() if f"/{bucket}" in line][-last:])


# --------------------------------------------------------------------------------------
# Helpers


def _resource(cluster: Cluster) -> Any:
    return boto3.resource(
        "s3",
        endpoint_url=cluster.endpoint,
        aws_access_key_id=cluster.access_key,
        aws_secret_access_key=cluster.secret_key,
        region_name="us-east-1",
        verify=cluster.ca if cluster.tls else None,
    )


def _pattern(size: int, seed: bytes) -> bytes:
    """Deterministic, incompressible content (quicker than os.urandom for many MiB)."""
    block = b"".join(hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(2048))
    return (block * (size // len(block) + 1))[:size]


def _error_code(exc: ClientError) -> str:
    return str(exc.response["Error"]["Code"])


def _ssl_context(cluster: Cluster) -> ssl.SSLContext | None:
    return cluster.ssl_context() if cluster.tls else None


def _http(
    cluster: Cluster,
    method: str,
    url: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """One request with http.client, exactly as given: no header added but Host and
    Content-Length (urllib would add a Content-Type to a PUT, which SigV2 signs)."""
    parts = urlsplit(url)
    conn = cluster.connection(timeout=60)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, target, body=body if method == "PUT" else None, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _urlopen(cluster: Cluster, url: str) -> tuple[int, bytes]:
    """A GET with urllib, trusting the cluster's CA over HTTPS; HTTP errors are returned."""
    try:
        with urllib.request.urlopen(url, timeout=60, context=_ssl_context(cluster)) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read()


# --------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def recorded(client_bucket: tuple[Cluster, Any, str]) -> tuple[Cluster, Any, str, Recorder]:
    """client_bucket (HTTP, then HTTPS) with its client's requests recorded."""
    cluster, s3, bucket = client_bucket
    recorder = Recorder(cluster, bucket)
    recorder.attach(s3)
    return cluster, s3, bucket, recorder


@pytest.fixture
def new_bucket_name(scheme_cluster: Cluster) -> Iterator[tuple[Cluster, str]]:
    """A bucket name nobody uses yet (the test creates it), removed afterwards if the test
    left it, object by object so that cleaning up needs nothing but DeleteObject."""
    name = f"res-{uuid.uuid4().hex[:16]}"
    yield scheme_cluster, name
    s3 = scheme_cluster.client()
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=name, Key=obj["Key"])
        s3.delete_bucket(Bucket=name)
    except ClientError as exc:
        if _error_code(exc) != "NoSuchBucket":
            raise


# --------------------------------------------------------------------------------------
# Tests


def test_resource_api(new_bucket_name: tuple[Cluster, str]) -> None:
    """Bucket.create, Object.put/get/load/delete, objects.all() and filter(Prefix=),
    objects.all().delete() (DeleteObjects, 1000 keys a request) and Bucket.delete."""
    cluster, name = new_bucket_name
    s3 = _resource(cluster)
    recorder = Recorder(cluster, name)
    recorder.attach(s3.meta.client)
    with recorder.diagnosed():
        bucket = s3.Bucket(name)
        bucket.create()
        bucket.wait_until_exists()
        assert name in [b.name for b in s3.buckets.all()]

        keys = ["a.txt", "docs/one.txt", "docs/sub/three.txt", "docs/two.txt", "z z+%.txt"]
        for key in keys:
            s3.Object(name, key).put(
                Body=key.encode() * 3, ContentType="text/plain", Metadata={"origin": "resource"}
            )

        # Listed in UTF-8 byte order, across pages of two (continuation tokens).
        assert [o.key for o in bucket.objects.all()] == keys
        assert [o.key for o in bucket.objects.page_size(2)] == keys
        assert [(o.key, o.size) for o in bucket.objects.filter(Prefix="docs/")] == [
            ("docs/one.txt", 36),
            ("docs/sub/three.txt", 54),
            ("docs/two.txt", 36),
        ]

        obj = s3.Object(name, "z z+%.txt")
        got = obj.get()
        assert got["Body"].read() == b"z z+%.txt" * 3
        assert got["ContentType"] == "text/plain"
        assert got["Metadata"] == {"origin": "resource"}
        obj.load()  # HeadObject
        assert obj.content_length == 27
        assert obj.e_tag == f'"{hashlib.md5(b"z z+%.txt" * 3).hexdigest()}"'

        s3.Object(name, "a.txt").delete()
        with pytest.raises(ClientError) as gone:
            s3.Object(name, "a.txt").load()
        assert gone.value.response["Error"]["Code"] == "404"

        # DeleteObjects: one POST ?delete with every remaining key.
        answers = bucket.objects.all().delete()
        deleted = sorted(d["Key"] for a in answers for d in a.get("Deleted", []))
        assert deleted == sorted(keys[1:])
        assert not [e for a in answers for e in a.get("Errors", [])]
        assert [s.method for s in recorder.of("DeleteObjects")] == ["POST"]
        assert list(bucket.objects.all()) == []

        bucket.delete()
        bucket.wait_until_not_exists()
        assert name not in [b.name for b in s3.buckets.all()]


def test_client_api(recorded: tuple[Cluster, Any, str, Recorder]) -> None:
    """put/head/get (whole and ranged), list_objects_v2 with a delimiter and pages,
    copy_object (COPY and REPLACE of the metadata), delete_objects, delete_object."""
    _, s3, bucket, recorder = recorded
    with recorder.diagnosed():
        body = _pattern(300_000, b"client")
        put = s3.put_object(
            Bucket=bucket,
            Key="data/blob.bin",
            Body=body,
            ContentType="application/x-test",
            Metadata={"colour": "blue"},
        )
        assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
        head = s3.head_object(Bucket=bucket, Key="data/blob.bin")
        assert head["ContentLength"] == len(body)
        assert head["ContentType"] == "application/x-test"
        assert head["Metadata"] == {"colour": "blue"}
        assert s3.get_object(Bucket=bucket, Key="data/blob.bin")["Body"].read() == body
        ranged = s3.get_object(Bucket=bucket, Key="data/blob.bin", Range="bytes=1000-1999")
        assert ranged["ContentRange"] == f"bytes 1000-1999/{len(body)}"
        assert ranged["Body"].read() == body[1000:2000]

        for i in range(5):
            s3.put_object(Bucket=bucket, Key=f"data/part-{i}", Body=b"%d" % i)
        s3.put_object(Bucket=bucket, Key="top.txt", Body=b"top")
        top = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
        assert [c["Prefix"] for c in top["CommonPrefixes"]] == ["data/"]
        assert [o["Key"] for o in top["Contents"]] == ["top.txt"]
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix="data/", PaginationConfig={"PageSize": 2}
        )
        listed = [[o["Key"] for o in page["Contents"]] for page in pages]
        assert listed == [
            ["data/blob.bin", "data/part-0"],
            ["data/part-1", "data/part-2"],
            ["data/part-3", "data/part-4"],
        ]

        # CopyObject keeps the metadata by default, replaces it when told.
        s3.copy_object(
            Bucket=bucket,
            Key="copy/same.bin",
            CopySource={"Bucket": bucket, "Key": "data/blob.bin"},
        )
        same = s3.head_object(Bucket=bucket, Key="copy/same.bin")
        assert same["Metadata"] == {"colour": "blue"}
        assert same["ContentType"] == "application/x-test"
        assert same["ETag"] == head["ETag"]
        s3.copy_object(
            Bucket=bucket,
            Key="copy/new.bin",
            CopySource={"Bucket": bucket, "Key": "data/blob.bin"},
            MetadataDirective="REPLACE",
            Metadata={"colour": "red"},
            ContentType="text/plain",
        )
        new = s3.get_object(Bucket=bucket, Key="copy/new.bin")
        assert new["Metadata"] == {"colour": "red"}
        assert new["ContentType"] == "text/plain"
        assert checks.sha256(new["Body"].read()) == checks.sha256(body)

        # DeleteObjects: a key that does not exist is reported deleted too, as S3 does.
        answer = s3.delete_objects(
            Bucket=bucket,
            Delete={"Objects": [{"Key": f"data/part-{i}"} for i in range(5)] + [{"Key": "nope"}]},
        )
        assert sorted(d["Key"] for d in answer["Deleted"]) == sorted(
            [f"data/part-{i}" for i in range(5)] + ["nope"]
        )
        assert "Errors" not in answer
        s3.delete_object(Bucket=bucket, Key="top.txt")
        remaining = s3.list_objects_v2(Bucket=bucket)["Contents"]
        assert [o["Key"] for o in remaining] == ["copy/new.bin", "copy/same.bin", "data/blob.bin"]


def test_upload_fileobj_non_seekable_multipart(
    recorded: tuple[Cluster, Any, str, Recorder],
) -> None:
    """12 MiB from a stream that cannot seek or tell its size: boto3 buffers 8 MiB parts
    itself (threshold 8 MiB) and sends a two-part multipart upload."""
    _, s3, bucket, recorder = recorded
    with recorder.diagnosed():
        data = _pattern(12 * MiB, b"fileobj")
        s3.upload_fileobj(NonSeekable(data), bucket, "stream/upload.bin")

        assert len(recorder.of("CreateMultipartUpload")) == 1
        assert len(recorder.of("UploadPart")) == 2
        assert len(recorder.of("CompleteMultipartUpload")) == 1
        head = s3.head_object(Bucket=bucket, Key="stream/upload.bin")
        assert head["ContentLength"] == len(data)
        assert head["ETag"] == checks.multipart_etag(data, PART)
        assert head["ETag"].endswith('-2"')
        got = s3.get_object(Bucket=bucket, Key="stream/upload.bin")["Body"].read()
        assert checks.sha256(got) == checks.sha256(data)
        assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)


def test_download_file_parallel_ranges(
    recorded: tuple[Cluster, Any, str, Recorder], tmp_path: Path
) -> None:
    """download_file above the threshold: HeadObject, then 8 MiB ranged GETs in parallel,
    each with If-Match: <ETag>, written into place by offset."""
    _, s3, bucket, recorder = recorded
    with recorder.diagnosed():
        size = 20 * MiB + 123
        data = _pattern(size, b"download")
        etag = s3.put_object(Bucket=bucket, Key="down/file.bin", Body=data)["ETag"]
        recorder.sent.clear()

        dst = tmp_path / "file.bin"
        s3.download_file(bucket, "down/file.bin", str(dst), Config=TransferConfig())

        assert dst.stat().st_size == size
        digest = hashlib.sha256()
        with open(dst, "rb") as f:
            while piece := f.read(MiB):
                digest.update(piece)
        assert digest.hexdigest() == checks.sha256(data)

        assert len(recorder.of("HeadObject")) == 1
        gets = recorder.of("GetObject")
        assert sorted(g.headers.get("range", "") for g in gets) == sorted(
            # s3transfer leaves the last range open-ended.
            [f"bytes=0-{PART - 1}", f"bytes={PART}-{2 * PART - 1}", f"bytes={2 * PART}-"]
        )
        assert {g.headers.get("if-match") for g in gets} == {etag}
        assert {g.status for g in gets} == {206}


@pytest.mark.parametrize("signature", ["sigv2", "sigv4"])
def test_presigned_put_and_get(
    recorded: tuple[Cluster, Any, str, Recorder], signature: str
) -> None:
    """URLs from generate_presigned_url, used by plain HTTP clients: a PUT by http.client
    (a signed Content-Type must be sent as signed), a GET by urllib. boto3 presigns with
    SigV2 query auth by default; signature_version="s3v4" gives SigV4."""
    cluster, s3, bucket, recorder = recorded
    signer = s3 if signature == "sigv2" else cluster.client(signature_version="s3v4")
    with recorder.diagnosed():
        key = "presigned/hello world+1.txt"
        body = b"uploaded with a presigned URL\n" * 100
        put_url = signer.generate_presigned_url(
            "put_object",
            Params={"Bucket": bucket, "Key": key, "ContentType": "text/plain"},
            ExpiresIn=300,
        )
        assert ("X-Amz-Signature=" in put_url) == (signature == "sigv4")

        # Another Content-Type than the signed one is refused, and nothing is stored.
        status, answer = _http(cluster, "PUT", put_url, body, {"Content-Type": "image/png"})
        assert status == 403, answer
        assert b"SignatureDoesNotMatch" in answer
        with pytest.raises(ClientError) as missing:
            s3.head_object(Bucket=bucket, Key=key)
        assert _error_code(missing.value) == "404"

        status, answer = _http(cluster, "PUT", put_url, body, {"Content-Type": "text/plain"})
        assert status == 200, answer
        got = s3.get_object(Bucket=bucket, Key=key)
        assert got["Body"].read() == body
        assert got["ContentType"] == "text/plain"
        assert got["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'

        get_url = signer.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300
        )
        status, answer = _urlopen(cluster, get_url)
        assert status == 200
        assert answer == body

        # The same signature for another key is refused.
        other = get_url.replace("hello%20world%2B1.txt", "hello%20world%2B2.txt")
        assert other != get_url
        status, answer = _urlopen(cluster, other)
        assert status == 403, answer
        assert b"SignatureDoesNotMatch" in answer
