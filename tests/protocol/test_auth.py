"""SigV4 on every request: header auth, presigned URLs, and each auth error."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.cluster import Cluster, sign


def _fetch(url: str, method: str = "GET", data: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, method=method, data=data)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_wrong_secret(cluster: Cluster, bucket: str) -> None:
    bad = cluster.client(secret_key="wrong-secret-wrong-secret-wrong-secret")
    with pytest.raises(ClientError) as exc:
        bad.list_objects_v2(Bucket=bucket)
    assert exc.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_unknown_access_key(cluster: Cluster, bucket: str) -> None:
    bad = cluster.client(access_key="AKIDUNKNOWN000000000")
    with pytest.raises(ClientError) as exc:
        bad.list_buckets()
    assert exc.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_anonymous_is_denied(cluster: Cluster, bucket: str) -> None:
    for method, path in (("GET", "/"), ("GET", f"/{bucket}"), ("PUT", f"/{bucket}/k")):
        status, _, body = cluster.raw(method, path, sign=False, body=b"x")
        assert status == 403
        assert b"<Code>AccessDenied</Code>" in body


def test_tampered_request_is_refused(cluster: Cluster, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"secret")
    status, _, _ = cluster.raw("GET", f"/{bucket}/k")
    assert status == 200
    # The signature covers the path: the same headers on another key do not verify.
    signed = sign(cluster, "GET", f"{cluster.endpoint}/{bucket}/k")
    status, _, body = cluster.raw("GET", f"/{bucket}/other", headers=signed, sign=False)
    assert status == 403 and b"SignatureDoesNotMatch" in body


def test_presigned_get_and_put(cluster: Cluster, bucket: str) -> None:
    s3v4 = cluster.client(signature_version="s3v4")
    put_url = s3v4.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "via url"}, ExpiresIn=300
    )
    assert _fetch(put_url, "PUT", b"uploaded through a presigned URL")[0] == 200
    get_url = s3v4.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "via url"}, ExpiresIn=300
    )
    assert _fetch(get_url) == (200, b"uploaded through a presigned URL")
    # Tampering with the URL breaks it.
    status, body = _fetch(get_url.replace("via%20url", "via%20urL"))
    assert status == 403 and b"SignatureDoesNotMatch" in body


def test_presigned_url_expires(cluster: Cluster, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    url = cluster.client(signature_version="s3v4").generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=1
    )
    time.sleep(2.1)
    status, body = _fetch(url)
    assert status == 403
    assert b"<Code>AccessDenied</Code>" in body and b"expired" in body


def test_sigv2_presigned_gets_a_clear_error(cluster: Cluster, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    url = cluster.client(signature_version="s3").generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=60
    )
    status, body = _fetch(url)
    assert status == 400
    assert b"signature_version" in body
