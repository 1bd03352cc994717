"""Small bodies kept in the metadata row (S3COMPAT_INLINE_MAX, default 32 KiB): byte-exact
through every read and copy path, never on a node, collected like any other blob, and
refused whole when the body does not match what the client declared."""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from s3compat.settings import Settings
from tests.checks import body, multipart_etag, statements_per_request
from tests.cluster import Cluster, stopped, wait_for

LIMIT = Settings().inline_max
NODES = [f"node{i}" for i in range(1, 7)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(
        tmp_path_factory.mktemp("inline") / "data", env={"S3COMPAT_INLINE_MAX": str(LIMIT)}
    ).start()
    yield c
    c.stop()


@pytest.fixture
def s3(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[Any]:
    client = cluster.client()
    bucket = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[-50:].strip("-")
    client.create_bucket(Bucket=bucket)
    client.bucket = bucket
    yield client


def _on_nodes(cluster: Cluster) -> set[str]:
    return set().union(*cluster.chunk_files().values())


def _inline_rows(cluster: Cluster, bucket: str, key: str) -> list[Any]:
    return cluster.sql(
        "SELECT b.inline_data, b.state, b.refs, (SELECT count(*) FROM chunks c "
        "WHERE c.blob_id = b.blob_id) AS chunks FROM objects o "
        "JOIN blobs b ON b.blob_id = ANY (o.part_blobs) WHERE o.bucket = $1 AND o.key = $2",
        bucket,
        key,
    )


@pytest.mark.parametrize("size", [0, 1, 4096, LIMIT])
def test_small_bodies_live_in_the_row_and_read_back_exactly(
    cluster: Cluster, s3: Any, size: int
) -> None:
    data = os.urandom(size)
    before = _on_nodes(cluster)
    put = s3.put_object(Bucket=s3.bucket, Key="k", Body=data, ContentType="text/plain")
    assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert _on_nodes(cluster) == before  # no chunk was written
    [row] = _inline_rows(cluster, s3.bucket, "k")
    assert (bytes(row["inline_data"]), row["state"], row["refs"], row["chunks"]) == (
        data,
        "committed",
        1,
        0,
    )
    got = s3.get_object(Bucket=s3.bucket, Key="k")
    assert got["Body"].read() == data
    assert (got["ContentLength"], got["ContentType"], got["ETag"]) == (
        size,
        "text/plain",
        put["ETag"],
    )
    head = s3.head_object(Bucket=s3.bucket, Key="k")
    assert head["ContentLength"] == size


def test_one_byte_over_the_limit_goes_to_the_nodes(cluster: Cluster, s3: Any) -> None:
    data = os.urandom(LIMIT + 1)
    before = _on_nodes(cluster)
    s3.put_object(Bucket=s3.bucket, Key="k", Body=data)
    assert len(_on_nodes(cluster) - before) == 6
    [row] = _inline_rows(cluster, s3.bucket, "k")
    assert row["inline_data"] is None and row["chunks"] == 6
    assert body(s3, s3.bucket, "k") == data


def test_ranges_of_an_inline_body(s3: Any) -> None:
    data = os.urandom(10_000)
    s3.put_object(Bucket=s3.bucket, Key="k", Body=data)
    for spec, want in [
        ("bytes=0-0", data[:1]),
        ("bytes=100-199", data[100:200]),
        ("bytes=9000-", data[9000:]),
        ("bytes=-17", data[-17:]),
        ("bytes=9990-20000", data[9990:]),
    ]:
        got = s3.get_object(Bucket=s3.bucket, Key="k", Range=spec)
        assert got["Body"].read() == want, spec
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=s3.bucket, Key="k", Range="bytes=10000-")
    assert err.value.response["Error"]["Code"] == "InvalidRange"


def test_flexible_checksum_is_verified_and_kept(s3: Any) -> None:
    data = b"checksummed " * 100
    s3.put_object(Bucket=s3.bucket, Key="k", Body=data, ChecksumAlgorithm="SHA256")
    head = s3.head_object(Bucket=s3.bucket, Key="k", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=s3.bucket, Key="k", Body=data, ChecksumSHA256=wrong)
    assert err.value.response["Error"]["Code"] == "BadDigest"


def test_a_body_that_fails_its_content_md5_leaves_nothing(cluster: Cluster, s3: Any) -> None:
    s3.put_object(Bucket=s3.bucket, Key="k", Body=b"old")
    blobs_before = cluster.sql("SELECT count(*) AS n FROM blobs")[0]["n"]
    bad_md5 = base64.b64encode(hashlib.md5(b"not the body").digest()).decode()
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=s3.bucket, Key="k", Body=b"new body", ContentMD5=bad_md5)
    assert err.value.response["Error"]["Code"] == "BadDigest"
    assert body(s3, s3.bucket, "k") == b"old"
    assert cluster.sql("SELECT count(*) AS n FROM blobs")[0]["n"] == blobs_before


def test_signed_payload_hash_is_verified(cluster: Cluster, s3: Any) -> None:
    """A signed x-amz-content-sha256 that does not match the body: 400, nothing stored."""
    status, _, payload = cluster.raw(
        "PUT",
        f"/{s3.bucket}/signed",
        body=b"the body",
        payload_hash=hashlib.sha256(b"another body").hexdigest(),
    )
    assert status == 400 and b"XAmzContentSHA256Mismatch" in payload
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=s3.bucket, Key="signed")
    assert err.value.response["Error"]["Code"] == "404"
    status, _, _ = cluster.raw("PUT", f"/{s3.bucket}/signed", body=b"the body")
    assert status == 200 and body(s3, s3.bucket, "signed") == b"the body"


def test_overwrites_between_inline_and_chunked_release_the_old_blob(
    cluster: Cluster, s3: Any
) -> None:
    small, large = os.urandom(1000), os.urandom(LIMIT * 4)
    s3.put_object(Bucket=s3.bucket, Key="k", Body=small)
    [first] = cluster.sql(
        "SELECT part_blobs[1] AS b FROM objects WHERE bucket = $1 AND key = 'k'", s3.bucket
    )
    s3.put_object(Bucket=s3.bucket, Key="k", Body=large)
    assert body(s3, s3.bucket, "k") == large
    s3.put_object(Bucket=s3.bucket, Key="k", Body=small[::-1])
    assert body(s3, s3.bucket, "k") == small[::-1]
    # The first (inline) blob and the chunked one are collected; only the current one stays.
    assert wait_for(lambda: not cluster.sql("SELECT 1 FROM blobs WHERE blob_id = $1", first["b"]))
    assert wait_for(cluster.settled)


def test_copies_share_the_inline_blob(cluster: Cluster, s3: Any) -> None:
    data = os.urandom(5000)
    s3.put_object(Bucket=s3.bucket, Key="src", Body=data)
    s3.copy_object(Bucket=s3.bucket, Key="dst", CopySource={"Bucket": s3.bucket, "Key": "src"})
    [src] = _inline_rows(cluster, s3.bucket, "src")
    assert src["refs"] == 2
    s3.delete_object(Bucket=s3.bucket, Key="src")
    assert body(s3, s3.bucket, "dst") == data
    [dst] = _inline_rows(cluster, s3.bucket, "dst")
    assert dst["refs"] == 1


def test_upload_part_copy_from_an_inline_source(s3: Any) -> None:
    data = os.urandom(20_000)
    s3.put_object(Bucket=s3.bucket, Key="src", Body=data)
    up = s3.create_multipart_upload(Bucket=s3.bucket, Key="mp")["UploadId"]
    whole = s3.upload_part_copy(
        Bucket=s3.bucket,
        Key="mp",
        UploadId=up,
        PartNumber=1,
        CopySource={"Bucket": s3.bucket, "Key": "src"},
    )["CopyPartResult"]["ETag"]
    ranged = s3.upload_part_copy(
        Bucket=s3.bucket,
        Key="mp",
        UploadId=up,
        PartNumber=2,
        CopySource={"Bucket": s3.bucket, "Key": "src"},
        CopySourceRange="bytes=1000-2999",
    )["CopyPartResult"]["ETag"]
    # Part 1 is not the last, so it must reach the minimum part size: S3 refuses it.
    with pytest.raises(ClientError) as err:
        s3.complete_multipart_upload(
            Bucket=s3.bucket,
            Key="mp",
            UploadId=up,
            MultipartUpload={
                "Parts": [{"PartNumber": 1, "ETag": whole}, {"PartNumber": 2, "ETag": ranged}]
            },
        )
    assert err.value.response["Error"]["Code"] == "EntityTooSmall"
    done = s3.complete_multipart_upload(
        Bucket=s3.bucket,
        Key="mp",
        UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": ranged}]},
    )
    assert done["ETag"] == multipart_etag(data[1000:3000], 2000)
    assert body(s3, s3.bucket, "mp") == data[1000:3000]


def test_inline_objects_need_no_node(cluster: Cluster, s3: Any) -> None:
    """With every node stopped, small objects are still written and read; a large one is
    refused with 503 and leaves nothing visible."""
    s3.put_object(Bucket=s3.bucket, Key="before", Body=b"written before")
    client = cluster.client(retries={"total_max_attempts": 1}, read_timeout=60)
    with stopped(*(cluster.pid(n) for n in NODES)):
        client.put_object(Bucket=s3.bucket, Key="during", Body=b"written during")
        assert body(client, s3.bucket, "before") == b"written before"
        assert body(client, s3.bucket, "during") == b"written during"
    assert body(s3, s3.bucket, "during") == b"written during"


def test_conditional_create_of_an_inline_object(s3: Any) -> None:
    s3.put_object(Bucket=s3.bucket, Key="k", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=s3.bucket, Key="k", Body=b"second", IfNoneMatch="*")
    assert err.value.response["Error"]["Code"] == "PreconditionFailed"
    assert body(s3, s3.bucket, "k") == b"first"


def test_put_into_a_missing_bucket(cluster: Cluster) -> None:
    with pytest.raises(ClientError) as err:
        cluster.client().put_object(Bucket="no-such-bucket-here", Key="k", Body=b"x")
    assert err.value.response["Error"]["Code"] == "NoSuchBucket"


def test_reads_of_an_inline_object_take_one_statement(cluster: Cluster, s3: Any) -> None:
    """GetObject finds the bucket, the object and its inline body in one statement; so do
    HeadObject and a GET of a missing key."""
    s3.put_object(Bucket=s3.bucket, Key="k", Body=b"one round trip")

    def get() -> None:
        assert body(s3, s3.bucket, "k") == b"one round trip"

    def get_range() -> None:
        got = s3.get_object(Bucket=s3.bucket, Key="k", Range="bytes=4-8")["Body"].read()
        assert got == b"round"

    def get_missing() -> None:
        with pytest.raises(ClientError) as err:
            s3.get_object(Bucket=s3.bucket, Key="missing")
        assert err.value.response["Error"]["Code"] == "NoSuchKey"

    def head() -> None:
        assert s3.head_object(Bucket=s3.bucket, Key="k")["ContentLength"] == 14

    for request in (get, get_range, get_missing):
        assert statements_per_request(cluster.endpoint, "GetObject", request) == 1
    assert statements_per_request(cluster.endpoint, "HeadObject", head) == 1


def test_reads_in_a_missing_bucket(s3: Any) -> None:
    for call in (s3.get_object, s3.head_object):
        with pytest.raises(ClientError) as err:
            call(Bucket="no-such-bucket-here", Key="k")
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket="no-such-bucket-here", Key="k")
    assert err.value.response["Error"]["Code"] == "NoSuchBucket"


def test_off_when_zero(tmp_path: Path) -> None:
    c = Cluster(tmp_path / "data", env={"S3COMPAT_INLINE_MAX": "0"}).start()
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="off")
        s3.put_object(Bucket="off", Key="empty", Body=b"")
        s3.put_object(Bucket="off", Key="k", Body=b"tiny")
        assert len(_on_nodes(c)) == 12
        assert body(s3, "off", "k") == b"tiny" and body(s3, "off", "empty") == b""
    finally:
        c.stop()
