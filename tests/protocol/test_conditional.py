"""Conditional requests (reads and writes), response-* overrides, x-amz-acl and
x-amz-storage-class, as the AWS S3 API reference describes them."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError
from lxml import etree

from tests import checks
from tests.cluster import Cluster, wait_for

BODY = b"0123456789"


def _error(body: bytes) -> dict[str, str]:
    root = etree.fromstring(body)
    assert root.tag == "Error"
    return {child.tag: child.text or "" for child in root}


def _code(exc: pytest.ExceptionInfo[ClientError] | ClientError) -> tuple[int, str]:
    resp = (exc if isinstance(exc, ClientError) else exc.value).response
    return resp["ResponseMetadata"]["HTTPStatusCode"], resp["Error"]["Code"]


def _http_date(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


def _stored(cluster: Cluster, bucket: str, key: str) -> tuple[str, datetime]:
    """(ETag, Last-Modified) as HEAD reports them."""
    status, headers, _ = cluster.raw("HEAD", f"/{bucket}/{key}")
    assert status == 200
    return headers["etag"], parsedate_to_datetime(headers["last-modified"])


def _exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        return False
    return True


def _upload_single_part(s3: Any, bucket: str, key: str, data: bytes) -> tuple[str, list[Any]]:
    upload_id: str = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=data)[
        "ETag"
    ]
    return upload_id, [{"PartNumber": 1, "ETag": etag}]


# --- conditional GET and HEAD ------------------------------------------------------------


@pytest.fixture
def obj(cluster: Cluster, s3: Any, bucket: str) -> tuple[str, str, datetime]:
    """`k` holding BODY: (path, ETag, Last-Modified)."""
    s3.put_object(Bucket=bucket, Key="k", Body=BODY)
    etag, modified = _stored(cluster, bucket, "k")
    return f"/{bucket}/k", etag, modified


def test_if_match_that_holds(cluster: Cluster, obj: tuple[str, str, datetime]) -> None:
    path, etag, _ = obj
    bare = etag.strip('"')
    for value in (etag, bare, f'"0000", {etag}', f"{bare} , x", "*"):
        status, _, body = cluster.raw("GET", path, headers={"If-Match": value})
        assert (status, body) == (200, BODY), value
        status, headers, body = cluster.raw("HEAD", path, headers={"If-Match": value})
        assert (status, body, headers["content-length"]) == (200, b"", "10"), value


def test_if_match_that_fails(cluster: Cluster, obj: tuple[str, str, datetime]) -> None:
    path, etag, _ = obj
    for value in ('"00000000000000000000000000000000"', "abc, def", etag[:-3] + '"'):
        status, _, body = cluster.raw("GET", path, headers={"If-Match": value})
        assert status == 412, value
        assert _error(body)["Code"] == "PreconditionFailed"
        status, _, body = cluster.raw("HEAD", path, headers={"If-Match": value})
        assert (status, body) == (412, b""), value


def test_if_none_match_that_matches_is_not_modified(
    cluster: Cluster, obj: tuple[str, str, datetime]
) -> None:
    path, etag, modified = obj
    for value in (etag, etag.strip('"'), f'"0000", {etag}', "*"):
        for method in ("GET", "HEAD"):
            status, headers, body = cluster.raw(method, path, headers={"If-None-Match": value})
            assert (status, body) == (304, b""), (method, value)
            assert headers["etag"] == etag
            assert parsedate_to_datetime(headers["last-modified"]) == modified


def test_if_none_match_that_differs(cluster: Cluster, obj: tuple[str, str, datetime]) -> None:
    path, _, _ = obj
    value = '"00000000000000000000000000000000"'
    status, _, body = cluster.raw("GET", path, headers={"If-None-Match": value})
    assert (status, body) == (200, BODY)
    status, _, _ = cluster.raw("HEAD", path, headers={"If-None-Match": value})
    assert status == 200


def test_if_modified_since(cluster: Cluster, obj: tuple[str, str, datetime]) -> None:
    path, etag, modified = obj
    before = _http_date(modified - timedelta(hours=1))
    status, _, body = cluster.raw("GET", path, headers={"If-Modified-Since": before})
    assert (status, body) == (200, BODY)
    assert cluster.raw("HEAD", path, headers={"If-Modified-Since": before})[0] == 200
    for when in (modified, modified + timedelta(seconds=1), modified + timedelta(hours=1)):
        for method in ("GET", "HEAD"):
            status, headers, body = cluster.raw(
                method, path, headers={"If-Modified-Since": _http_date(when)}
            )
            assert (status, body) == (304, b""), (method, when)
            assert headers["etag"] == etag


def test_if_unmodified_since(cluster: Cluster, obj: tuple[str, str, datetime]) -> None:
    path, _, modified = obj
    before = _http_date(modified - timedelta(seconds=1))
    status, _, body = cluster.raw("GET", path, headers={"If-Unmodified-Since": before})
    assert status == 412
    assert _error(body)["Code"] == "PreconditionFailed"
    status, _, body = cluster.raw("HEAD", path, headers={"If-Unmodified-Since": before})
    assert (status, body) == (412, b"")
    for when in (modified, modified + timedelta(hours=1)):
        status, _, body = cluster.raw(
            "GET", path, headers={"If-Unmodified-Since": _http_date(when)}
        )
        assert (status, body) == (200, BODY), when
        status, _, _ = cluster.raw("HEAD", path, headers={"If-Unmodified-Since": _http_date(when)})
        assert status == 200


def test_s3_precedence(cluster: Cluster, obj: tuple[str, str, datetime]) -> None:
    path, etag, modified = obj
    # If-Match true and If-Unmodified-Since false: 200 with the data.
    both = {"If-Match": etag, "If-Unmodified-Since": _http_date(modified - timedelta(hours=1))}
    for method in ("GET", "HEAD"):
        status, _, body = cluster.raw(method, path, headers=both)
        assert status == 200, method
    assert cluster.raw("GET", path, headers=both)[2] == BODY
    # If-None-Match false (the ETag matches) and If-Modified-Since true: 304.
    both = {"If-None-Match": etag, "If-Modified-Since": _http_date(modified - timedelta(hours=1))}
    for method in ("GET", "HEAD"):
        status, _, body = cluster.raw(method, path, headers=both)
        assert (status, body) == (304, b""), method


def test_unparsable_dates_are_ignored(cluster: Cluster, obj: tuple[str, str, datetime]) -> None:
    path, _, _ = obj
    for name in ("If-Modified-Since", "If-Unmodified-Since"):
        for value in ("yesterday", "Mon, 99 Foo 2020 99:99:99 GMT", ""):
            status, _, body = cluster.raw("GET", path, headers={name: value})
            assert (status, body) == (200, BODY), (name, value)


def test_conditions_come_before_range(cluster: Cluster, obj: tuple[str, str, datetime]) -> None:
    path, etag, _ = obj
    # A failed If-Match with an unsatisfiable range: the condition answers (412, not 416).
    status, _, body = cluster.raw(
        "GET", path, headers={"If-Match": '"nope"', "Range": "bytes=100-200"}
    )
    assert (status, _error(body)["Code"]) == (412, "PreconditionFailed")
    status, _, body = cluster.raw(
        "GET", path, headers={"If-None-Match": etag, "Range": "bytes=100-200"}
    )
    assert (status, body) == (304, b"")
    # A passing condition with a range: the range applies.
    status, headers, body = cluster.raw(
        "GET", path, headers={"If-Match": etag, "Range": "bytes=2-4"}
    )
    assert (status, body) == (206, b"234")
    assert headers["content-range"] == "bytes 2-4/10"
    status, headers, _ = cluster.raw(
        "HEAD", path, headers={"If-None-Match": '"other"', "Range": "bytes=-3"}
    )
    assert (status, headers["content-length"]) == (206, "3")


def test_conditions_on_a_missing_key(cluster: Cluster, bucket: str) -> None:
    for cond in (
        {"If-Match": "*"},
        {"If-Match": '"abc"'},
        {"If-None-Match": "*"},
        {"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"},
        {"If-Unmodified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"},
    ):
        status, _, body = cluster.raw("GET", f"/{bucket}/missing", headers=cond)
        assert (status, _error(body)["Code"]) == (404, "NoSuchKey"), cond
        status, _, body = cluster.raw("HEAD", f"/{bucket}/missing", headers=cond)
        assert (status, body) == (404, b""), cond


def test_conditional_reads_through_boto3(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="k", Body=BODY)["ETag"]
    assert s3.get_object(Bucket=bucket, Key="k", IfMatch=etag)["Body"].read() == BODY
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k", IfMatch='"other"')
    assert _code(exc) == (412, "PreconditionFailed")
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="k", IfNoneMatch=etag)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304


# --- conditional PUT ---------------------------------------------------------------------


def test_put_if_none_match_star(cluster: Cluster, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"first", IfNoneMatch="*")
    assert checks.body(s3, bucket, "k") == b"first"
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"second", IfNoneMatch="*")
    assert _code(exc) == (412, "PreconditionFailed")
    assert checks.body(s3, bucket, "k") == b"first"
    # Raw, with a body big enough to be stored in several chunks were it accepted.
    status, _, body = cluster.raw(
        "PUT", f"/{bucket}/k", body=b"z" * (3 << 20), headers={"If-None-Match": "*"}
    )
    assert (status, _error(body)["Code"]) == (412, "PreconditionFailed")
    assert checks.body(s3, bucket, "k") == b"first"
    assert wait_for(cluster.settled)


def test_put_if_none_match_other_than_star(cluster: Cluster, s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"old")["ETag"]
    for value in (etag, '"abc"'):
        status, _, body = cluster.raw(
            "PUT", f"/{bucket}/k", body=b"new", headers={"If-None-Match": value}
        )
        assert (status, _error(body)["Code"]) == (501, "NotImplemented"), value
        status, _, body = cluster.raw(
            "PUT", f"/{bucket}/fresh", body=b"new", headers={"If-None-Match": value}
        )
        assert (status, _error(body)["Code"]) == (501, "NotImplemented"), value
    assert checks.body(s3, bucket, "k") == b"old"
    assert not _exists(s3, bucket, "fresh")


def test_put_if_match(cluster: Cluster, s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"v1")["ETag"]
    etag2 = s3.put_object(Bucket=bucket, Key="k", Body=b"v2", IfMatch=etag)["ETag"]
    assert checks.body(s3, bucket, "k") == b"v2"
    # The old ETag no longer matches.
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"v3", IfMatch=etag)
    assert _code(exc) == (412, "PreconditionFailed")
    assert checks.body(s3, bucket, "k") == b"v2"
    # Unquoted works as well.
    status, _, _ = cluster.raw(
        "PUT", f"/{bucket}/k", body=b"v3", headers={"If-Match": etag2.strip('"')}
    )
    assert status == 200
    assert checks.body(s3, bucket, "k") == b"v3"
    # On a missing key: NoSuchKey, and nothing is created.
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="missing", Body=b"x", IfMatch=etag)
    assert _code(exc) == (404, "NoSuchKey")
    assert not _exists(s3, bucket, "missing")
    assert wait_for(cluster.settled)


def _race(n: int, attempt: Callable[[int], int]) -> list[int]:
    """Run attempt(0..n-1) in n threads released together; their statuses, in order."""
    barrier = threading.Barrier(n)
    statuses: list[int] = [0] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            statuses[i] = attempt(i)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return statuses


def test_racing_if_none_match_writers(cluster: Cluster, s3: Any, bucket: str) -> None:
    n = 8
    bodies = [f"writer {i} ".encode() * (20000 + i) for i in range(n)]
    etags: list[str] = [""] * n

    def attempt(i: int) -> int:
        status, headers, body = cluster.raw(
            "PUT", f"/{bucket}/race", body=bodies[i], headers={"If-None-Match": "*"}
        )
        if status == 200:
            etags[i] = headers["etag"]
        else:
            code = _error(body)["Code"]
            assert (status, code) in (
                (412, "PreconditionFailed"),
                (409, "ConditionalRequestConflict"),
            )
        return status

    statuses = _race(n, attempt)
    winners = [i for i, s in enumerate(statuses) if s == 200]
    assert len(winners) == 1, statuses
    [winner] = winners
    assert checks.body(s3, bucket, "race") == bodies[winner]
    assert s3.head_object(Bucket=bucket, Key="race")["ETag"] == etags[winner]
    # The losers' bodies were stored, or not, but leave nothing behind.
    assert wait_for(cluster.settled)


# --- conditional CompleteMultipartUpload -------------------------------------------------


def test_complete_if_none_match_on_an_existing_key(cluster: Cluster, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"already here")
    upload_id, parts = _upload_single_part(s3, bucket, "k", b"the upload")
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="k",
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
            IfNoneMatch="*",
        )
    assert _code(exc) == (412, "PreconditionFailed")
    assert checks.body(s3, bucket, "k") == b"already here"
    # The upload is still there, with its part, and can be completed without the header.
    listed = s3.list_parts(Bucket=bucket, Key="k", UploadId=upload_id)["Parts"]
    assert [p["PartNumber"] for p in listed] == [1]
    s3.complete_multipart_upload(
        Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload={"Parts": parts}
    )
    assert checks.body(s3, bucket, "k") == b"the upload"
    assert wait_for(cluster.settled)


def test_complete_if_none_match_on_a_new_key(s3: Any, bucket: str) -> None:
    upload_id, parts = _upload_single_part(s3, bucket, "k", b"the upload")
    reply = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="k",
        UploadId=upload_id,
        MultipartUpload={"Parts": parts},
        IfNoneMatch="*",
    )
    assert reply["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert checks.body(s3, bucket, "k") == b"the upload"
    uploads = s3.list_multipart_uploads(Bucket=bucket)
    assert "Uploads" not in uploads


def test_racing_conditional_completes(cluster: Cluster, s3: Any, bucket: str) -> None:
    bodies = [b"upload one", b"upload two"]
    uploads = [_upload_single_part(s3, bucket, "k", b) for b in bodies]

    def attempt(i: int) -> int:
        upload_id, parts = uploads[i]
        try:
            s3.complete_multipart_upload(
                Bucket=bucket,
                Key="k",
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
            )
        except ClientError as exc:
            status, code = _code(exc)
            assert (status, code) in (
                (412, "PreconditionFailed"),
                (409, "ConditionalRequestConflict"),
            )
            return status
        return 200

    statuses = _race(2, attempt)
    assert sorted(statuses)[0] == 200 and sorted(statuses)[1] != 200, statuses
    winner = statuses.index(200)
    assert checks.body(s3, bucket, "k") == bodies[winner]
    loser_id = uploads[1 - winner][0]
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=loser_id)
    assert wait_for(cluster.settled)


def test_complete_if_match(cluster: Cluster, s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"v1")["ETag"]
    upload_id, parts = _upload_single_part(s3, bucket, "k", b"v2")
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="k",
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
            IfMatch='"00000000000000000000000000000000"',
        )
    assert _code(exc) == (412, "PreconditionFailed")
    assert checks.body(s3, bucket, "k") == b"v1"
    s3.complete_multipart_upload(
        Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload={"Parts": parts}, IfMatch=etag
    )
    assert checks.body(s3, bucket, "k") == b"v2"
    # If-Match on a key that does not exist: NoSuchKey, and the upload survives.
    upload_id, parts = _upload_single_part(s3, bucket, "missing", b"v1")
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="missing",
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
            IfMatch=etag,
        )
    assert _code(exc) == (404, "NoSuchKey")
    assert not _exists(s3, bucket, "missing")
    s3.abort_multipart_upload(Bucket=bucket, Key="missing", UploadId=upload_id)
    assert wait_for(cluster.settled)


# --- conditional CopyObject --------------------------------------------------------------


def test_copy_if_none_match_onto_an_existing_key(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"source")
    s3.put_object(Bucket=bucket, Key="dst", Body=b"destination")
    source = {"Bucket": bucket, "Key": "src"}
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource=source, IfNoneMatch="*")
    assert _code(exc) == (412, "PreconditionFailed")
    assert checks.body(s3, bucket, "dst") == b"destination"
    s3.copy_object(Bucket=bucket, Key="new", CopySource=source, IfNoneMatch="*")
    assert checks.body(s3, bucket, "new") == b"source"


def test_copy_if_match_on_the_destination(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"source")
    etag = s3.put_object(Bucket=bucket, Key="dst", Body=b"destination")["ETag"]
    source = {"Bucket": bucket, "Key": "src"}
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource=source, IfMatch='"0000"')
    assert _code(exc) == (412, "PreconditionFailed")
    assert checks.body(s3, bucket, "dst") == b"destination"
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="missing", CopySource=source, IfMatch=etag)
    assert _code(exc) == (404, "NoSuchKey")
    assert not _exists(s3, bucket, "missing")
    s3.copy_object(Bucket=bucket, Key="dst", CopySource=source, IfMatch=etag)
    assert checks.body(s3, bucket, "dst") == b"source"


# --- response-* overrides ----------------------------------------------------------------

OVERRIDES = {
    "ResponseContentType": ("content-type", "text/x-override"),
    "ResponseContentLanguage": ("content-language", "fr-CA"),
    "ResponseExpires": ("expires", "Wed, 21 Oct 2037 07:28:00 GMT"),
    "ResponseCacheControl": ("cache-control", "no-store"),
    "ResponseContentDisposition": ("content-disposition", 'attachment; filename="r é.txt"'),
    "ResponseContentEncoding": ("content-encoding", "identity"),
}


@pytest.fixture
def decorated(s3: Any, bucket: str) -> str:
    """`k` stored with every header the overrides replace."""
    s3.put_object(
        Bucket=bucket,
        Key="k",
        Body=BODY,
        ContentType="text/plain",
        ContentLanguage="en",
        Expires=datetime(2030, 1, 1),
        CacheControl="max-age=60",
        ContentDisposition="inline",
        ContentEncoding="gzip",
    )
    return bucket


def _check_overridden(headers: dict[str, str], params: dict[str, str]) -> None:
    for param in params:
        name, value = OVERRIDES[param]
        assert headers[name] == value, name


def test_response_overrides_on_get_and_head(s3: Any, decorated: str) -> None:
    params = {p: v for p, (_, v) in OVERRIDES.items()}
    for op in (s3.get_object, s3.head_object):
        reply = op(Bucket=decorated, Key="k", **params)
        _check_overridden(reply["ResponseMetadata"]["HTTPHeaders"], params)
    # One at a time: only that header changes.
    reply = s3.get_object(Bucket=decorated, Key="k", ResponseContentType="image/png")
    headers = reply["ResponseMetadata"]["HTTPHeaders"]
    assert headers["content-type"] == "image/png"
    assert headers["content-language"] == "en"
    assert headers["cache-control"] == "max-age=60"
    assert reply["Body"].read() == BODY


def test_response_overrides_raw(cluster: Cluster, decorated: str) -> None:
    query = "response-content-type=a%2Fb&response-content-disposition=attachment%3B%20x%3D1"
    for method in ("GET", "HEAD"):
        status, headers, _ = cluster.raw(method, f"/{decorated}/k?{query}")
        assert status == 200
        assert headers["content-type"] == "a/b"
        assert headers["content-disposition"] == "attachment; x=1"


@pytest.mark.parametrize("signature_version", [None, "s3v4"])
def test_response_overrides_through_presigned_urls(
    cluster: Cluster, decorated: str, signature_version: str | None
) -> None:
    client = cluster.client(signature_version=signature_version) if signature_version else None
    client = client or cluster.client()
    params = {p: v for p, (_, v) in OVERRIDES.items()}
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": decorated, "Key": "k", **params}, ExpiresIn=300
    )
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.status == 200
        headers = {k.lower(): v for k, v in resp.getheaders()}
        assert resp.read() == BODY
    _check_overridden(headers, params)


def test_anonymous_response_override_is_denied(cluster: Cluster, decorated: str) -> None:
    status, headers, body = cluster.raw(
        "GET", f"/{decorated}/k?response-content-type=text%2Fhtml", sign=False
    )
    assert (status, _error(body)["Code"]) == (403, "AccessDenied")
    assert headers["content-type"] != "text/html"


# --- x-amz-acl and x-amz-storage-class ---------------------------------------------------


def _assert_refused(call: Callable[[], Any], status: int, code: str) -> None:
    with pytest.raises(ClientError) as exc:
        call()
    assert _code(exc) == (status, code)


def test_private_acl_is_accepted(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="private")
    s3.copy_object(Bucket=bucket, Key="c", CopySource={"Bucket": bucket, "Key": "k"}, ACL="private")
    assert checks.body(s3, bucket, "c") == b"x"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="m", ACL="private")["UploadId"]
    s3.abort_multipart_upload(Bucket=bucket, Key="m", UploadId=upload_id)
    name = f"test-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name, ACL="private")
    s3.head_bucket(Bucket=name)
    s3.delete_bucket(Bucket=name)


@pytest.mark.parametrize("acl", ["public-read", "public-read-write", "authenticated-read"])
def test_other_canned_acls_are_not_implemented(s3: Any, bucket: str, acl: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"x")
    _assert_refused(
        lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL=acl), 501, "NotImplemented"
    )
    _assert_refused(
        lambda: s3.copy_object(
            Bucket=bucket, Key="c", CopySource={"Bucket": bucket, "Key": "src"}, ACL=acl
        ),
        501,
        "NotImplemented",
    )
    _assert_refused(
        lambda: s3.create_multipart_upload(Bucket=bucket, Key="m", ACL=acl), 501, "NotImplemented"
    )
    name = f"test-{uuid.uuid4().hex[:16]}"
    _assert_refused(lambda: s3.create_bucket(Bucket=name, ACL=acl), 501, "NotImplemented")
    # Nothing was stored.
    assert not _exists(s3, bucket, "k") and not _exists(s3, bucket, "c")
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    _assert_refused(lambda: s3.head_bucket(Bucket=name), 404, "404")


def test_bogus_acl_and_grants(cluster: Cluster, s3: Any, bucket: str) -> None:
    status, _, body = cluster.raw(
        "PUT", f"/{bucket}/k", body=b"x", headers={"x-amz-acl": "everyone-please"}
    )
    assert (status, _error(body)["Code"]) == (400, "InvalidArgument")
    status, _, body = cluster.raw(
        "PUT", f"/{bucket}/k", body=b"x", headers={"x-amz-grant-read": 'id="someone"'}
    )
    assert (status, _error(body)["Code"]) == (501, "NotImplemented")
    _assert_refused(
        lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x", GrantFullControl='id="x"'),
        501,
        "NotImplemented",
    )
    _assert_refused(
        lambda: s3.create_multipart_upload(Bucket=bucket, Key="k", GrantRead='id="x"'),
        501,
        "NotImplemented",
    )
    assert not _exists(s3, bucket, "k")
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("x-amz-tagging", "team=a"),
        ("x-amz-server-side-encryption", "AES256"),
        ("x-amz-server-side-encryption-customer-algorithm", "AES256"),
        ("x-amz-object-lock-mode", "GOVERNANCE"),
        ("x-amz-website-redirect-location", "/elsewhere"),
    ],
)
def test_features_the_store_lacks_are_refused(
    cluster: Cluster, s3: Any, bucket: str, header: str, value: str
) -> None:
    """Tags, encryption, object lock and redirects are not silently dropped: 501."""
    s3.put_object(Bucket=bucket, Key="src", Body=b"x")
    requests = [
        ("PUT", f"/{bucket}/k", {}),
        ("POST", f"/{bucket}/k?uploads", {}),
        ("PUT", f"/{bucket}/k", {"x-amz-copy-source": f"/{bucket}/src"}),
    ]
    for method, path, extra in requests:
        status, _, body = cluster.raw(
            method, path, body=b"" if "uploads" in path else b"x", headers={header: value, **extra}
        )
        assert (status, _error(body)["Code"]) == (501, "NotImplemented"), (method, path)
    assert not _exists(s3, bucket, "k")
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
    # An empty tag set asks for nothing.
    status, _, _ = cluster.raw("PUT", f"/{bucket}/k", body=b"x", headers={"x-amz-tagging": ""})
    assert status == 200


def test_standard_storage_class_is_accepted(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", StorageClass="STANDARD")
    s3.copy_object(
        Bucket=bucket,
        Key="c",
        CopySource={"Bucket": bucket, "Key": "k"},
        StorageClass="STANDARD",
    )
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="m", StorageClass="STANDARD")[
        "UploadId"
    ]
    s3.abort_multipart_upload(Bucket=bucket, Key="m", UploadId=upload_id)
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["StorageClass"]) for o in listed] == [("c", "STANDARD"), ("k", "STANDARD")]


@pytest.mark.parametrize(
    "value,status,code",
    [("GLACIER", 501, "NotImplemented"), ("bogus", 400, "InvalidStorageClass")],
)
def test_refused_storage_classes(s3: Any, bucket: str, value: str, status: int, code: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    _assert_refused(
        lambda: s3.put_object(Bucket=bucket, Key="n", Body=b"x", StorageClass=value),
        status,
        code,
    )
    _assert_refused(
        lambda: s3.copy_object(
            Bucket=bucket, Key="n", CopySource={"Bucket": bucket, "Key": "k"}, StorageClass=value
        ),
        status,
        code,
    )
    _assert_refused(
        lambda: s3.create_multipart_upload(Bucket=bucket, Key="n", StorageClass=value),
        status,
        code,
    )
    assert not _exists(s3, bucket, "n")
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)


def test_no_version_id_header_anywhere(s3: Any, bucket: str) -> None:
    def headers(reply: dict[str, Any]) -> dict[str, str]:
        h: dict[str, str] = reply["ResponseMetadata"]["HTTPHeaders"]
        return h

    replies = [
        s3.put_object(Bucket=bucket, Key="k", Body=b"x"),
        s3.get_object(Bucket=bucket, Key="k"),
        s3.head_object(Bucket=bucket, Key="k"),
        s3.copy_object(Bucket=bucket, Key="c", CopySource={"Bucket": bucket, "Key": "k"}),
    ]
    upload_id, parts = _upload_single_part(s3, bucket, "m", b"part")
    replies.append(
        s3.complete_multipart_upload(
            Bucket=bucket, Key="m", UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    )
    replies.append(s3.delete_object(Bucket=bucket, Key="c"))
    replies.append(s3.delete_object(Bucket=bucket, Key="never-there"))
    for reply in replies:
        assert "x-amz-version-id" not in headers(reply)
        assert "VersionId" not in reply
