"""CopyObject: directives, sources, conditions, the result document, and zero-copy.

rclone changes modtimes and s3fs does chmod/utime/rename with a copy of an object onto
itself (x-amz-metadata-directive: REPLACE); aws-cli copies s3→s3 with CopyObject below its
multipart threshold. Copies share the source's blobs: no chunk is written, and either side
can be deleted without harming the other.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote

import pytest
from botocore.exceptions import ClientError
from lxml import etree

from tests import checks
from tests.cluster import Cluster, wait_for

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
MiB = 1 << 20


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    err = exc.value.response
    return err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"]


def _all_chunks(cluster: Cluster) -> set[str]:
    return set().union(*cluster.chunk_files().values())


@pytest.fixture
def other_bucket(s3: Any) -> Any:
    name = f"copy-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    yield name
    for obj in s3.list_objects_v2(Bucket=name).get("Contents", []):
        s3.delete_object(Bucket=name, Key=obj["Key"])
    for up in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])
    s3.delete_bucket(Bucket=name)


def test_copy_within_and_across_buckets_keeps_metadata(
    s3: Any, bucket: str, other_bucket: str
) -> None:
    s3.put_object(
        Bucket=bucket,
        Key="src",
        Body=b"payload",
        ContentType="text/plain",
        ContentDisposition="inline",
        CacheControl="max-age=60",
        Metadata={"colour": "blue"},
    )
    src = s3.head_object(Bucket=bucket, Key="src")
    for dest_bucket, dest_key in ((bucket, "same-bucket"), (other_bucket, "dir/other")):
        out = s3.copy_object(
            Bucket=dest_bucket, Key=dest_key, CopySource={"Bucket": bucket, "Key": "src"}
        )
        assert out["CopyObjectResult"]["ETag"] == src["ETag"]
        head = s3.head_object(Bucket=dest_bucket, Key=dest_key)
        assert head["ContentType"] == "text/plain"
        assert head["ContentDisposition"] == "inline"
        assert head["CacheControl"] == "max-age=60"
        assert head["Metadata"] == {"colour": "blue"}
        assert head["ETag"] == src["ETag"]
        assert "x-amz-version-id" not in head["ResponseMetadata"]["HTTPHeaders"]
        assert checks.body(s3, dest_bucket, dest_key) == b"payload"


def test_replace_directive_takes_the_requests_metadata(s3: Any, bucket: str) -> None:
    s3.put_object(
        Bucket=bucket, Key="src", Body=b"x", ContentType="text/plain", Metadata={"old": "1"}
    )
    s3.copy_object(
        Bucket=bucket,
        Key="dst",
        CopySource=f"{bucket}/src",
        MetadataDirective="REPLACE",
        ContentType="application/json",
        Metadata={"new": "2"},
    )
    head = s3.head_object(Bucket=bucket, Key="dst")
    assert head["ContentType"] == "application/json"
    assert head["Metadata"] == {"new": "2"}
    # COPY (explicit) ignores the request's metadata.
    s3.copy_object(
        Bucket=bucket,
        Key="dst2",
        CopySource=f"{bucket}/src",
        MetadataDirective="COPY",
        ContentType="application/json",
        Metadata={"ignored": "3"},
    )
    head = s3.head_object(Bucket=bucket, Key="dst2")
    assert head["ContentType"] == "text/plain"
    assert head["Metadata"] == {"old": "1"}


def test_copy_onto_itself(cluster: Cluster, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="self", Body=b"same bytes", Metadata={"mtime": "1"})
    etag = s3.head_object(Bucket=bucket, Key="self")["ETag"]
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="self", CopySource=f"{bucket}/self")
    assert _code(exc) == (400, "InvalidRequest")
    # rclone's modtime update, s3fs's chmod: REPLACE onto itself.
    s3.copy_object(
        Bucket=bucket,
        Key="self",
        CopySource=f"{bucket}/self",
        MetadataDirective="REPLACE",
        Metadata={"mtime": "2", "mode": "33188"},
    )
    head = s3.head_object(Bucket=bucket, Key="self")
    assert head["Metadata"] == {"mtime": "2", "mode": "33188"}
    assert head["ETag"] == etag
    assert checks.body(s3, bucket, "self") == b"same bytes"
    # The blob kept exactly one reference through add-then-release.
    refs = cluster.sql(
        "SELECT b.refs FROM objects o JOIN blobs b ON b.blob_id = o.part_blobs[1] "
        "WHERE o.bucket = $1 AND o.key = 'self'",
        bucket,
    )
    assert [r["refs"] for r in refs] == [1]


def test_invalid_metadata_directive(s3: Any, bucket: str, cluster: Cluster) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"x")
    status, _, body = cluster.raw(
        "PUT",
        f"/{bucket}/dst",
        headers={"x-amz-copy-source": f"/{bucket}/src", "x-amz-metadata-directive": "MOVE"},
    )
    assert status == 400
    assert etree.fromstring(body).findtext("Code") == "InvalidArgument"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="dst")


@pytest.mark.parametrize(
    "form",
    ["{b}/{k}", "/{b}/{k}", "{b}/{k}?versionId=null"],
)
def test_copy_source_forms(cluster: Cluster, s3: Any, bucket: str, form: str) -> None:
    key = "dir/a key+plus%percent/é ü"
    s3.put_object(Bucket=bucket, Key=key, Body=b"encoded")
    source = form.format(b=bucket, k=quote(key, safe="/"))
    status, _, body = cluster.raw("PUT", f"/{bucket}/copied", headers={"x-amz-copy-source": source})
    assert status == 200, body
    root = etree.fromstring(body)
    assert root.tag == f"{NS}CopyObjectResult"
    assert [etree.QName(el).localname for el in root][:2] == ["LastModified", "ETag"]
    assert root.findtext(f"{NS}ETag") == s3.head_object(Bucket=bucket, Key=key)["ETag"]
    assert root.findtext(f"{NS}LastModified", "").endswith("Z")
    assert checks.body(s3, bucket, "copied") == b"encoded"


@pytest.mark.parametrize(
    ("source", "code"),
    [
        ("{b}", "InvalidArgument"),
        ("{b}/k?versionId=3HL4kqtJlcpXroDTDmJ", "InvalidArgument"),
        ("{b}/missing", "NoSuchKey"),
        ("no-such-bucket-{u}/k", "NoSuchBucket"),
    ],
)
def test_bad_copy_sources(cluster: Cluster, bucket: str, source: str, code: str) -> None:
    status, _, body = cluster.raw(
        "PUT",
        f"/{bucket}/dst",
        headers={"x-amz-copy-source": source.format(b=bucket, u=uuid.uuid4().hex[:8])},
    )
    assert etree.fromstring(body).findtext("Code") == code
    assert status == {"InvalidArgument": 400, "NoSuchKey": 404, "NoSuchBucket": 404}[code]


def test_copy_into_missing_bucket(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=f"nope-{uuid.uuid4().hex[:8]}", Key="k", CopySource=f"{bucket}/src")
    assert _code(exc) == (404, "NoSuchBucket")


def _http_date(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def test_copy_source_conditions(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"conditional")
    head = s3.head_object(Bucket=bucket, Key="src")
    etag, modified = head["ETag"], head["LastModified"]
    before, after = modified - timedelta(days=1), modified + timedelta(days=1)
    ok = [
        {"CopySourceIfMatch": etag},
        {"CopySourceIfNoneMatch": '"0123"'},
        {"CopySourceIfModifiedSince": before},
        {"CopySourceIfUnmodifiedSince": after},
        # If-Match true overrides If-Unmodified-Since false.
        {"CopySourceIfMatch": etag, "CopySourceIfUnmodifiedSince": before},
    ]
    failing = [
        {"CopySourceIfMatch": '"0123"'},
        {"CopySourceIfNoneMatch": etag},
        {"CopySourceIfModifiedSince": after},
        {"CopySourceIfUnmodifiedSince": before},
        # If-None-Match false with If-Modified-Since true still fails.
        {"CopySourceIfNoneMatch": etag, "CopySourceIfModifiedSince": before},
    ]
    for i, conditions in enumerate(ok):
        s3.copy_object(Bucket=bucket, Key=f"ok{i}", CopySource=f"{bucket}/src", **conditions)
        assert checks.body(s3, bucket, f"ok{i}") == b"conditional"
    for i, conditions in enumerate(failing):
        with pytest.raises(ClientError) as exc:
            s3.copy_object(Bucket=bucket, Key=f"no{i}", CopySource=f"{bucket}/src", **conditions)
        assert _code(exc) == (412, "PreconditionFailed"), conditions
        with pytest.raises(ClientError):
            s3.head_object(Bucket=bucket, Key=f"no{i}")


def test_copy_of_multipart_object(s3: Any, bucket: str, other_bucket: str) -> None:
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(123)]
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", ContentType="video/mp4")
    done = []
    for n, data in enumerate(parts, 1):
        r = s3.upload_part(
            Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=n, Body=data
        )
        done.append({"PartNumber": n, "ETag": r["ETag"]})
    s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=up["UploadId"], MultipartUpload={"Parts": done}
    )
    src = s3.head_object(Bucket=bucket, Key="mp")
    s3.copy_object(Bucket=other_bucket, Key="mp-copy", CopySource=f"{bucket}/mp")
    head = s3.head_object(Bucket=other_bucket, Key="mp-copy")
    assert head["ETag"] == src["ETag"] and head["ETag"].endswith('-3"')
    assert head["ContentType"] == "video/mp4"
    whole = b"".join(parts)
    got = checks.body(s3, other_bucket, "mp-copy")
    assert hashlib.sha256(got).digest() == hashlib.sha256(whole).digest()
    # Part-wise reads still follow the original parts.
    second = s3.get_object(Bucket=other_bucket, Key="mp-copy", PartNumber=2)
    assert second["PartsCount"] == 3
    assert second["Body"].read() == parts[1]
    ranged = s3.get_object(
        Bucket=other_bucket, Key="mp-copy", Range=f"bytes={5 * MiB - 3}-{5 * MiB + 2}"
    )
    assert ranged["Body"].read() == whole[5 * MiB - 3 : 5 * MiB + 3]


def test_copy_is_zero_copy_and_reference_safe(
    cluster: Cluster, s3: Any, bucket: str, other_bucket: str
) -> None:
    data = os.urandom(3 * MiB + 17)
    s3.put_object(Bucket=bucket, Key="orig", Body=data)
    before = _all_chunks(cluster)
    s3.copy_object(Bucket=other_bucket, Key="c1", CopySource=f"{bucket}/orig")
    s3.copy_object(Bucket=bucket, Key="c2", CopySource=f"{bucket}/orig")
    # No chunk was written: the copies point at the source's blob. (Chunks of earlier
    # tests may be collected meanwhile, so only new ones count.)
    assert _all_chunks(cluster) - before == set()
    blobs = cluster.sql(
        "SELECT bucket, key, part_blobs FROM objects WHERE (bucket, key) IN "
        "(($1, 'orig'), ($2, 'c1'), ($1, 'c2'))",
        bucket,
        other_bucket,
    )
    assert len({tuple(r["part_blobs"]) for r in blobs}) == 1 and len(blobs) == 3
    (blob_id,) = blobs[0]["part_blobs"]
    refs = cluster.sql("SELECT refs, state FROM blobs WHERE blob_id = $1", blob_id)
    assert [(r["refs"], r["state"]) for r in refs] == [(3, "committed")]
    chunk_ids = {f"{blob_id.hex}-{i}" for i in range(6)}
    assert chunk_ids <= before

    # Deleting the source leaves both copies whole.
    s3.delete_object(Bucket=bucket, Key="orig")
    assert wait_for(cluster.settled)
    assert chunk_ids <= _all_chunks(cluster)
    assert checks.body(s3, other_bucket, "c1") == data
    # Overwriting one copy releases only its reference.
    s3.put_object(Bucket=bucket, Key="c2", Body=b"new")
    assert wait_for(cluster.settled)
    assert checks.body(s3, other_bucket, "c1") == data
    assert cluster.sql("SELECT refs FROM blobs WHERE blob_id = $1", blob_id)[0]["refs"] == 1
    # The last reference gone, the chunks are collected.
    s3.delete_object(Bucket=other_bucket, Key="c1")
    assert wait_for(lambda: not (chunk_ids & _all_chunks(cluster)))
    assert wait_for(cluster.settled)
    assert cluster.sql("SELECT 1 FROM blobs WHERE blob_id = $1", blob_id) == []


def test_copy_replaces_destination_and_releases_it(cluster: Cluster, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"source")
    s3.put_object(Bucket=bucket, Key="dst", Body=b"old destination")
    (old,) = cluster.sql(
        "SELECT part_blobs[1] AS b FROM objects WHERE bucket = $1 AND key = 'dst'", bucket
    )
    s3.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/src")
    assert checks.body(s3, bucket, "dst") == b"source"
    assert wait_for(lambda: not cluster.sql("SELECT 1 FROM blobs WHERE blob_id = $1", old["b"]))
    assert wait_for(cluster.settled)


def test_copy_keeps_checksum_and_reports_it(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"summed", ChecksumAlgorithm="SHA256")
    out = s3.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/src")
    expected = s3.head_object(Bucket=bucket, Key="src", ChecksumMode="ENABLED")["ChecksumSHA256"]
    assert out["CopyObjectResult"]["ChecksumSHA256"] == expected
    head = s3.head_object(Bucket=bucket, Key="dst", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == expected


def test_copy_source_must_be_readable_by_the_caller(cluster: Cluster, s3: Any, bucket: str) -> None:
    from tests.conftest import SECOND_USER

    s3.put_object(Bucket=bucket, Key="private", Body=b"mine")
    other = cluster.client(access_key=SECOND_USER[0], secret_key=SECOND_USER[1])
    name = f"second-{uuid.uuid4().hex[:12]}"
    other.create_bucket(Bucket=name)
    try:
        with pytest.raises(ClientError) as exc:
            other.copy_object(Bucket=name, Key="stolen", CopySource=f"{bucket}/private")
        assert _code(exc)[0] == 403
        assert other.list_objects_v2(Bucket=name).get("KeyCount") == 0
    finally:
        other.delete_bucket(Bucket=name)


def test_upload_part_copy_shares_whole_parts(
    cluster: Cluster, s3: Any, bucket: str, other_bucket: str
) -> None:
    """aws-cli copies big objects part by part with the source's part size: each part that
    is exactly one source blob is shared, not rewritten. Other ranges copy bytes."""
    parts = [os.urandom(5 * MiB), os.urandom(2 * MiB + 5)]
    up = s3.create_multipart_upload(Bucket=bucket, Key="src")
    done = []
    for n, data in enumerate(parts, 1):
        r = s3.upload_part(
            Bucket=bucket, Key="src", UploadId=up["UploadId"], PartNumber=n, Body=data
        )
        done.append({"PartNumber": n, "ETag": r["ETag"]})
    s3.complete_multipart_upload(
        Bucket=bucket, Key="src", UploadId=up["UploadId"], MultipartUpload={"Parts": done}
    )
    src_etag = s3.head_object(Bucket=bucket, Key="src")["ETag"]
    (row,) = cluster.sql("SELECT part_blobs FROM objects WHERE bucket = $1 AND key = 'src'", bucket)
    source_blobs = list(row["part_blobs"])

    before = _all_chunks(cluster)
    cp = s3.create_multipart_upload(Bucket=other_bucket, Key="dst")
    ranges = [(0, 5 * MiB - 1), (5 * MiB, 7 * MiB + 4)]
    copied = []
    for n, (first, last) in enumerate(ranges, 1):
        r = s3.upload_part_copy(
            Bucket=other_bucket,
            Key="dst",
            UploadId=cp["UploadId"],
            PartNumber=n,
            CopySource=f"{bucket}/src",
            CopySourceRange=f"bytes={first}-{last}",
        )
        copied.append({"PartNumber": n, "ETag": r["CopyPartResult"]["ETag"]})
    assert [c["ETag"] for c in copied] == [d["ETag"] for d in done]
    assert _all_chunks(cluster) - before == set()  # nothing written
    # An unaligned range is copied byte for byte into a new blob.
    r = s3.upload_part_copy(
        Bucket=other_bucket,
        Key="dst",
        UploadId=cp["UploadId"],
        PartNumber=3,
        CopySource=f"{bucket}/src",
        CopySourceRange="bytes=10-99",
    )
    assert r["CopyPartResult"]["ETag"] == f'"{hashlib.md5(parts[0][10:100]).hexdigest()}"'
    assert _all_chunks(cluster) - before != set()
    s3.complete_multipart_upload(
        Bucket=other_bucket, Key="dst", UploadId=cp["UploadId"], MultipartUpload={"Parts": copied}
    )
    assert s3.head_object(Bucket=other_bucket, Key="dst")["ETag"] == src_etag
    (row,) = cluster.sql(
        "SELECT part_blobs FROM objects WHERE bucket = $1 AND key = 'dst'", other_bucket
    )
    assert list(row["part_blobs"]) == source_blobs
    # The source goes; the copy, sharing its blobs, stays whole. Part 3 (unused) is collected.
    s3.delete_object(Bucket=bucket, Key="src")
    assert wait_for(cluster.settled)
    assert checks.body(s3, other_bucket, "dst") == b"".join(parts)
