"""Auth on every request: SigV4 and SigV2, header auth, presigned URLs, each auth error."""

from __future__ import annotations

import email.utils
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.auth import HmacV1Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.cluster import Cluster, sign


def _fetch(
    url: str,
    method: str = "GET",
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    # urllib sends `Content-Type: application/x-www-form-urlencoded` with any body unless
    # given one; SigV2 signs Content-Type, so V2 tests pass the one they signed ("" = none).
    req = urllib.request.Request(url, method=method, data=data, headers=headers or {})
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


# ------------------------------------------------------------------------------ SigV2

AWKWARD_KEYS = ["with space", "a+b=c&d", "dir/ünïcødé €.txt", "tab\tand%25percent", "~tilde/..dots"]


def test_sigv2_header_auth_round_trip(cluster: Cluster) -> None:
    """boto3 with signature_version='s3' signs `Authorization: AWS key:signature`."""
    v2 = cluster.client(signature_version="s3")
    name = f"v2-{uuid.uuid4().hex[:12]}"
    v2.create_bucket(Bucket=name)  # path `/bucket`, signed by botocore as `/bucket/`
    try:
        v2.head_bucket(Bucket=name)
        for i, key in enumerate(AWKWARD_KEYS):
            body = f"{i}: {key}".encode()
            v2.put_object(Bucket=name, Key=key, Body=body, ContentType="text/plain")
            got = v2.get_object(Bucket=name, Key=key)
            assert got["Body"].read() == body
            assert got["ContentType"] == "text/plain"
            assert v2.head_object(Bucket=name, Key=key)["ContentLength"] == len(body)
            part = v2.get_object(Bucket=name, Key=key, Range="bytes=0-1")["Body"].read()
            assert part == body[:2]
        listed = [o["Key"] for o in v2.list_objects_v2(Bucket=name)["Contents"]]
        assert sorted(listed) == sorted(AWKWARD_KEYS)
        v1 = [o["Key"] for o in v2.list_objects(Bucket=name, Prefix="dir/")["Contents"]]
        assert v1 == ["dir/ünïcødé €.txt"]
        for key in AWKWARD_KEYS:
            v2.delete_object(Bucket=name, Key=key)
        assert v2.list_objects_v2(Bucket=name)["KeyCount"] == 0
    finally:
        v2.delete_bucket(Bucket=name)


def test_sigv2_header_wrong_secret_and_unknown_key(cluster: Cluster, bucket: str) -> None:
    bad = cluster.client(signature_version="s3", secret_key="wrong-secret-wrong-secret")
    with pytest.raises(ClientError) as exc:
        bad.list_objects_v2(Bucket=bucket)
    assert exc.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    unknown = cluster.client(signature_version="s3", access_key="AKIDUNKNOWN000000000")
    with pytest.raises(ClientError) as exc:
        unknown.list_buckets()
    assert exc.value.response["Error"]["Code"] == "InvalidAccessKeyId"


def test_sigv2_header_virtual_host_style(cluster: Cluster, s3: Any, bucket: str) -> None:
    # V2 signs `/bucket/key` even when the bucket is in the Host header (botocore's
    # auth_path); the gateway must put it back before checking.
    s3.put_object(Bucket=bucket, Key="vh key+", Body=b"virtual v2")
    port = urlsplit(cluster.endpoint).port
    host = f"{bucket}.s3.localhost:{port}"
    request = AWSRequest(method="GET", url=f"http://{host}/vh%20key%2B")
    request.auth_path = f"/{bucket}/vh%20key%2B"
    HmacV1Auth(Credentials(cluster.access_key, cluster.secret_key)).add_auth(request)
    headers = {**dict(request.headers.items()), "Host": host}
    status, _, body = cluster.raw("GET", "/vh%20key%2B", headers=headers, sign=False)
    assert (status, body) == (200, b"virtual v2")


class _DatedHmacV1Auth(HmacV1Auth):
    """HmacV1Auth with a Date header `offset` away from now."""

    def __init__(self, credentials: Credentials, offset: timedelta) -> None:
        super().__init__(credentials)
        self.offset = offset

    def _get_date(self) -> str:
        return email.utils.format_datetime(datetime.now(UTC) + self.offset, usegmt=True)


def _v2_signed(cluster: Cluster, path: str, offset: timedelta) -> dict[str, str]:
    request = AWSRequest(method="GET", url=cluster.endpoint + path)
    creds = Credentials(cluster.access_key, cluster.secret_key)
    _DatedHmacV1Auth(creds, offset).add_auth(request)
    return dict(request.headers.items())


def test_sigv2_header_request_time_too_skewed(cluster: Cluster, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    # The same signer, on time, is accepted: the 403s below are the clock, not the signing.
    headers = _v2_signed(cluster, f"/{bucket}/k", timedelta(minutes=1))
    assert cluster.raw("GET", f"/{bucket}/k", headers=headers, sign=False)[::2] == (200, b"x")
    for offset in (timedelta(minutes=-20), timedelta(minutes=20)):
        headers = _v2_signed(cluster, f"/{bucket}/k", offset)
        status, _, body = cluster.raw("GET", f"/{bucket}/k", headers=headers, sign=False)
        assert status == 403
        assert b"<Code>RequestTimeTooSkewed</Code>" in body


def test_sigv2_presigned_get_and_put(cluster: Cluster, s3: Any, bucket: str) -> None:
    """boto3's default presigned URLs: AWSAccessKeyId, Signature and Expires."""
    v2 = cluster.client(signature_version="s3")
    for key in ("via url", "a+b/ünï €"):
        put_url = v2.generate_presigned_url(
            "put_object",
            Params={"Bucket": bucket, "Key": key, "ContentType": "text/plain"},
            ExpiresIn=300,
        )
        assert "AWSAccessKeyId=" in put_url and "X-Amz-" not in put_url
        body = f"{key} through a V2 URL".encode()
        assert _fetch(put_url, "PUT", body, {"Content-Type": "text/plain"})[0] == 200
        got = s3.get_object(Bucket=bucket, Key=key)
        assert got["Body"].read() == body and got["ContentType"] == "text/plain"
        get_url = v2.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300
        )
        assert _fetch(get_url) == (200, body)
    # Response overrides are signed sub-resources.
    get_url = v2.generate_presigned_url(
        "get_object",
        Params={"Bucket": bucket, "Key": "via url", "ResponseContentType": "x/y"},
        ExpiresIn=300,
    )
    assert _fetch(get_url)[0] == 200


def test_sigv2_presigned_put_content_type_is_signed(cluster: Cluster, bucket: str) -> None:
    put_url = cluster.client(signature_version="s3").generate_presigned_url(
        "put_object",
        Params={"Bucket": bucket, "Key": "k", "ContentType": "text/plain"},
        ExpiresIn=300,
    )
    status, body = _fetch(put_url, "PUT", b"x", {"Content-Type": "text/html"})
    assert status == 403 and b"SignatureDoesNotMatch" in body


def test_sigv2_presigned_url_expires(cluster: Cluster, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    v2 = cluster.client(signature_version="s3")
    get_url = v2.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=1
    )
    put_url = v2.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=1
    )
    time.sleep(2.1)
    for status, body in (_fetch(get_url), _fetch(put_url, "PUT", b"y", {"Content-Type": ""})):
        assert status == 403
        assert b"<Code>AccessDenied</Code>" in body and b"expired" in body
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda url: url.replace("/k?", "/K?"),
        lambda url: re.sub(r"Expires=(\d+)", lambda m: f"Expires={int(m[1]) + 1}", url),
        lambda url: url.replace("Signature=", "Signature=A"),
        lambda url: url + "&response-content-type=text%2Fhtml",
    ],
    ids=["key", "expires", "signature", "added-override"],
)
def test_sigv2_presigned_url_tampered(
    cluster: Cluster, s3: Any, bucket: str, tamper: Callable[[str], str]
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    s3.put_object(Bucket=bucket, Key="K", Body=b"y")
    url = cluster.client(signature_version="s3").generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=300
    )
    assert _fetch(url) == (200, b"x")
    status, body = _fetch(tamper(url))
    assert status == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in body


def test_sigv2_presigned_put_tampered(cluster: Cluster, s3: Any, bucket: str) -> None:
    url = cluster.client(signature_version="s3").generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=300
    )
    status, body = _fetch(url.replace("/k?", "/other?"), "PUT", b"x", {"Content-Type": ""})
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body
    assert _fetch(url, "PUT", b"x", {"Content-Type": ""})[0] == 200
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"


def test_malformed_authorization_header(cluster: Cluster, bucket: str) -> None:
    headers = {
        "Authorization": "AWS4-HMAC-SHA256 Credential=nonsense",
        "x-amz-date": "20260101T000000Z",
        "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
    }
    status, _, body = cluster.raw("GET", f"/{bucket}", headers=headers, sign=False)
    assert status == 400 and b"<Code>AuthorizationHeaderMalformed</Code>" in body


def test_malformed_presigned_query(cluster: Cluster, bucket: str) -> None:
    query = (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20260101%2Fus-east-1%2Fs3"
        "%2Faws4_request&X-Amz-Date=20260101T000000Z&X-Amz-Expires=999999999"
        "&X-Amz-SignedHeaders=host&X-Amz-Signature=" + "0" * 64
    )
    status, _, body = cluster.raw("GET", f"/{bucket}/k?{query}", sign=False)
    assert status == 400 and b"<Code>AuthorizationQueryParametersError</Code>" in body
