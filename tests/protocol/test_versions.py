"""ListObjectVersions on unversioned buckets (each object is its one `null` version), and
the version-aware calls backup tools make to empty a bucket."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote, unquote_plus

import pytest
from botocore.exceptions import ClientError
from lxml import etree

from tests.cluster import Cluster

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
KEYS = ["a", "b/1", "b/2", "c", "d/x/y", "e", "f"]


def _error(body: bytes) -> dict[str, str]:
    root = etree.fromstring(body)
    assert root.tag == "Error"
    return {child.tag: child.text or "" for child in root}


def _text(el: Any, name: str) -> str | None:
    child = el.find(NS + name)
    return None if child is None else (child.text or "")


def _list(cluster: Cluster, bucket: str, query: str = "") -> Any:
    status, headers, body = cluster.raw("GET", f"/{bucket}?versions{'&' + query if query else ''}")
    assert status == 200, body
    assert headers["content-type"] == "application/xml"
    root = etree.fromstring(body)
    assert root.tag == NS + "ListVersionsResult"
    assert root.find(NS + "DeleteMarker") is None
    return root


def _keys(root: Any) -> list[str]:
    return [_text(v, "Key") or "" for v in root.findall(NS + "Version")]


def _prefixes(root: Any) -> list[str]:
    return [_text(p, "Prefix") or "" for p in root.findall(NS + "CommonPrefixes")]


@pytest.fixture
def filled(s3: Any, bucket: str) -> str:
    for key in KEYS:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode() * 3)
    return bucket


def test_every_object_is_its_null_version(cluster: Cluster, s3: Any, filled: str) -> None:
    root = _list(cluster, filled)
    assert _text(root, "Name") == filled
    assert _text(root, "IsTruncated") == "false"
    assert _text(root, "NextKeyMarker") is None and _text(root, "NextVersionIdMarker") is None
    versions = root.findall(NS + "Version")
    assert [_text(v, "Key") for v in versions] == KEYS
    for v in versions:
        key = _text(v, "Key")
        head = s3.head_object(Bucket=filled, Key=key)
        assert _text(v, "VersionId") == "null"
        assert _text(v, "IsLatest") == "true"
        assert _text(v, "ETag") == head["ETag"]
        assert _text(v, "Size") == str(len(key or "") * 3)
        assert _text(v, "StorageClass") == "STANDARD"
        assert _text(v, "LastModified")
        owner = v.find(NS + "Owner")
        assert owner is not None and _text(owner, "ID") == "admin"
    reply = s3.list_object_versions(Bucket=filled)
    assert "DeleteMarkers" not in reply
    assert [(v["Key"], v["VersionId"], v["IsLatest"]) for v in reply["Versions"]] == [
        (k, "null", True) for k in KEYS
    ]


def test_paging_by_key_and_version_markers(cluster: Cluster, filled: str) -> None:
    seen: list[str] = []
    query = "max-keys=2"
    pages = 0
    while True:
        root = _list(cluster, filled, query)
        pages += 1
        assert _text(root, "MaxKeys") == "2"
        page = _keys(root)
        assert len(page) <= 2
        seen += page
        if _text(root, "IsTruncated") == "false":
            assert _text(root, "NextKeyMarker") is None
            break
        assert _text(root, "IsTruncated") == "true"
        assert len(page) == 2
        next_key, next_version = _text(root, "NextKeyMarker"), _text(root, "NextVersionIdMarker")
        assert next_key == page[-1]
        assert next_version == "null"
        query = (
            f"max-keys=2&key-marker={quote(next_key or '', safe='')}"
            f"&version-id-marker={next_version}"
        )
        assert _text(_list(cluster, filled, query), "KeyMarker") == next_key
        assert pages < 10
    assert seen == KEYS
    assert pages == 4


def test_boto3_paginator_covers_every_key_once(s3: Any, filled: str) -> None:
    pages = list(
        s3.get_paginator("list_object_versions").paginate(
            Bucket=filled, PaginationConfig={"PageSize": 2}
        )
    )
    assert len(pages) == 4
    keys = [v["Key"] for page in pages for v in page.get("Versions", [])]
    assert keys == KEYS
    assert all(v["VersionId"] == "null" for page in pages for v in page["Versions"])


def test_key_marker_alone_resumes_after_that_key(cluster: Cluster, filled: str) -> None:
    assert _keys(_list(cluster, filled, "key-marker=c")) == ["d/x/y", "e", "f"]
    assert _keys(_list(cluster, filled, "key-marker=c&version-id-marker=null")) == [
        "d/x/y",
        "e",
        "f",
    ]
    # A marker that is not a key: resume at the next key after it.
    assert _keys(_list(cluster, filled, "key-marker=b%2F15")) == ["b/2", "c", "d/x/y", "e", "f"]
    assert _keys(_list(cluster, filled, "key-marker=zzz")) == []


def test_bad_version_id_markers(cluster: Cluster, filled: str) -> None:
    for query in (
        "version-id-marker=null",
        "version-id-marker=3HL4kqtJlcpXroDTDmJ",
        "key-marker=c&version-id-marker=3HL4kqtJlcpXroDTDmJ",
    ):
        status, _, body = cluster.raw("GET", f"/{filled}?versions&{query}")
        assert (status, _error(body)["Code"]) == (400, "InvalidArgument"), query


def test_prefix_and_delimiter(cluster: Cluster, s3: Any, filled: str) -> None:
    root = _list(cluster, filled, "delimiter=%2F")
    assert _text(root, "Delimiter") == "/"
    assert _keys(root) == ["a", "c", "e", "f"]
    assert _prefixes(root) == ["b/", "d/"]
    root = _list(cluster, filled, "prefix=b%2F&delimiter=%2F")
    assert _text(root, "Prefix") == "b/"
    assert (_keys(root), _prefixes(root)) == (["b/1", "b/2"], [])
    root = _list(cluster, filled, "prefix=d%2F&delimiter=%2F")
    assert (_keys(root), _prefixes(root)) == ([], ["d/x/"])
    reply = s3.list_object_versions(Bucket=filled, Prefix="d/")
    assert [v["Key"] for v in reply["Versions"]] == ["d/x/y"]
    # Paging over a mix of keys and common prefixes still covers each entry once.
    entries: list[str] = []
    query = "delimiter=%2F&max-keys=1"
    for _ in range(10):
        root = _list(cluster, filled, query)
        entries += _keys(root) + _prefixes(root)
        if _text(root, "IsTruncated") == "false":
            break
        marker = _text(root, "NextKeyMarker") or ""
        query = f"delimiter=%2F&max-keys=1&key-marker={quote(marker, safe='')}"
        if _text(root, "NextVersionIdMarker") is not None:
            query += f"&version-id-marker={_text(root, 'NextVersionIdMarker')}"
    assert entries == ["a", "b/", "c", "d/", "e", "f"]


def test_encoding_type_url(cluster: Cluster, s3: Any, bucket: str) -> None:
    keys = ["dir one/ü+x", "plain", "x&<y>"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    root = _list(cluster, bucket, "encoding-type=url")
    assert _text(root, "EncodingType") == "url"
    raw = _keys(root)
    assert [unquote_plus(k) for k in raw] == keys
    for k in raw:
        assert k.isascii() and " " not in k and "+" not in k and "&" not in k
    root = _list(cluster, bucket, "encoding-type=url&delimiter=%2F")
    assert [unquote_plus(p) for p in _prefixes(root)] == ["dir one/"]
    # boto3 asks for url encoding and decodes it.
    reply = s3.list_object_versions(Bucket=bucket)
    assert [v["Key"] for v in reply["Versions"]] == keys
    status, _, body = cluster.raw("GET", f"/{bucket}?versions&encoding-type=base64")
    assert (status, _error(body)["Code"]) == (400, "InvalidArgument")


def test_empty_and_missing_buckets(cluster: Cluster, s3: Any, bucket: str) -> None:
    root = _list(cluster, bucket)
    assert _keys(root) == [] and _prefixes(root) == []
    assert _text(root, "IsTruncated") == "false"
    reply = s3.list_object_versions(Bucket=bucket)
    assert "Versions" not in reply and "DeleteMarkers" not in reply
    status, _, body = cluster.raw("GET", f"/missing-{uuid.uuid4().hex[:12]}?versions")
    assert (status, _error(body)["Code"]) == (404, "NoSuchBucket")


def test_empty_a_bucket_by_versions(s3: Any) -> None:
    """What backup tools (restic, rclone --s3-versions, aws s3 rb) do before deleting."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    keys = [f"k{i:02d}" for i in range(12)] + ["sub/dir/key"]
    for key in keys:
        s3.put_object(Bucket=name, Key=key, Body=b"data")
    to_delete = [
        {"Key": v["Key"], "VersionId": v["VersionId"]}
        for page in s3.get_paginator("list_object_versions").paginate(
            Bucket=name, PaginationConfig={"PageSize": 5}
        )
        for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
    ]
    assert sorted(d["Key"] for d in to_delete) == sorted(keys)
    reply = s3.delete_objects(Bucket=name, Delete={"Objects": to_delete})
    assert "Errors" not in reply
    assert sorted((d["Key"], d.get("VersionId")) for d in reply["Deleted"]) == sorted(
        (k, "null") for k in keys
    )
    assert "Versions" not in s3.list_object_versions(Bucket=name)
    s3.delete_bucket(Bucket=name)
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket=name)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_delete_objects_with_other_version_ids(s3: Any, bucket: str) -> None:
    for key in ("a", "b", "c"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    reply = s3.delete_objects(
        Bucket=bucket,
        Delete={
            "Objects": [
                {"Key": "a", "VersionId": "null"},
                {"Key": "b", "VersionId": "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"},
                {"Key": "c"},
            ]
        },
    )
    deleted = sorted((d["Key"], d.get("VersionId")) for d in reply["Deleted"])
    assert deleted == [("a", "null"), ("c", None)]
    [error] = reply["Errors"]
    assert (error["Key"], error["Code"]) == ("b", "NoSuchVersion")
    assert error.get("VersionId") == "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert listed == ["b"]


def test_get_and_head_by_version_id(cluster: Cluster, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"content")
    for method in ("GET", "HEAD"):
        status, headers, _ = cluster.raw(method, f"/{bucket}/k?versionId=null")
        assert status == 200, method
        assert "x-amz-version-id" not in headers
    status, _, body = cluster.raw("GET", f"/{bucket}/k?versionId=null")
    assert body == b"content"
    status, _, body = cluster.raw("GET", f"/{bucket}/k?versionId=3HL4kqtJlcpXroDTDmJ")
    assert (status, _error(body)["Code"]) == (400, "InvalidArgument")
    status, _, body = cluster.raw("HEAD", f"/{bucket}/k?versionId=3HL4kqtJlcpXroDTDmJ")
    assert (status, body) == (400, b"")
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="k", VersionId="3HL4kqtJlcpXroDTDmJ")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_quiet_delete_objects_reports_only_errors(s3: Any, bucket: str) -> None:
    for key in ("a", "b"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    reply = s3.delete_objects(
        Bucket=bucket,
        Delete={
            "Objects": [{"Key": "a", "VersionId": "null"}, {"Key": "b", "VersionId": "v2"}],
            "Quiet": True,
        },
    )
    assert "Deleted" not in reply
    assert [(e["Key"], e["Code"]) for e in reply["Errors"]] == [("b", "NoSuchVersion")]
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert listed == ["b"]
