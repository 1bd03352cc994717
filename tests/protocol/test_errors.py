"""Every error the core operations can return, with AWS's code and status."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from botocore.exceptions import ClientError
from lxml import etree

from tests.cluster import Cluster


def _error(body: bytes) -> dict[str, str]:
    root = etree.fromstring(body)
    assert root.tag == "Error"
    return {child.tag: child.text or "" for child in root}


def test_error_document_shape(cluster: Cluster, bucket: str) -> None:
    status, headers, body = cluster.raw("GET", f"/{bucket}/missing")
    assert status == 404
    err = _error(body)
    assert err["Code"] == "NoSuchKey"
    assert err["Resource"] == f"/{bucket}/missing"
    assert err["RequestId"] == headers["x-amz-request-id"]
    assert err["Message"]
    assert headers["content-type"] == "application/xml"


def test_head_errors_have_no_body(cluster: Cluster, bucket: str) -> None:
    status, headers, body = cluster.raw("HEAD", f"/{bucket}/missing")
    assert (status, body) == (404, b"")
    assert headers["x-amz-request-id"]


def test_no_such_key(s3: Any, bucket: str) -> None:
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=bucket, Key="nope")
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="nope")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_bad_digest_stores_nothing(s3: Any, bucket: str) -> None:
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"data", ContentMD5=wrong)
    assert exc.value.response["Error"]["Code"] == "BadDigest"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    right = base64.b64encode(hashlib.md5(b"data").digest()).decode()
    s3.put_object(Bucket=bucket, Key="k", Body=b"data", ContentMD5=right)


def test_invalid_digest(cluster: Cluster, bucket: str) -> None:
    status, _, body = cluster.raw(
        "PUT", f"/{bucket}/k", body=b"data", headers={"Content-MD5": "not-base64!"}
    )
    assert (status, _error(body)["Code"]) == (400, "InvalidDigest")


def test_content_sha256_mismatch_stores_nothing(cluster: Cluster, s3: Any, bucket: str) -> None:
    status, _, body = cluster.raw(
        "PUT", f"/{bucket}/k", body=b"actual body", payload_hash=hashlib.sha256(b"x").hexdigest()
    )
    assert (status, _error(body)["Code"]) == (400, "XAmzContentSHA256Mismatch")
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_invalid_range(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"0123456789")
    for rng in ("bytes=10-", "bytes=100-200", "bytes=-0"):
        with pytest.raises(ClientError) as exc:
            s3.get_object(Bucket=bucket, Key="k", Range=rng)
        assert exc.value.response["Error"]["Code"] == "InvalidRange"
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="empty", Range="bytes=0-")
    assert exc.value.response["Error"]["Code"] == "InvalidRange"
    # A header S3 cannot parse is ignored: the whole object comes back.
    whole = s3.get_object(Bucket=bucket, Key="k", Range="bytes=0-1,3-4")
    assert whole["Body"].read() == b"0123456789"


def test_key_too_long(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k" * 1025, Body=b"x")
    assert exc.value.response["Error"]["Code"] == "KeyTooLongError"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_metadata_too_large(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", Metadata={"big": "v" * 2100})
    assert exc.value.response["Error"]["Code"] == "MetadataTooLarge"


def test_entity_too_large(cluster: Cluster, bucket: str) -> None:
    # Refused from the headers alone: the 6 GiB body is never sent.
    status, _, body = cluster.raw(
        "PUT",
        f"/{bucket}/k",
        headers={"Content-Length": str(6 * 1024**3), "Expect": "100-continue"},
        payload_hash="UNSIGNED-PAYLOAD",
        send_body=False,
    )
    assert (status, _error(body)["Code"]) == (400, "EntityTooLarge")


@pytest.mark.parametrize(
    "method,target",
    [
        ("PUT", "/{b}/k?acl"),
        ("GET", "/{b}?policy"),
        ("PUT", "/{b}?website"),
        ("DELETE", "/{b}?cors"),
        ("PUT", "/{b}/k?tagging"),
        ("PUT", "/{b}/k?retention"),
        ("POST", "/{b}/k?restore"),
    ],
)
def test_unknown_or_unimplemented_subresources(
    cluster: Cluster, s3: Any, bucket: str, method: str, target: str
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"precious")
    status, _, body = cluster.raw(method, target.format(b=bucket), body=b"<x/>")
    assert (status, _error(body)["Code"]) == (501, "NotImplemented")
    # Never a fall-through to a plain object operation.
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"precious"


def test_method_not_allowed(cluster: Cluster, bucket: str) -> None:
    status, _, body = cluster.raw("PATCH", f"/{bucket}/k", body=b"x")
    assert (status, _error(body)["Code"]) == (405, "MethodNotAllowed")


def test_missing_content_length(cluster: Cluster, bucket: str) -> None:
    status, _, body = cluster.raw(
        "PUT", f"/{bucket}/k", payload_hash="UNSIGNED-PAYLOAD", send_body=False
    )
    assert (status, _error(body)["Code"]) == (411, "MissingContentLength")
