"""Multipart uploads through boto3 (and raw HTTP where boto3 cannot say it): every operation
and every error code, collection of replaced, unused and aborted parts, paging against a
reference computed here, and reads of multipart objects by range and by part number.

Most tests run on a module cluster whose minimum part size is 1 KiB, so that completions
need no 5 MiB parts; the tests about the 5 MiB rule and about reads of real-sized parts
use the session cluster (default minimum part size).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import hashlib
import random
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

import asyncpg
import pytest
from botocore.exceptions import ClientError
from lxml import etree

from tests.cluster import Cluster, wait_for
from tests.conftest import SECOND_USER

KiB = 1 << 10
MiB = 1 << 20
SEGMENT = 6 * MiB  # a multiple of the default segment (k × F = 2 MiB): its edges are segment edges
SMALL_MIN_PART = 1024


# --- fixtures and helpers -------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster whose parts (but the last) need only be 1 KiB."""
    c = Cluster(
        tmp_path_factory.mktemp("mp-small"),
        env={"S3COMPAT_MIN_PART_SIZE": str(SMALL_MIN_PART)},
    ).start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def ss3(small: Cluster) -> Any:
    return small.client()


@contextlib.contextmanager
def _fresh_bucket(client: Any) -> Iterator[str]:
    """A new bucket; afterwards every upload is aborted and every object deleted."""
    name = f"mp-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name)
    try:
        yield name
    finally:
        params: dict[str, str] = {}
        while True:
            page = client.list_multipart_uploads(Bucket=name, **params)
            for u in page.get("Uploads", []):
                with contextlib.suppress(ClientError):
                    client.abort_multipart_upload(Bucket=name, Key=u["Key"], UploadId=u["UploadId"])
            if not page.get("IsTruncated"):
                break
            params = {
                "KeyMarker": page["NextKeyMarker"],
                "UploadIdMarker": page["NextUploadIdMarker"],
            }
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for obj in page.get("Contents", []):
                client.delete_object(Bucket=name, Key=obj["Key"])
        client.delete_bucket(Bucket=name)


@pytest.fixture
def sb(ss3: Any) -> Iterator[str]:
    """A fresh bucket on the small-part cluster."""
    with _fresh_bucket(ss3) as name:
        yield name


@pytest.fixture
def mb(s3: Any) -> Iterator[str]:
    """A fresh bucket on the session cluster (5 MiB parts), uploads aborted afterwards."""
    with _fresh_bucket(s3) as name:
        yield name


def _data(n: int, seed: int | str) -> bytes:
    return random.Random(seed).randbytes(n)


def _md5_etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


def _multipart_etag(parts: list[bytes]) -> str:
    """S3's multipart ETag, computed independently: md5 of the binary part md5s, -N."""
    joined = b"".join(hashlib.md5(p).digest() for p in parts)
    return f'"{hashlib.md5(joined).hexdigest()}-{len(parts)}"'


def _b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def _err(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    resp = exc.value.response
    return resp["ResponseMetadata"]["HTTPStatusCode"], resp["Error"]["Code"]


def _raw_error(body: bytes) -> str:
    root = etree.fromstring(body)
    assert root.tag == "Error", body
    return str(root.findtext("Code"))


def _upload(client: Any, bucket: str, key: str, parts: list[bytes], **create: Any) -> str:
    """Create an upload and upload `parts` as parts 1..N; returns the upload id."""
    uid: str = client.create_multipart_upload(Bucket=bucket, Key=key, **create)["UploadId"]
    for n, body in enumerate(parts, 1):
        etag = client.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=n, Body=body)[
            "ETag"
        ]
        assert etag == _md5_etag(body)
    return uid


def _complete(client: Any, bucket: str, key: str, uid: str, parts: list[bytes]) -> Any:
    spec = [{"PartNumber": n, "ETag": _md5_etag(p)} for n, p in enumerate(parts, 1)]
    return client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=uid, MultipartUpload={"Parts": spec}
    )


def _get(client: Any, bucket: str, key: str, **kw: Any) -> bytes:
    body: bytes = client.get_object(Bucket=bucket, Key=key, **kw)["Body"].read()
    return body


def _part_blobs(cluster: Cluster, upload_id: str) -> dict[int, uuid.UUID]:
    rows = cluster.sql(
        "SELECT part_number, blob_id FROM upload_parts WHERE upload_id = $1",
        uuid.UUID(upload_id),
    )
    return {r["part_number"]: r["blob_id"] for r in rows}


def _object_blobs(cluster: Cluster, bucket: str, key: str) -> list[uuid.UUID]:
    rows = cluster.sql("SELECT part_blobs FROM objects WHERE bucket = $1 AND key = $2", bucket, key)
    return list(rows[0]["part_blobs"]) if rows else []


def _chunk_names(blob_id: uuid.UUID) -> set[str]:
    return {f"{blob_id.hex}-{i}" for i in range(6)}


def _on_disk(cluster: Cluster) -> set[str]:
    return set().union(*cluster.chunk_files().values())


def _collected(cluster: Cluster, blob_ids: list[uuid.UUID]) -> bool:
    """No row and no chunk file is left of any of these blobs."""
    rows = cluster.sql("SELECT 1 FROM blobs WHERE blob_id = ANY($1::uuid[])", blob_ids)
    names = set().union(*(_chunk_names(b) for b in blob_ids))
    return not rows and not (names & _on_disk(cluster))


def _present(cluster: Cluster, blob_ids: list[uuid.UUID]) -> bool:
    rows = cluster.sql(
        "SELECT blob_id FROM blobs WHERE blob_id = ANY($1::uuid[]) AND state = 'committed'",
        blob_ids,
    )
    names = set().union(*(_chunk_names(b) for b in blob_ids))
    return len(rows) == len(set(blob_ids)) and names <= _on_disk(cluster)


def _settled(cluster: Cluster) -> bool:
    """Disk holds exactly the committed chunks, and no blob awaits collection."""
    on_disk = {n: ids for n, ids in cluster.chunk_files().items() if ids}
    referenced = {n: ids for n, ids in cluster.referenced_chunks().items() if ids}
    pending = cluster.sql("SELECT 1 FROM blobs WHERE state <> 'committed'")
    return on_disk == referenced and not pending


# --- CreateMultipartUpload ------------------------------------------------------------


def test_create_stores_headers_and_user_metadata(ss3: Any, sb: str) -> None:
    parts = [_data(2 * KiB, 1), _data(100, 2)]
    uid = _upload(
        ss3,
        sb,
        "doc.txt",
        parts,
        ContentType="text/plain; charset=utf-8",
        ContentDisposition='attachment; filename="report.txt"',
        ContentLanguage="de-DE",
        CacheControl="max-age=60",
        ContentEncoding="identity",
        Metadata={"color": "blue", "Mixed-Case": "Value With Spaces"},
    )
    # The upload is not an object until completed.
    with pytest.raises(ss3.exceptions.NoSuchKey):
        ss3.get_object(Bucket=sb, Key="doc.txt")
    _complete(ss3, sb, "doc.txt", uid, parts)
    head = ss3.head_object(Bucket=sb, Key="doc.txt")
    get = ss3.get_object(Bucket=sb, Key="doc.txt")
    for resp in (head, get):
        assert resp["ContentType"] == "text/plain; charset=utf-8"
        assert resp["ContentDisposition"] == 'attachment; filename="report.txt"'
        assert resp["ContentLanguage"] == "de-DE"
        assert resp["CacheControl"] == "max-age=60"
        assert resp["ContentEncoding"] == "identity"
        assert resp["Metadata"] == {"color": "blue", "mixed-case": "Value With Spaces"}
        assert resp["ContentLength"] == sum(map(len, parts))
    assert get["Body"].read() == b"".join(parts)


def test_create_without_content_type_gets_the_default(ss3: Any, sb: str) -> None:
    parts = [b"only part"]
    uid = _upload(ss3, sb, "k", parts)
    _complete(ss3, sb, "k", uid, parts)
    assert ss3.head_object(Bucket=sb, Key="k")["ContentType"] == "binary/octet-stream"


def test_create_answers_bucket_key_and_upload_id(ss3: Any, sb: str) -> None:
    key = "dir/with space+plus%/ü"
    resp = ss3.create_multipart_upload(Bucket=sb, Key=key)
    assert (resp["Bucket"], resp["Key"]) == (sb, key)
    assert uuid.UUID(resp["UploadId"])  # an opaque id; ours happen to be UUIDs
    other = ss3.create_multipart_upload(Bucket=sb, Key=key)["UploadId"]
    assert other != resp["UploadId"]  # two uploads of one key are independent


def test_create_in_missing_bucket(ss3: Any) -> None:
    with pytest.raises(ClientError) as exc:
        ss3.create_multipart_upload(Bucket=f"missing-{uuid.uuid4().hex[:12]}", Key="k")
    assert _err(exc) == (404, "NoSuchBucket")


# --- UploadPart -----------------------------------------------------------------------


@pytest.mark.parametrize("number", [0, 10001, -1])
def test_upload_part_number_out_of_range(ss3: Any, sb: str, number: int) -> None:
    uid = ss3.create_multipart_upload(Bucket=sb, Key="k")["UploadId"]
    with pytest.raises(ClientError) as exc:
        ss3.upload_part(Bucket=sb, Key="k", UploadId=uid, PartNumber=number, Body=b"x")
    assert _err(exc) == (400, "InvalidArgument")
    assert "Parts" not in ss3.list_parts(Bucket=sb, Key="k", UploadId=uid)


@pytest.mark.parametrize("number", ["abc", "", "1.5", "0x1", "-", "1e3"])
def test_upload_part_number_not_an_integer(small: Cluster, ss3: Any, sb: str, number: str) -> None:
    uid = ss3.create_multipart_upload(Bucket=sb, Key="k")["UploadId"]
    status, _, body = small.raw("PUT", f"/{sb}/k?partNumber={number}&uploadId={uid}", body=b"data")
    assert (status, _raw_error(body)) == (400, "InvalidArgument")
    assert "Parts" not in ss3.list_parts(Bucket=sb, Key="k", UploadId=uid)


@pytest.mark.parametrize("number", ["%201", "%2B1", "1_0", "%D9%A1"])
def test_upload_part_number_lenient_integer_forms(
    small: Cluster, ss3: Any, sb: str, number: str
) -> None:
    uid = ss3.create_multipart_upload(Bucket=sb, Key="k")["UploadId"]
    status, _, body = small.raw("PUT", f"/{sb}/k?partNumber={number}&uploadId={uid}", body=b"data")
    assert (status, body and _raw_error(body)) == (400, "InvalidArgument")


def test_upload_part_number_bounds_are_inclusive(ss3: Any, sb: str) -> None:
    uid = ss3.create_multipart_upload(Bucket=sb, Key="k")["UploadId"]
    for n in (1, 10000):
        ss3.upload_part(Bucket=sb, Key="k", UploadId=uid, PartNumber=n, Body=b"p%d" % n)
    listed = ss3.list_parts(Bucket=sb, Key="k", UploadId=uid)["Parts"]
    assert [p["PartNumber"] for p in listed] == [1, 10000]


@pytest.mark.parametrize("upload_id", [str(uuid.uuid4()), "garbage", "", "../../etc", "0" * 400])
def test_upload_part_unknown_upload(ss3: Any, sb: str, upload_id: str) -> None:
    with pytest.raises(ClientError) as exc:
        ss3.upload_part(Bucket=sb, Key="k", UploadId=upload_id, PartNumber=1, Body=b"x")
    assert _err(exc) == (404, "NoSuchUpload")


def test_upload_id_belongs_to_its_key_and_bucket(ss3: Any, sb: str) -> None:
    uid = ss3.create_multipart_upload(Bucket=sb, Key="mine")["UploadId"]
    with pytest.raises(ClientError) as exc:
        ss3.upload_part(Bucket=sb, Key="other", UploadId=uid, PartNumber=1, Body=b"x")
    assert _err(exc) == (404, "NoSuchUpload")
    with _fresh_bucket(ss3) as elsewhere:
        with pytest.raises(ClientError) as exc:
            ss3.upload_part(Bucket=elsewhere, Key="mine", UploadId=uid, PartNumber=1, Body=b"x")
        assert _err(exc) == (404, "NoSuchUpload")
    assert "Parts" not in ss3.list_parts(Bucket=sb, Key="mine", UploadId=uid)


def test_upload_part_in_missing_bucket(ss3: Any) -> None:
    with pytest.raises(ClientError) as exc:
        ss3.upload_part(
            Bucket=f"missing-{uuid.uuid4().hex[:12]}",
            Key="k",
            UploadId=str(uuid.uuid4()),
            PartNumber=1,
            Body=b"x",
        )
    assert _err(exc) == (404, "NoSuchBucket")


def test_reuploaded_part_replaces_the_old_one_which_is_collected(
    small: Cluster, ss3: Any, sb: str
) -> None:
    first, second, tail = _data(3 * KiB, "first"), _data(5 * KiB, "second"), b"tail"
    uid = _upload(ss3, sb, "k", [first, tail])
    old = _part_blobs(small, uid)[1]
    assert wait_for(lambda: _present(small, [old]))

    etag = ss3.upload_part(Bucket=sb, Key="k", UploadId=uid, PartNumber=1, Body=second)["ETag"]
    assert etag == _md5_etag(second) != _md5_etag(first)
    [p1, p2] = ss3.list_parts(Bucket=sb, Key="k", UploadId=uid)["Parts"]
    assert (p1["PartNumber"], p1["ETag"], p1["Size"]) == (1, etag, len(second))
    assert (p2["PartNumber"], p2["Size"]) == (2, len(tail))
    rows = small.sql(
        "SELECT part_number, blob_id FROM upload_parts WHERE upload_id = $1", uuid.UUID(uid)
    )
    assert len(rows) == 2
    new = _part_blobs(small, uid)[1]
    assert new != old
    assert wait_for(lambda: _collected(small, [old])), "the replaced part was not collected"
    assert _present(small, [new])

    # Completing with the old ETag names a part that no longer exists.
    with pytest.raises(ClientError) as exc:
        _complete(ss3, sb, "k", uid, [first, tail])
    assert _err(exc) == (400, "InvalidPart")
    resp = _complete(ss3, sb, "k", uid, [second, tail])
    assert resp["ETag"] == _multipart_etag([second, tail])
    assert _get(ss3, sb, "k") == second + tail
    assert wait_for(lambda: _settled(small))


def test_parts_uploaded_concurrently_and_out_of_order(ss3: Any, sb: str) -> None:
    parts = [_data(64 * KiB + 17 * i, f"c{i}") for i in range(12)]
    parts[-1] = parts[-1][:100]
    uid = ss3.create_multipart_upload(Bucket=sb, Key="k")["UploadId"]
    order = list(range(1, len(parts) + 1))
    random.Random(7).shuffle(order)

    def put(n: int) -> tuple[int, str]:
        resp = ss3.upload_part(Bucket=sb, Key="k", UploadId=uid, PartNumber=n, Body=parts[n - 1])
        return n, resp["ETag"]

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        etags = dict(pool.map(put, order))
    assert etags == {n: _md5_etag(p) for n, p in enumerate(parts, 1)}
    listed = ss3.list_parts(Bucket=sb, Key="k", UploadId=uid)["Parts"]
    assert [p["PartNumber"] for p in listed] == list(range(1, len(parts) + 1))
    resp = _complete(ss3, sb, "k", uid, parts)
    assert resp["ETag"] == _multipart_etag(parts)
    assert _get(ss3, sb, "k") == b"".join(parts)


def test_upload_part_bad_digest_records_nothing(small: Cluster, ss3: Any, sb: str) -> None:
    uid = ss3.create_multipart_upload(Bucket=sb, Key="k")["UploadId"]
    body = _data(200 * KiB, "digest")
    with pytest.raises(ClientError) as exc:
        ss3.upload_part(
            Bucket=sb,
            Key="k",
            UploadId=uid,
            PartNumber=1,
            Body=body,
            ContentMD5=_b64md5(b"something else"),
        )
    assert _err(exc) == (400, "BadDigest")
    assert "Parts" not in ss3.list_parts(Bucket=sb, Key="k", UploadId=uid)
    assert not _part_blobs(small, uid)
    assert wait_for(lambda: _settled(small)), "the refused part's chunks were not collected"
    # The upload is still usable.
    ss3.upload_part(
        Bucket=sb, Key="k", UploadId=uid, PartNumber=1, Body=body, ContentMD5=_b64md5(body)
    )
    _complete(ss3, sb, "k", uid, [body])
    assert _get(ss3, sb, "k") == body


def test_upload_part_content_sha256_mismatch_records_nothing(
    small: Cluster, ss3: Any, sb: str
) -> None:
    uid = ss3.create_multipart_upload(Bucket=sb, Key="k")["UploadId"]
    status, _, body = small.raw(
        "PUT",
        f"/{sb}/k?partNumber=1&uploadId={uid}",
        body=b"actual body",
        payload_hash=hashlib.sha256(b"claimed").hexdigest(),
    )
    assert (status, _raw_error(body)) == (400, "XAmzContentSHA256Mismatch")
    assert "Parts" not in ss3.list_parts(Bucket=sb, Key="k", UploadId=uid)


def test_other_users_cannot_touch_an_upload(cluster: Cluster, s3: Any, mb: str) -> None:
    other = cluster.client(access_key=SECOND_USER[0], secret_key=SECOND_USER[1])
    s3.put_object(Bucket=mb, Key="src", Body=b"private")
    uid = _upload(s3, mb, "k", [b"mine"])
    calls = {
        "CreateMultipartUpload": lambda: other.create_multipart_upload(Bucket=mb, Key="k"),
        "UploadPart": lambda: other.upload_part(
            Bucket=mb, Key="k", UploadId=uid, PartNumber=2, Body=b"theirs"
        ),
        "ListParts": lambda: other.list_parts(Bucket=mb, Key="k", UploadId=uid),
        "ListMultipartUploads": lambda: other.list_multipart_uploads(Bucket=mb),
        "CompleteMultipartUpload": lambda: _complete(other, mb, "k", uid, [b"mine"]),
        "AbortMultipartUpload": lambda: other.abort_multipart_upload(
            Bucket=mb, Key="k", UploadId=uid
        ),
    }
    for name, call in calls.items():
        with pytest.raises(ClientError) as exc:
            call()
        assert _err(exc) == (403, "AccessDenied"), name
    # Nor can they copy from this bucket into an upload of their own.
    theirs = f"other-{uuid.uuid4().hex[:12]}"
    other.create_bucket(Bucket=theirs)
    try:
        their_uid = other.create_multipart_upload(Bucket=theirs, Key="k")["UploadId"]
        with pytest.raises(ClientError) as exc:
            other.upload_part_copy(
                Bucket=theirs,
                Key="k",
                UploadId=their_uid,
                PartNumber=1,
                CopySource={"Bucket": mb, "Key": "src"},
            )
        assert _err(exc) == (403, "AccessDenied")
        other.abort_multipart_upload(Bucket=theirs, Key="k", UploadId=their_uid)
    finally:
        other.delete_bucket(Bucket=theirs)
    assert [p["ETag"] for p in s3.list_parts(Bucket=mb, Key="k", UploadId=uid)["Parts"]] == [
        _md5_etag(b"mine")
    ]


# --- UploadPartCopy -------------------------------------------------------------------


@pytest.fixture
def source(ss3: Any, sb: str) -> bytes:
    """A 14 MiB + 5 source object: three 6 MiB stretches on segment edges, the last partial."""
    data = _data(14 * MiB + 5, "source")
    ss3.put_object(Bucket=sb, Key="src", Body=data)
    return data


def _copy(client: Any, bucket: str, uid: str, n: int, **kw: Any) -> Any:
    kw.setdefault("CopySource", {"Bucket": bucket, "Key": "src"})
    return client.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=n, **kw)


def test_upload_part_copy_whole_and_ranges(ss3: Any, sb: str, source: bytes) -> None:
    uid = ss3.create_multipart_upload(Bucket=sb, Key="dst")["UploadId"]
    spans = {
        1: None,  # the whole source
        2: (SEGMENT - 7, 2 * SEGMENT + 3),  # crosses both segment boundaries
        3: (SEGMENT, SEGMENT + KiB - 1),  # starts on a segment edge
        4: (0, KiB - 1),
        5: (2 * SEGMENT - 1, len(source) - 1),  # into the short last segment
        6: (len(source) - 1, len(source) - 1),  # the last byte alone, as the last part
    }
    expected = []
    for n, span in spans.items():
        kw = {} if span is None else {"CopySourceRange": f"bytes={span[0]}-{span[1]}"}
        resp = _copy(ss3, sb, uid, n, **kw)
        piece = source if span is None else source[span[0] : span[1] + 1]
        assert resp["CopyPartResult"]["ETag"] == _md5_etag(piece)
        assert isinstance(resp["CopyPartResult"]["LastModified"], datetime)
        expected.append(piece)
    listed = ss3.list_parts(Bucket=sb, Key="dst", UploadId=uid)["Parts"]
    assert [p["Size"] for p in listed] == [len(p) for p in expected]
    resp = _complete(ss3, sb, "dst", uid, expected)
    assert resp["ETag"] == _multipart_etag(expected)
    assert _get(ss3, sb, "dst") == b"".join(expected)
    assert _get(ss3, sb, "src") == source  # the source is untouched


def test_upload_part_copy_from_a_multipart_source(ss3: Any, sb: str) -> None:
    src_parts = [_data(3 * KiB, "s1"), _data(4 * KiB, "s2"), _data(1 * KiB, "s3")]
    src_uid = _upload(ss3, sb, "src", src_parts)
    _complete(ss3, sb, "src", src_uid, src_parts)
    whole = b"".join(src_parts)
    uid = ss3.create_multipart_upload(Bucket=sb, Key="dst")["UploadId"]
    first, last = 3 * KiB - 10, 7 * KiB + 10  # spans all three source parts
    _copy(ss3, sb, uid, 1, CopySourceRange=f"bytes={first}-{last}")
    _copy(ss3, sb, uid, 2)
    expected = [whole[first : last + 1], whole]
    _complete(ss3, sb, "dst", uid, expected)
    assert _get(ss3, sb, "dst") == b"".join(expected)


@pytest.mark.parametrize(
    "bad", ["bytes=5-", "bytes=-5", "5-10", "bytes=a-b", "bytes=0-1,3-4", "items=0-1", ""]
)
def test_upload_part_copy_bad_range_syntax(ss3: Any, sb: str, bad: str) -> None:
    ss3.put_object(Bucket=sb, Key="src", Body=b"0123456789")
    uid = ss3.create_multipart_upload(Bucket=sb, Key="dst")["UploadId"]
    with pytest.raises(ClientError) as exc:
        _copy(ss3, sb, uid, 1, CopySourceRange=bad)
    assert _err(exc) == (400, "InvalidArgument")
    assert "Parts" not in ss3.list_parts(Bucket=sb, Key="dst", UploadId=uid)


@pytest.mark.parametrize("bad", ["bytes=0-10", "bytes=10-10", "bytes=5-100", "bytes=7-3"])
def test_upload_part_copy_range_out_of_bounds(ss3: Any, sb: str, bad: str) -> None:
    ss3.put_object(Bucket=sb, Key="src", Body=b"0123456789")
    uid = ss3.create_multipart_upload(Bucket=sb, Key="dst")["UploadId"]
    with pytest.raises(ClientError) as exc:
        _copy(ss3, sb, uid, 1, CopySourceRange=bad)
    assert _err(exc) == (416, "InvalidRange")
    assert "Parts" not in ss3.list_parts(Bucket=sb, Key="dst", UploadId=uid)


def _past() -> datetime:
    return datetime(2000, 1, 1, tzinfo=UTC)


def _future() -> datetime:
    return datetime.now(UTC) + timedelta(days=1)


@pytest.mark.parametrize(
    "condition",
    [
        "if-match-wrong",
        "if-none-match-matching",
        "if-none-match-star",
        "if-modified-since-future",
        "if-unmodified-since-past",
    ],
)
def test_upload_part_copy_precondition_failed(ss3: Any, sb: str, condition: str) -> None:
    etag = ss3.put_object(Bucket=sb, Key="src", Body=b"0123456789")["ETag"]
    kw = {
        "if-match-wrong": {"CopySourceIfMatch": _md5_etag(b"other")},
        "if-none-match-matching": {"CopySourceIfNoneMatch": etag},
        "if-none-match-star": {"CopySourceIfNoneMatch": "*"},
        "if-modified-since-future": {"CopySourceIfModifiedSince": _future()},
        "if-unmodified-since-past": {"CopySourceIfUnmodifiedSince": _past()},
    }[condition]
    uid = ss3.create_multipart_upload(Bucket=sb, Key="dst")["UploadId"]
    with pytest.raises(ClientError) as exc:
        _copy(ss3, sb, uid, 1, **kw)
    assert _err(exc) == (412, "PreconditionFailed")
    assert "Parts" not in ss3.list_parts(Bucket=sb, Key="dst", UploadId=uid)


def test_upload_part_copy_preconditions_that_hold(ss3: Any, sb: str) -> None:
    etag = ss3.put_object(Bucket=sb, Key="src", Body=b"0123456789")["ETag"]
    uid = ss3.create_multipart_upload(Bucket=sb, Key="dst")["UploadId"]
    holding: list[dict[str, Any]] = [
        {"CopySourceIfMatch": etag},
        {"CopySourceIfMatch": etag.strip('"')},
        {"CopySourceIfMatch": "*"},
        {"CopySourceIfNoneMatch": _md5_etag(b"other")},
        {"CopySourceIfModifiedSince": _past()},
        {"CopySourceIfUnmodifiedSince": _future()},
        # As S3 documents: If-Match true wins over If-Unmodified-Since false.
        {"CopySourceIfMatch": etag, "CopySourceIfUnmodifiedSince": _past()},
    ]
    for n, kw in enumerate(holding, 1):
        _copy(ss3, sb, uid, n, **kw)
    listed = ss3.list_parts(Bucket=sb, Key="dst", UploadId=uid)["Parts"]
    assert [p["ETag"] for p in listed] == [etag] * len(holding)


def test_upload_part_copy_missing_source(ss3: Any, sb: str) -> None:
    uid = ss3.create_multipart_upload(Bucket=sb, Key="dst")["UploadId"]
    with pytest.raises(ClientError) as exc:
        _copy(ss3, sb, uid, 1, CopySource={"Bucket": sb, "Key": "no-such-source"})
    assert _err(exc) == (404, "NoSuchKey")
    with pytest.raises(ClientError) as exc:
        _copy(ss3, sb, uid, 1, CopySource={"Bucket": f"missing-{uuid.uuid4().hex[:8]}", "Key": "k"})
    assert _err(exc) == (404, "NoSuchBucket")


def test_upload_part_copy_unknown_upload(ss3: Any, sb: str) -> None:
    ss3.put_object(Bucket=sb, Key="src", Body=b"0123456789")
    with pytest.raises(ClientError) as exc:
        _copy(ss3, sb, str(uuid.uuid4()), 1)
    assert _err(exc) == (404, "NoSuchUpload")


@pytest.mark.parametrize("number", ["0", "10001", "abc"])
def test_upload_part_copy_bad_part_number(small: Cluster, ss3: Any, sb: str, number: str) -> None:
    ss3.put_object(Bucket=sb, Key="src", Body=b"0123456789")
    uid = ss3.create_multipart_upload(Bucket=sb, Key="dst")["UploadId"]
    status, _, body = small.raw(
        "PUT",
        f"/{sb}/dst?partNumber={number}&uploadId={uid}",
        headers={"x-amz-copy-source": f"/{sb}/src"},
    )
    assert (status, _raw_error(body)) == (400, "InvalidArgument")


def test_upload_part_copy_url_encoded_source(small: Cluster, ss3: Any, sb: str) -> None:
    key = "dir/a b+c%d ü.txt"
    data = _data(3 * KiB, "encoded")
    ss3.put_object(Bucket=sb, Key=key, Body=data)
    ss3.put_object(Bucket=sb, Key="dir/a b c%d ü.txt", Body=b"decoy: + is not a space")
    uid = ss3.create_multipart_upload(Bucket=sb, Key="dst")["UploadId"]
    # boto3 encodes the dict form itself.
    _copy(ss3, sb, uid, 1, CopySource={"Bucket": sb, "Key": key})
    # The string form, percent-encoded as a client would, with and without a leading slash.
    sources = [
        f"/{sb}/{quote(key, safe='/')}",
        f"{sb}/{quote(key, safe='/')}",
        f"/{sb}/{quote(key, safe='')}".replace("%2F", "/", 1),
        f"/{sb}/{quote(key, safe='/+')}",  # '+' left literal: still a plus, not a space
        f"/{sb}/{quote(key, safe='/')}?versionId=null",
    ]
    for n, src in enumerate(sources, 2):
        status, _, body = small.raw(
            "PUT",
            f"/{sb}/dst?partNumber={n}&uploadId={uid}",
            headers={"x-amz-copy-source": src},
        )
        assert status == 200, (src, body)
        assert etree.fromstring(body).findtext("{*}ETag") == _md5_etag(data), src
    listed = ss3.list_parts(Bucket=sb, Key="dst", UploadId=uid)["Parts"]
    assert [p["ETag"] for p in listed] == [_md5_etag(data)] * (1 + len(sources))
    # A version other than null does not exist on an unversioned bucket.
    status, _, body = small.raw(
        "PUT",
        f"/{sb}/dst?partNumber=9&uploadId={uid}",
        headers={"x-amz-copy-source": f"/{sb}/{quote(key)}?versionId=abc"},
    )
    assert status in (400, 404), body


# --- CompleteMultipartUpload ----------------------------------------------------------


def test_complete_etag_of_three_parts(ss3: Any, sb: str) -> None:
    parts = [_data(4 * KiB, "p1"), _data(5 * KiB + 1, "p2"), _data(17, "p3")]
    uid = _upload(ss3, sb, "k", parts)
    resp = _complete(ss3, sb, "k", uid, parts)
    expected = _multipart_etag(parts)
    assert expected.endswith('-3"')
    assert resp["ETag"] == expected
    assert (resp["Bucket"], resp["Key"]) == (sb, "k")
    assert resp["Location"].endswith(f"/{sb}/k")
    assert "VersionId" not in resp
    head = ss3.head_object(Bucket=sb, Key="k")
    assert head["ETag"] == expected
    assert head["ContentLength"] == sum(map(len, parts))
    assert _get(ss3, sb, "k") == b"".join(parts)
    # The upload is gone.
    assert "Uploads" not in ss3.list_multipart_uploads(Bucket=sb)


def test_complete_etags_are_accepted_with_or_without_quotes(
    small: Cluster, ss3: Any, sb: str
) -> None:
    parts = [_data(2 * KiB, "q1"), b"q2"]
    uid = _upload(ss3, sb, "k", parts)
    doc = (
        "<CompleteMultipartUpload>"
        f"<Part><PartNumber>1</PartNumber><ETag>{hashlib.md5(parts[0]).hexdigest()}</ETag></Part>"
        f"<Part><PartNumber>2</PartNumber><ETag>&quot;{hashlib.md5(parts[1]).hexdigest()}"
        "&quot;</ETag></Part>"
        "</CompleteMultipartUpload>"
    )
    status, _, body = small.raw("POST", f"/{sb}/k?uploadId={uid}", body=doc.encode())
    assert status == 200, body
    assert etree.fromstring(body).findtext("{*}ETag") == _multipart_etag(parts)


def test_complete_invalid_part(ss3: Any, sb: str) -> None:
    parts = [_data(2 * KiB, "i1"), _data(2 * KiB, "i2")]
    uid = _upload(ss3, sb, "k", parts)
    good = [{"PartNumber": n, "ETag": _md5_etag(p)} for n, p in enumerate(parts, 1)]
    wrong_etag = [good[0], {"PartNumber": 2, "ETag": _md5_etag(b"not it")}]
    never_uploaded = [*good, {"PartNumber": 3, "ETag": _md5_etag(b"x")}]
    for spec in (wrong_etag, never_uploaded):
        with pytest.raises(ClientError) as exc:
            ss3.complete_multipart_upload(
                Bucket=sb, Key="k", UploadId=uid, MultipartUpload={"Parts": spec}
            )
        assert _err(exc) == (400, "InvalidPart")
    # A failed completion changes nothing: no object, the upload and its parts remain.
    with pytest.raises(ss3.exceptions.NoSuchKey):
        ss3.get_object(Bucket=sb, Key="k")
    assert len(ss3.list_parts(Bucket=sb, Key="k", UploadId=uid)["Parts"]) == 2
    _complete(ss3, sb, "k", uid, parts)
    assert _get(ss3, sb, "k") == b"".join(parts)


@pytest.mark.parametrize("numbers", [[2, 1], [1, 1], [1, 3, 2], [1, 2, 2]])
def test_complete_invalid_part_order(ss3: Any, sb: str, numbers: list[int]) -> None:
    parts = [_data(2 * KiB, f"o{i}") for i in range(3)]
    uid = _upload(ss3, sb, "k", parts)
    spec = [{"PartNumber": n, "ETag": _md5_etag(parts[n - 1])} for n in numbers]
    with pytest.raises(ClientError) as exc:
        ss3.complete_multipart_upload(
            Bucket=sb, Key="k", UploadId=uid, MultipartUpload={"Parts": spec}
        )
    assert _err(exc) == (400, "InvalidPartOrder")
    assert len(ss3.list_parts(Bucket=sb, Key="k", UploadId=uid)["Parts"]) == 3


def test_complete_entity_too_small(s3: Any, mb: str) -> None:
    """The session cluster keeps S3's 5 MiB minimum for every part but the last."""
    small_part, big_part = _data(MiB, "small"), _data(5 * MiB, "big")
    uid = _upload(s3, mb, "k", [small_part, big_part])
    with pytest.raises(ClientError) as exc:
        _complete(s3, mb, "k", uid, [small_part, big_part])
    assert _err(exc) == (400, "EntityTooSmall")
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=mb, Key="k")
    # Part 1 replaced by exactly 5 MiB; the last part may be as small as it likes.
    exact, last = _data(5 * MiB, "exact"), b"z"
    s3.upload_part(Bucket=mb, Key="k", UploadId=uid, PartNumber=1, Body=exact)
    s3.upload_part(Bucket=mb, Key="k", UploadId=uid, PartNumber=2, Body=last)
    resp = _complete(s3, mb, "k", uid, [exact, last])
    assert resp["ETag"] == _multipart_etag([exact, last])
    assert s3.head_object(Bucket=mb, Key="k")["ContentLength"] == 5 * MiB + 1


def test_complete_single_small_part_is_fine(s3: Any, mb: str) -> None:
    uid = _upload(s3, mb, "k", [b"tiny"])
    assert _complete(s3, mb, "k", uid, [b"tiny"])["ETag"] == _multipart_etag([b"tiny"])
    assert _get(s3, mb, "k") == b"tiny"


def test_complete_unknown_upload(ss3: Any, sb: str) -> None:
    for uid in (str(uuid.uuid4()), "garbage"):
        with pytest.raises(ClientError) as exc:
            _complete(ss3, sb, "k", uid, [b"x"])
        assert _err(exc) == (404, "NoSuchUpload")


def test_complete_twice_second_gets_no_such_upload(ss3: Any, sb: str) -> None:
    """Our defined outcome: the upload is gone once completed, so a repeated Complete is
    NoSuchUpload (S3 may instead answer 200 again for a while); the object is unaffected."""
    parts = [_data(2 * KiB, "t1"), b"t2"]
    uid = _upload(ss3, sb, "k", parts)
    etag = _complete(ss3, sb, "k", uid, parts)["ETag"]
    with pytest.raises(ClientError) as exc:
        _complete(ss3, sb, "k", uid, parts)
    assert _err(exc) == (404, "NoSuchUpload")
    assert ss3.head_object(Bucket=sb, Key="k")["ETag"] == etag
    assert _get(ss3, sb, "k") == b"".join(parts)


@pytest.mark.parametrize(
    "doc",
    [
        b"garbage",
        b"",
        b"<CompleteMultipartUpload></CompleteMultipartUpload>",
        b"<CompleteMultipartUpload/>",
        b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part>"
        b"</CompleteMultipartUpload>",
        b"<CompleteMultipartUpload><Part><PartNumber>one</PartNumber><ETag>x</ETag></Part>"
        b"</CompleteMultipartUpload>",
        b"<Other><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></Other>",
        b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>",
    ],
)
def test_complete_malformed_xml(small: Cluster, ss3: Any, sb: str, doc: bytes) -> None:
    uid = _upload(ss3, sb, "k", [b"part"])
    status, _, body = small.raw("POST", f"/{sb}/k?uploadId={uid}", body=doc)
    assert (status, _raw_error(body)) == (400, "MalformedXML")
    assert len(ss3.list_parts(Bucket=sb, Key="k", UploadId=uid)["Parts"]) == 1


def test_complete_empty_part_list_through_boto3(ss3: Any, sb: str) -> None:
    uid = _upload(ss3, sb, "k", [b"part"])
    with pytest.raises(ClientError) as exc:
        ss3.complete_multipart_upload(
            Bucket=sb, Key="k", UploadId=uid, MultipartUpload={"Parts": []}
        )
    assert _err(exc) == (400, "MalformedXML")


def test_complete_collects_parts_not_named(small: Cluster, ss3: Any, sb: str) -> None:
    parts = [_data(2 * KiB + i, f"u{i}") for i in range(5)]
    uid = _upload(ss3, sb, "k", parts)
    blobs = _part_blobs(small, uid)
    assert wait_for(lambda: _present(small, list(blobs.values())))
    chosen = [1, 3, 5]
    spec = [{"PartNumber": n, "ETag": _md5_etag(parts[n - 1])} for n in chosen]
    resp = ss3.complete_multipart_upload(
        Bucket=sb, Key="k", UploadId=uid, MultipartUpload={"Parts": spec}
    )
    used = [parts[n - 1] for n in chosen]
    assert resp["ETag"] == _multipart_etag(used)
    assert _get(ss3, sb, "k") == b"".join(used)
    assert _object_blobs(small, sb, "k") == [blobs[n] for n in chosen]
    unused = [blobs[2], blobs[4]]
    assert wait_for(lambda: _collected(small, unused)), "unused parts were not collected"
    assert _present(small, [blobs[n] for n in chosen])
    assert not small.sql("SELECT 1 FROM upload_parts WHERE upload_id = $1", uuid.UUID(uid))
    assert wait_for(lambda: _settled(small))


def _race_complete_and_abort(
    client: Any, bucket: str, key: str, uid: str, parts: list[bytes], delay: float
) -> tuple[str, str]:
    """Complete and Abort the same upload from two threads released together; Abort starts
    `delay` seconds later (Complete does, if negative), to shift who reaches the lock first."""
    barrier = threading.Barrier(2)

    def complete() -> str:
        barrier.wait()
        time.sleep(max(0.0, -delay))
        try:
            _complete(client, bucket, key, uid, parts)
            return "completed"
        except ClientError as exc:
            return str(exc.response["Error"]["Code"])

    def abort() -> str:
        barrier.wait()
        time.sleep(max(0.0, delay))
        try:
            resp = client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=uid)
            return f"aborted-{resp['ResponseMetadata']['HTTPStatusCode']}"
        except ClientError as exc:
            return str(exc.response["Error"]["Code"])

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        fc, fa = pool.submit(complete), pool.submit(abort)
        return fc.result(), fa.result()


def test_complete_racing_abort_has_exactly_one_outcome(small: Cluster, ss3: Any, sb: str) -> None:
    outcomes = []
    for round_, delay in enumerate([0, 0, 0.005, -0.005, 0.02, -0.02, 0.1, -0.1]):
        key = f"race-{round_}"
        parts = [_data(3 * KiB, f"r{round_}a"), _data(KiB, f"r{round_}b")]
        uid = _upload(ss3, sb, key, parts)
        blobs = list(_part_blobs(small, uid).values())
        result = _race_complete_and_abort(ss3, sb, key, uid, parts, delay)
        outcomes.append(result)
        exists = key in [o["Key"] for o in ss3.list_objects_v2(Bucket=sb).get("Contents", [])]
        if result == ("completed", "NoSuchUpload"):
            assert exists
            assert _get(ss3, sb, key) == b"".join(parts)  # whole, never half-visible
            assert _present(small, blobs)
        elif result == ("NoSuchUpload", "aborted-204"):
            assert not exists
            with pytest.raises(ClientError) as missing:
                ss3.head_object(Bucket=sb, Key=key)
            assert _err(missing)[0] == 404
            assert wait_for(lambda blobs=blobs: _collected(small, blobs))
        else:
            pytest.fail(f"round {round_}: both or neither won: {result}")
        with pytest.raises(ClientError) as exc:
            ss3.list_parts(Bucket=sb, Key=key, UploadId=uid)
        assert _err(exc) == (404, "NoSuchUpload")
    assert "Uploads" not in ss3.list_multipart_uploads(Bucket=sb)
    assert wait_for(lambda: _settled(small))
    print("complete/abort race outcomes:", outcomes)


def test_complete_onto_existing_key_replaces_it_atomically(
    small: Cluster, ss3: Any, sb: str
) -> None:
    old = _data(300 * KiB, "old")
    ss3.put_object(Bucket=sb, Key="k", Body=old, Metadata={"version": "old"})
    [old_blob] = _object_blobs(small, sb, "k")
    parts = [_data(100 * KiB, "new1"), _data(7, "new2")]
    uid = _upload(ss3, sb, "k", parts, Metadata={"version": "new"})
    # Until completion, readers see the old object whole.
    got = ss3.get_object(Bucket=sb, Key="k")
    assert (got["Body"].read(), got["Metadata"]) == (old, {"version": "old"})
    _complete(ss3, sb, "k", uid, parts)
    got = ss3.get_object(Bucket=sb, Key="k")
    assert got["Body"].read() == b"".join(parts)
    assert got["Metadata"] == {"version": "new"}
    assert got["ETag"] == _multipart_etag(parts)
    assert [o["Key"] for o in ss3.list_objects_v2(Bucket=sb)["Contents"]] == ["k"]
    assert wait_for(lambda: _collected(small, [old_blob])), "the old object's blob remains"
    assert wait_for(lambda: _settled(small))


def test_multipart_object_replaced_by_put_releases_all_part_blobs(
    small: Cluster, ss3: Any, sb: str
) -> None:
    parts = [_data(2 * KiB, f"d{i}") for i in range(3)]
    uid = _upload(ss3, sb, "k", parts)
    _complete(ss3, sb, "k", uid, parts)
    blobs = _object_blobs(small, sb, "k")
    assert len(blobs) == 3
    ss3.put_object(Bucket=sb, Key="k", Body=b"plain")
    assert wait_for(lambda: _collected(small, blobs))
    ss3.delete_object(Bucket=sb, Key="k")
    assert wait_for(lambda: _settled(small))


# --- keepalive of a slow CompleteMultipartUpload, through a real request ---------------


def _hold_upload_row(
    dsn: str, upload_id: str, seconds: float, locked: threading.Event, then: str | None
) -> None:
    """Lock the upload's row from another connection for `seconds`, as a completion stuck
    behind a slow transaction would see it, then run `then` and commit."""

    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            async with conn.transaction():
                await conn.execute(
                    "SELECT 1 FROM uploads WHERE upload_id = $1 FOR UPDATE", uuid.UUID(upload_id)
                )
                locked.set()
                await asyncio.sleep(seconds)
                if then:
                    await conn.execute(then, uuid.UUID(upload_id))
        finally:
            await conn.close()

    asyncio.run(run())


def _slow_complete(
    cluster: Cluster, client: Any, bucket: str, uid: str, parts: list[bytes], then: str | None
) -> tuple[Any, bytes, float]:
    """Complete while the upload row is held for 3 s; returns (result or exception, the raw
    body botocore received, seconds taken)."""
    bodies: list[bytes] = []

    def capture(response_dict: dict[str, Any], **_: Any) -> None:
        bodies.append(response_dict["body"])

    client.meta.events.register_first("before-parse.s3.CompleteMultipartUpload", capture)
    locked = threading.Event()
    holder = threading.Thread(
        target=_hold_upload_row, args=(cluster.database_url, uid, 3.0, locked, then)
    )
    holder.start()
    try:
        assert locked.wait(10)
        start = time.monotonic()
        result: Any
        try:
            result = _complete(client, bucket, "k", uid, parts)
        except ClientError as exc:
            result = exc
        elapsed = time.monotonic() - start
    finally:
        holder.join()
    assert len(bodies) == 1, "botocore retried"
    return result, bodies[0], elapsed


def test_slow_complete_keepalive_success_parsed_by_botocore(small: Cluster, sb: str) -> None:
    client = small.client(retries={"total_max_attempts": 1})
    parts = [_data(2 * KiB, "slow1"), b"slow2"]
    uid = _upload(client, sb, "k", parts)
    result, body, elapsed = _slow_complete(small, client, sb, uid, parts, then=None)
    assert elapsed > 2.0
    # The keepalive path: a declaration sent at once (ours uses double quotes), later the
    # result without its own declaration.
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>'), body[:80]
    assert b"<CompleteMultipartUploadResult" in body
    assert not isinstance(result, ClientError), result
    assert result["ETag"] == _multipart_etag(parts)
    assert _get(client, sb, "k") == b"".join(parts)


def test_slow_complete_error_in_a_200_is_an_error_to_botocore(small: Cluster, sb: str) -> None:
    client = small.client(retries={"total_max_attempts": 1})
    parts = [_data(2 * KiB, "fail1"), b"fail2"]
    uid = _upload(client, sb, "k", parts)
    # While the completion waits, the upload leaves the 'open' state: it finds NoSuchUpload
    # after the 200 has already been sent.
    then = "UPDATE uploads SET state = 'completing' WHERE upload_id = $1"
    result, body, elapsed = _slow_complete(small, client, sb, uid, parts, then=then)
    try:
        assert elapsed > 2.0
        assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>'), body[:80]
        assert isinstance(result, ClientError), result
        assert result.response["Error"]["Code"] == "NoSuchUpload"
        # botocore turns the 200 carrying an Error document into a (retryable) 500.
        assert result.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        root = etree.fromstring(body)
        assert root.tag == "Error"
        assert root.findtext("Code") == "NoSuchUpload"
        assert root.findtext("Resource") == f"/{sb}/k"
        assert root.findtext("RequestId")
    finally:
        small.sql("UPDATE uploads SET state = 'open' WHERE upload_id = $1", uuid.UUID(uid))
    with pytest.raises(client.exceptions.NoSuchKey):
        client.get_object(Bucket=sb, Key="k")


# --- AbortMultipartUpload -------------------------------------------------------------


def test_abort(small: Cluster, ss3: Any, sb: str) -> None:
    parts = [_data(500 * KiB, "a1"), _data(3 * MiB, "a2"), _data(5, "a3")]
    uid = _upload(ss3, sb, "k", parts)
    blobs = list(_part_blobs(small, uid).values())
    assert wait_for(lambda: _present(small, blobs))
    resp = ss3.abort_multipart_upload(Bucket=sb, Key="k", UploadId=uid)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    for call in (
        lambda: ss3.list_parts(Bucket=sb, Key="k", UploadId=uid),
        lambda: ss3.upload_part(Bucket=sb, Key="k", UploadId=uid, PartNumber=4, Body=b"x"),
        lambda: _complete(ss3, sb, "k", uid, parts),
        lambda: ss3.abort_multipart_upload(Bucket=sb, Key="k", UploadId=uid),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert _err(exc) == (404, "NoSuchUpload")
    with pytest.raises(ss3.exceptions.NoSuchKey):
        ss3.get_object(Bucket=sb, Key="k")
    assert "Uploads" not in ss3.list_multipart_uploads(Bucket=sb)
    assert wait_for(lambda: _collected(small, blobs)), "aborted parts were not collected"
    assert wait_for(lambda: _settled(small)), (small.chunk_files(), small.referenced_chunks())


def test_abort_unknown_upload(ss3: Any, sb: str) -> None:
    for uid in (str(uuid.uuid4()), "garbage"):
        with pytest.raises(ClientError) as exc:
            ss3.abort_multipart_upload(Bucket=sb, Key="k", UploadId=uid)
        assert _err(exc) == (404, "NoSuchUpload")


def test_abort_leaves_other_uploads_of_the_key_alone(ss3: Any, sb: str) -> None:
    keep = _upload(ss3, sb, "k", [b"keep"])
    drop = _upload(ss3, sb, "k", [b"drop"])
    ss3.abort_multipart_upload(Bucket=sb, Key="k", UploadId=drop)
    assert [u["UploadId"] for u in ss3.list_multipart_uploads(Bucket=sb)["Uploads"]] == [keep]
    _complete(ss3, sb, "k", keep, [b"keep"])
    assert _get(ss3, sb, "k") == b"keep"


def test_bucket_with_open_upload_is_not_empty(ss3: Any) -> None:
    with _fresh_bucket(ss3) as name:
        uid = ss3.create_multipart_upload(Bucket=name, Key="k")["UploadId"]
        with pytest.raises(ClientError) as exc:
            ss3.delete_bucket(Bucket=name)
        assert _err(exc) == (409, "BucketNotEmpty")
        ss3.abort_multipart_upload(Bucket=name, Key="k", UploadId=uid)


# --- ListParts ------------------------------------------------------------------------


def test_list_parts_paging(ss3: Any, sb: str) -> None:
    parts = [_data(KiB + 100 * i, f"l{i}") for i in range(7)]
    uid = _upload(ss3, sb, "k", parts)
    expected = [(n, _md5_etag(p), len(p)) for n, p in enumerate(parts, 1)]

    whole = ss3.list_parts(Bucket=sb, Key="k", UploadId=uid)
    assert (whole["Bucket"], whole["Key"], whole["UploadId"]) == (sb, "k", uid)
    assert whole["IsTruncated"] is False
    assert whole["StorageClass"] == "STANDARD"
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in whole["Parts"]] == expected
    assert all(isinstance(p["LastModified"], datetime) for p in whole["Parts"])

    for max_parts in (1, 2, 3, 6, 7, 8):
        seen: list[tuple[int, str, int]] = []
        marker = 0
        pages = 0
        while True:
            page = ss3.list_parts(
                Bucket=sb, Key="k", UploadId=uid, MaxParts=max_parts, PartNumberMarker=marker
            )
            pages += 1
            assert page["MaxParts"] == max_parts
            assert page["PartNumberMarker"] == marker
            got = [(p["PartNumber"], p["ETag"], p["Size"]) for p in page.get("Parts", [])]
            assert len(got) <= max_parts
            seen += got
            if not page["IsTruncated"]:
                break
            assert page["NextPartNumberMarker"] == got[-1][0]
            marker = page["NextPartNumberMarker"]
        assert seen == expected, max_parts
        assert pages == -(-7 // max_parts), max_parts

    # A marker in the middle of gaps, and past the end.
    ss3.abort_multipart_upload(Bucket=sb, Key="k", UploadId=uid)
    uid = ss3.create_multipart_upload(Bucket=sb, Key="k")["UploadId"]
    for n in (2, 5, 9):
        ss3.upload_part(Bucket=sb, Key="k", UploadId=uid, PartNumber=n, Body=b"%d" % n)
    page = ss3.list_parts(Bucket=sb, Key="k", UploadId=uid, PartNumberMarker=3)
    assert [p["PartNumber"] for p in page["Parts"]] == [5, 9]
    page = ss3.list_parts(Bucket=sb, Key="k", UploadId=uid, PartNumberMarker=9)
    assert "Parts" not in page and page["IsTruncated"] is False

    # The paginator follows the markers too.
    paginator = ss3.get_paginator("list_parts")
    numbers = [
        p["PartNumber"]
        for page in paginator.paginate(
            Bucket=sb, Key="k", UploadId=uid, PaginationConfig={"PageSize": 1}
        )
        for p in page.get("Parts", [])
    ]
    assert numbers == [2, 5, 9]


def test_list_parts_bad_arguments(small: Cluster, ss3: Any, sb: str) -> None:
    uid = _upload(ss3, sb, "k", [b"x"])
    for query in ("max-parts=-1", "max-parts=abc", "part-number-marker=abc"):
        status, _, body = small.raw("GET", f"/{sb}/k?uploadId={uid}&{query}")
        assert (status, _raw_error(body)) == (400, "InvalidArgument"), query
    with pytest.raises(ClientError) as exc:
        ss3.list_parts(Bucket=sb, Key="k", UploadId=str(uuid.uuid4()))
    assert _err(exc) == (404, "NoSuchUpload")


def test_client_that_lost_its_state_resumes_from_list_parts(ss3: Any, sb: str) -> None:
    parts = [_data(3 * KiB + i, f"s{i}") for i in range(6)]
    uid = ss3.create_multipart_upload(Bucket=sb, Key="resumed")["UploadId"]
    for n in (1, 2, 4):  # then the client crashes, forgetting its ETags
        ss3.upload_part(Bucket=sb, Key="resumed", UploadId=uid, PartNumber=n, Body=parts[n - 1])

    # A new client finds the upload, learns which parts are there, and finishes.
    fresh = ss3
    [found] = fresh.list_multipart_uploads(Bucket=sb, Prefix="resumed")["Uploads"]
    assert found["UploadId"] == uid
    have: dict[int, str] = {}
    for page in fresh.get_paginator("list_parts").paginate(
        Bucket=sb, Key="resumed", UploadId=uid, PaginationConfig={"PageSize": 2}
    ):
        have.update({p["PartNumber"]: p["ETag"] for p in page.get("Parts", [])})
    assert sorted(have) == [1, 2, 4]
    for n in range(1, len(parts) + 1):
        if n not in have:
            have[n] = fresh.upload_part(
                Bucket=sb, Key="resumed", UploadId=uid, PartNumber=n, Body=parts[n - 1]
            )["ETag"]
    fresh.complete_multipart_upload(
        Bucket=sb,
        Key="resumed",
        UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in sorted(have.items())]},
    )
    assert _get(fresh, sb, "resumed") == b"".join(parts)


# --- ListMultipartUploads -------------------------------------------------------------

UPLOAD_KEYS = [
    "a/b/one",
    "a/b/two",
    "a/c",
    "a/c",  # two uploads of one key
    "a b+c%",
    "photos/2024/x.jpg",
    "photos/2025/y.jpg",
    "z",
    "é/ü",
    "a",
]


@pytest.fixture
def uploads(ss3: Any, sb: str) -> list[tuple[str, str]]:
    """(key, upload id) of every upload, in S3 order: UTF-8 key bytes, then upload id."""
    made = [
        (key, ss3.create_multipart_upload(Bucket=sb, Key=key)["UploadId"]) for key in UPLOAD_KEYS
    ]
    return sorted(made, key=lambda e: (e[0].encode(), e[1]))


def _reference_uploads(
    uploads: list[tuple[str, str]], prefix: str = "", delimiter: str | None = None
) -> list[tuple[str, str]]:
    """Entries in order: ("upload", key, id) folded into ("prefix", cp, "") by delimiter."""
    out: list[tuple[str, str]] = []
    for key, uid in uploads:
        if not key.startswith(prefix):
            continue
        at = key.find(delimiter, len(prefix)) if delimiter else -1
        if delimiter and at >= 0:
            cp = key[: at + len(delimiter)]
            if not out or out[-1] != ("prefix", cp):
                out.append(("prefix", cp))
        else:
            out.append((key, uid))
    return out


def _page_entries(page: dict[str, Any], decode: bool = False) -> list[tuple[str, str]]:
    def d(v: str) -> str:
        return unquote(v) if decode else v

    ups = [(d(u["Key"]), u["UploadId"]) for u in page.get("Uploads", [])]
    cps = [("prefix", d(p["Prefix"])) for p in page.get("CommonPrefixes", [])]
    # Within one page uploads and prefixes come as two lists; merge them back in order.
    return sorted(ups + cps, key=lambda e: (e[1] if e[0] == "prefix" else e[0]).encode())


def _list_all(
    client: Any, bucket: str, max_uploads: int, limit_pages: int = 50, **kw: Any
) -> tuple[list[tuple[str, str]], int]:
    seen: list[tuple[str, str]] = []
    params: dict[str, Any] = {}
    for pages in range(1, limit_pages + 1):
        page = client.list_multipart_uploads(Bucket=bucket, MaxUploads=max_uploads, **kw, **params)
        assert page["MaxUploads"] == max_uploads
        entries = _page_entries(page)
        assert len(entries) <= max_uploads
        seen += entries
        if not page["IsTruncated"]:
            return seen, pages
        params = {"KeyMarker": page["NextKeyMarker"]}
        if page.get("NextUploadIdMarker"):
            params["UploadIdMarker"] = page["NextUploadIdMarker"]
    pytest.fail(f"paging did not end after {limit_pages} pages: {seen}")


def test_list_uploads_whole(ss3: Any, sb: str, uploads: list[tuple[str, str]]) -> None:
    page = ss3.list_multipart_uploads(Bucket=sb)
    assert page["Bucket"] == sb
    assert page["IsTruncated"] is False
    assert [(u["Key"], u["UploadId"]) for u in page["Uploads"]] == uploads
    for u in page["Uploads"]:
        assert isinstance(u["Initiated"], datetime)
        assert u["StorageClass"] == "STANDARD"
        assert u["Owner"]["ID"] and u["Initiator"]["ID"]
    assert "CommonPrefixes" not in page


@pytest.mark.parametrize("max_uploads", [1, 2, 3])
@pytest.mark.parametrize("prefix", ["", "a", "a/", "photos/", "nothing"])
def test_list_uploads_paging_with_prefix(
    ss3: Any, sb: str, uploads: list[tuple[str, str]], max_uploads: int, prefix: str
) -> None:
    expected = _reference_uploads(uploads, prefix)
    seen, pages = _list_all(ss3, sb, max_uploads, Prefix=prefix)
    assert seen == expected
    assert pages == max(1, -(-len(expected) // max_uploads))


def test_list_uploads_key_marker_alone_skips_the_whole_key(
    ss3: Any, sb: str, uploads: list[tuple[str, str]]
) -> None:
    page = ss3.list_multipart_uploads(Bucket=sb, KeyMarker="a/c")
    assert [(u["Key"], u["UploadId"]) for u in page["Uploads"]] == [
        e for e in uploads if e[0].encode() > b"a/c"
    ]
    # With an upload id marker: the key's later uploads, then the later keys.
    same_key = [e for e in uploads if e[0] == "a/c"]
    page = ss3.list_multipart_uploads(Bucket=sb, KeyMarker="a/c", UploadIdMarker=same_key[0][1])
    assert [(u["Key"], u["UploadId"]) for u in page["Uploads"]] == [
        same_key[1],
        *[e for e in uploads if e[0].encode() > b"a/c"],
    ]


@pytest.mark.parametrize("prefix", ["", "a/", "photos/", "é/"])
def test_list_uploads_delimiter(
    ss3: Any, sb: str, uploads: list[tuple[str, str]], prefix: str
) -> None:
    page = ss3.list_multipart_uploads(Bucket=sb, Prefix=prefix, Delimiter="/")
    assert page["Delimiter"] == "/"
    assert page["Prefix"] == prefix
    assert _page_entries(page) == _reference_uploads(uploads, prefix, "/")
    assert page["IsTruncated"] is False


@pytest.mark.parametrize(("prefix", "max_uploads"), [("", 1), ("", 2), ("", 3), ("photos/", 1)])
def test_list_uploads_delimiter_paging(
    ss3: Any, sb: str, uploads: list[tuple[str, str]], max_uploads: int, prefix: str
) -> None:
    expected = _reference_uploads(uploads, prefix, "/")
    seen, _ = _list_all(ss3, sb, max_uploads, limit_pages=20, Prefix=prefix, Delimiter="/")
    assert seen == expected


def test_list_uploads_encoding_type_url(ss3: Any, sb: str, uploads: list[tuple[str, str]]) -> None:
    page = ss3.list_multipart_uploads(Bucket=sb, EncodingType="url")
    assert page["EncodingType"] == "url"
    raw_keys = [u["Key"] for u in page["Uploads"]]
    assert [(unquote(u["Key"]), u["UploadId"]) for u in page["Uploads"]] == uploads
    for raw in raw_keys:
        assert raw.isascii() and " " not in raw and "+" not in raw
    assert "a%20b%2Bc%25" in raw_keys
    assert "%C3%A9/%C3%BC" in raw_keys
    # Markers, prefixes and common prefixes come back encoded too.
    page = ss3.list_multipart_uploads(
        Bucket=sb, EncodingType="url", Prefix="é/", KeyMarker="a b+c%"
    )
    assert page["Prefix"] == "%C3%A9/"
    assert page["KeyMarker"] == "a%20b%2Bc%25"
    assert [u["Key"] for u in page["Uploads"]] == ["%C3%A9/%C3%BC"]
    page = ss3.list_multipart_uploads(Bucket=sb, EncodingType="url", Delimiter="/")
    assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["a/", "photos/", "%C3%A9/"]
    assert [u["Key"] for u in page["Uploads"]] == ["a", "a%20b%2Bc%25", "z"]
    page = ss3.list_multipart_uploads(Bucket=sb, EncodingType="url", Prefix="a b", MaxUploads=1)
    assert [unquote(u["Key"]) for u in page["Uploads"]] == ["a b+c%"]


def test_list_uploads_bad_arguments(small: Cluster, sb: str) -> None:
    for query in ("max-uploads=-1", "max-uploads=abc", "encoding-type=base64"):
        status, _, body = small.raw("GET", f"/{sb}?uploads&{query}")
        assert (status, _raw_error(body)) == (400, "InvalidArgument"), query


def test_list_uploads_missing_bucket(ss3: Any) -> None:
    with pytest.raises(ClientError) as exc:
        ss3.list_multipart_uploads(Bucket=f"missing-{uuid.uuid4().hex[:12]}")
    assert _err(exc) == (404, "NoSuchBucket")


def test_completed_and_aborted_uploads_leave_the_listing(ss3: Any, sb: str) -> None:
    done = _upload(ss3, sb, "done", [b"d"])
    gone = _upload(ss3, sb, "gone", [b"g"])
    open_ = _upload(ss3, sb, "open", [b"o"])
    _complete(ss3, sb, "done", done, [b"d"])
    ss3.abort_multipart_upload(Bucket=sb, Key="gone", UploadId=gone)
    listed = ss3.list_multipart_uploads(Bucket=sb)["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in listed] == [("open", open_)]


# --- reads of multipart objects (session cluster: real 5 MiB+ parts) ------------------

# Parts that are not multiples of the segment, so part and segment edges interleave.
READ_PART_SIZES = [7 * MiB + 3, SEGMENT + 11, 5 * MiB + 5, 123]


@pytest.fixture(scope="module")
def multipart_object(s3: Any) -> Iterator[Any]:
    """(bucket, key, parts) of one multipart object on the session cluster."""
    parts = [_data(n, f"read{i}") for i, n in enumerate(READ_PART_SIZES)]
    with _fresh_bucket(s3) as name:
        uid = _upload(s3, name, "mp", parts, ContentType="application/x-test")
        _complete(s3, name, "mp", uid, parts)
        yield name, "mp", parts


def _boundaries(parts: list[bytes]) -> list[int]:
    """Offsets where a part starts, and where a segment starts inside each part."""
    out = []
    offset = 0
    for p in parts:
        out += [offset + s for s in range(0, len(p), SEGMENT)]
        offset += len(p)
    return out


def test_ranges_across_part_and_segment_boundaries(s3: Any, multipart_object: Any) -> None:
    bucket, key, parts = multipart_object
    whole = b"".join(parts)
    size = len(whole)
    spans: list[tuple[int, int]] = [(0, size - 1), (1, size - 2)]
    for edge in _boundaries(parts)[1:]:
        spans += [(edge - 1, edge), (edge, edge), (edge - 1, edge - 1)]
        spans.append((edge - 5000, min(edge + 5000, size - 1)))
    offsets = [0]
    for p in parts:
        offsets.append(offsets[-1] + len(p))
    spans += [
        (offsets[1] - 10, offsets[3] + 10),  # three parts
        (SEGMENT - 1, offsets[2] + 10),  # from a segment edge in part 1 into part 3
        (offsets[1] + SEGMENT - 2, offsets[1] + SEGMENT + 1),  # the segment edge inside part 2
    ]
    for first, last in spans:
        resp = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={first}-{last}")
        assert resp["ContentRange"] == f"bytes {first}-{last}/{size}"
        assert resp["ContentLength"] == last - first + 1
        assert resp["Body"].read() == whole[first : last + 1], (first, last)
    # Open-ended and suffix ranges.
    for rng, expected in (
        (f"bytes={offsets[3] - 1}-", whole[offsets[3] - 1 :]),
        ("bytes=-130", whole[-130:]),
        (f"bytes=-{size + 10}", whole),
    ):
        assert _get(s3, bucket, key, Range=rng) == expected, rng


def test_whole_read_and_head_of_a_multipart_object(s3: Any, multipart_object: Any) -> None:
    bucket, key, parts = multipart_object
    whole = b"".join(parts)
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == len(whole)
    assert head["ETag"] == _multipart_etag(parts)
    assert head["ContentType"] == "application/x-test"
    got = s3.get_object(Bucket=bucket, Key=key)
    assert got["ETag"] == _multipart_etag(parts)
    assert hashlib.sha256(got["Body"].read()).digest() == hashlib.sha256(whole).digest()
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["Size"], o["ETag"]) for o in listed] == [
        (key, len(whole), _multipart_etag(parts))
    ]


def test_get_and_head_by_part_number(s3: Any, multipart_object: Any) -> None:
    bucket, key, parts = multipart_object
    size = sum(map(len, parts))
    offset = 0
    for n, part in enumerate(parts, 1):
        first, last = offset, offset + len(part) - 1
        got = s3.get_object(Bucket=bucket, Key=key, PartNumber=n)
        head = s3.head_object(Bucket=bucket, Key=key, PartNumber=n)
        for resp in (got, head):
            meta = resp["ResponseMetadata"]
            assert meta["HTTPStatusCode"] == 206
            assert resp["ContentRange"] == f"bytes {first}-{last}/{size}"
            assert resp["ContentLength"] == len(part)
            assert resp["PartsCount"] == len(parts)
            assert meta["HTTPHeaders"]["x-amz-mp-parts-count"] == str(len(parts))
            assert resp["ETag"] == _multipart_etag(parts)  # the object's, not the part's
        assert got["Body"].read() == part, n
        offset += len(part)
    # Without partNumber S3 does not say how many parts there are.
    for resp in (s3.head_object(Bucket=bucket, Key=key), s3.get_object(Bucket=bucket, Key=key)):
        assert "x-amz-mp-parts-count" not in resp["ResponseMetadata"]["HTTPHeaders"]
        assert "PartsCount" not in resp


def test_part_number_beyond_the_count(cluster: Cluster, s3: Any, multipart_object: Any) -> None:
    bucket, key, parts = multipart_object
    for n in (len(parts) + 1, 10000):
        with pytest.raises(ClientError) as exc:
            s3.get_object(Bucket=bucket, Key=key, PartNumber=n)
        assert _err(exc) == (416, "InvalidPartNumber")
        with pytest.raises(ClientError) as exc:
            s3.head_object(Bucket=bucket, Key=key, PartNumber=n)
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416
    for bad in ("0", "10001", "abc"):
        status, _, body = cluster.raw("GET", f"/{bucket}/{key}?partNumber={bad}")
        assert (status, _raw_error(body)) == (400, "InvalidArgument"), bad
    # Range and partNumber together are refused.
    status, _, body = cluster.raw(
        "GET", f"/{bucket}/{key}?partNumber=1", headers={"Range": "bytes=0-1"}
    )
    assert (status, _raw_error(body)) == (400, "InvalidRequest")


def test_part_number_one_of_a_plain_object_is_the_whole_object(s3: Any, mb: str) -> None:
    s3.put_object(Bucket=mb, Key="plain", Body=b"0123456789")
    got = s3.get_object(Bucket=mb, Key="plain", PartNumber=1)
    assert got["Body"].read() == b"0123456789"
    assert got["ContentRange"] == "bytes 0-9/10"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=mb, Key="plain", PartNumber=2)
    assert _err(exc) == (416, "InvalidPartNumber")
