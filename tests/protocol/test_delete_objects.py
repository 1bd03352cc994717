"""DeleteObjects (POST /bucket?delete): up to 1000 keys, Quiet mode, per-key errors, and the
body digests (Content-MD5 or x-amz-checksum-*, both optional). aws-cli v2 `rm --recursive`,
s3cmd `del --recursive`, rclone purge and boto3's `objects.all().delete()` send it."""

from __future__ import annotations

import base64
import hashlib
import uuid
import zlib
from typing import Any
from xml.sax.saxutils import escape

import pytest
from botocore.exceptions import ClientError
from lxml import etree

from tests.cluster import Cluster, wait_for

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def _keys(s3: Any, bucket: str) -> list[str]:
    out: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        out += [o["Key"] for o in page.get("Contents", [])]
    return out


def _document(
    keys: list[str], quiet: bool | None = None, versions: dict[str, str] | None = None
) -> bytes:
    parts = ["<Delete>"]
    if quiet is not None:
        parts.append(f"<Quiet>{'true' if quiet else 'false'}</Quiet>")
    for key in keys:
        version = (versions or {}).get(key)
        extra = f"<VersionId>{version}</VersionId>" if version is not None else ""
        parts.append(f"<Object><Key>{escape(key)}</Key>{extra}</Object>")
    parts.append("</Delete>")
    return "".join(parts).encode()


def _post(
    cluster: Cluster, bucket: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, etree._Element]:
    status, _, resp = cluster.raw("POST", f"/{bucket}?delete", body=body, headers=headers)
    return status, etree.fromstring(resp)


def test_delete_1000_keys_in_one_request(cluster: Cluster, s3: Any, bucket: str) -> None:
    keys = [f"k/{i:04d}" for i in range(1000)]
    for key in keys[:40]:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    s3.put_object(Bucket=bucket, Key="kept", Body=b"kept")
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})
    # Missing keys are reported deleted too, as in S3.
    assert sorted(d["Key"] for d in out["Deleted"]) == keys
    assert "Errors" not in out
    assert _keys(s3, bucket) == ["kept"]
    assert wait_for(cluster.settled)


def test_more_than_1000_keys_is_malformed(cluster: Cluster, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k0", Body=b"x")
    status, root = _post(cluster, bucket, _document([f"k{i}" for i in range(1001)]))
    assert (status, root.findtext("Code")) == (400, "MalformedXML")
    assert _keys(s3, bucket) == ["k0"]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<Delete></Delete>",
        b"<Delete><Object><Key></Key></Object></Delete>",
        b"<Delete><Quiet>maybe</Quiet><Object><Key>k</Key></Object></Delete>",
        b"<NotDelete><Object><Key>k</Key></Object></NotDelete>",
        b"<Delete><Object><Key>k</Key></Object>",
    ],
)
def test_malformed_documents(cluster: Cluster, s3: Any, bucket: str, body: bytes) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    status, _, resp = cluster.raw("POST", f"/{bucket}?delete", body=body)
    assert status == 400
    assert etree.fromstring(resp).findtext("Code") == "MalformedXML"
    assert _keys(s3, bucket) == ["k"]


def test_quiet_reports_only_errors(cluster: Cluster, s3: Any, bucket: str) -> None:
    for key in ("a", "b"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    out = s3.delete_objects(
        Bucket=bucket,
        Delete={
            "Quiet": True,
            "Objects": [{"Key": "a"}, {"Key": "b", "VersionId": "3/L4kqtJlcpXroDTDmJ"}],
        },
    )
    assert "Deleted" not in out
    assert out["Errors"] == [
        {
            "Key": "b",
            "VersionId": "3/L4kqtJlcpXroDTDmJ",
            "Code": "NoSuchVersion",
            "Message": "The specified version does not exist.",
        }
    ]
    assert _keys(s3, bucket) == ["b"]


def test_per_key_errors_and_null_versions(cluster: Cluster, s3: Any, bucket: str) -> None:
    for key in ("x", "y", "z"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    long_key = "l" * 1025
    status, root = _post(
        cluster,
        bucket,
        _document(["x", "y", "z", long_key], quiet=False, versions={"x": "null", "y": "v2"}),
    )
    assert status == 200
    assert root.tag == f"{NS}DeleteResult"
    deleted = {
        (d.findtext(f"{NS}Key"), d.findtext(f"{NS}VersionId")) for d in root.iter(f"{NS}Deleted")
    }
    assert deleted == {("x", "null"), ("z", None)}
    errors = {
        e.findtext(f"{NS}Key"): (e.findtext(f"{NS}Code"), e.findtext(f"{NS}VersionId"))
        for e in root.iter(f"{NS}Error")
    }
    assert errors == {"y": ("NoSuchVersion", "v2"), long_key: ("KeyTooLongError", None)}
    assert _keys(s3, bucket) == ["y"]


def test_digests_are_optional_and_checked_when_sent(cluster: Cluster, s3: Any, bucket: str) -> None:
    body = _document(["a"])
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    wrong_md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    wrong_crc = base64.b64encode(zlib.crc32(b"other").to_bytes(4, "big")).decode()
    for headers in ({"Content-MD5": wrong_md5}, {"x-amz-checksum-crc32": wrong_crc}):
        s3.put_object(Bucket=bucket, Key="a", Body=b"x")
        status, root = _post(cluster, bucket, body, headers)
        assert (status, root.findtext("Code")) == (400, "BadDigest"), headers
        assert _keys(s3, bucket) == ["a"]
    for headers in ({}, {"Content-MD5": md5}, {"x-amz-checksum-crc32": crc}):
        s3.put_object(Bucket=bucket, Key="a", Body=b"x")
        status, root = _post(cluster, bucket, body, headers)
        assert status == 200, headers
        assert [d.findtext(f"{NS}Key") for d in root.iter(f"{NS}Deleted")] == ["a"]
        assert _keys(s3, bucket) == []


def test_special_keys(s3: Any, bucket: str) -> None:
    keys = ["a&b<c>", "sp ace", "plus+sign", "é/ü", "dir/", "x%2Fy"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})
    assert sorted(d["Key"] for d in out["Deleted"]) == sorted(keys)
    assert _keys(s3, bucket) == []


def test_duplicate_keys(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="dup", Body=b"x")
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "dup"}, {"Key": "dup"}]})
    assert [d["Key"] for d in out["Deleted"]] == ["dup", "dup"]
    assert _keys(s3, bucket) == []


def test_missing_bucket(s3: Any) -> None:
    with pytest.raises(ClientError) as exc:
        s3.delete_objects(Bucket=f"nope-{uuid.uuid4().hex[:8]}", Delete={"Objects": [{"Key": "k"}]})
    assert exc.value.response["Error"]["Code"] == "NoSuchBucket"


def test_other_users_bucket_is_denied(cluster: Cluster, s3: Any, bucket: str) -> None:
    from tests.conftest import SECOND_USER

    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    other = cluster.client(access_key=SECOND_USER[0], secret_key=SECOND_USER[1])
    with pytest.raises(ClientError) as exc:
        other.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "k"}]})
    assert exc.value.response["Error"]["Code"] == "AccessDenied"
    assert _keys(s3, bucket) == ["k"]


def test_bucket_path_with_trailing_slash(cluster: Cluster, s3: Any, bucket: str) -> None:
    """s3cmd posts to `/bucket/?delete`."""
    s3.put_object(Bucket=bucket, Key="a", Body=b"x")
    body = _document(["a"])
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    status, _, resp = cluster.raw(
        "POST", f"/{bucket}/?delete", body=body, headers={"Content-MD5": md5}
    )
    assert status == 200, resp
    assert [d.findtext(f"{NS}Key") for d in etree.fromstring(resp).iter(f"{NS}Deleted")] == ["a"]
    assert _keys(s3, bucket) == []
