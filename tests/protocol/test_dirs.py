"""Directory semantics that s3fs, rclone and friends build on: `dir/` marker objects,
`a` beside `a/b`, and the small delimited listings they use to tell files, empty
directories and full directories apart."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from botocore.exceptions import ClientError
from lxml import etree

from tests.cluster import Cluster

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def _status(call: Any) -> int:
    try:
        call()
    except ClientError as exc:
        status: int = exc.response["ResponseMetadata"]["HTTPStatusCode"]
        return status
    return 200


def _probe(cluster: Cluster, bucket: str, prefix: str) -> dict[str, Any]:
    """s3fs's probe: `list-type=2&prefix=<p>&delimiter=/&max-keys=2`, parsed from the XML."""
    status, _, body = cluster.raw(
        "GET", f"/{bucket}?list-type=2&prefix={quote(prefix, safe='')}&delimiter=%2F&max-keys=2"
    )
    assert status == 200, body
    root = etree.fromstring(body)

    def text(el: Any, name: str) -> str:
        child = el.find(NS + name)
        assert child is not None, name
        return child.text or ""

    return {
        "KeyCount": int(text(root, "KeyCount")),
        "IsTruncated": text(root, "IsTruncated"),
        "Contents": [text(c, "Key") for c in root.findall(NS + "Contents")],
        "CommonPrefixes": [text(p, "Prefix") for p in root.findall(NS + "CommonPrefixes")],
    }


def _is_empty_dir(probe: dict[str, Any], prefix: str) -> bool:
    """The rule a client applies: the marker itself and nothing else."""
    return probe["Contents"] == [prefix] and not probe["CommonPrefixes"]


def test_directory_marker_object(cluster: Cluster, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="dir/", Body=b"")
    head = s3.head_object(Bucket=bucket, Key="dir/")
    assert head["ContentLength"] == 0
    assert head["ResponseMetadata"]["HTTPHeaders"]["content-length"] == "0"
    status, headers, body = cluster.raw("GET", f"/{bucket}/dir/")
    assert (status, body, headers["content-length"]) == (200, b"", "0")
    top = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["dir/"]
    assert "Contents" not in top and top["KeyCount"] == 1
    inside = s3.list_objects_v2(Bucket=bucket, Prefix="dir/", Delimiter="/")
    assert [(o["Key"], o["Size"]) for o in inside["Contents"]] == [("dir/", 0)]
    assert "CommonPrefixes" not in inside and inside["KeyCount"] == 1
    flat = s3.list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in flat["Contents"]] == ["dir/"]


def test_file_and_directory_of_one_name_coexist(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="a", Body=b"the file")
    s3.put_object(Bucket=bucket, Key="a/b", Body=b"the child")
    assert s3.get_object(Bucket=bucket, Key="a")["Body"].read() == b"the file"
    assert s3.get_object(Bucket=bucket, Key="a/b")["Body"].read() == b"the child"
    top = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [o["Key"] for o in top["Contents"]] == ["a"]
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["a/"]
    v1 = s3.list_objects(Bucket=bucket, Delimiter="/")
    assert [o["Key"] for o in v1["Contents"]] == ["a"]
    assert [p["Prefix"] for p in v1["CommonPrefixes"]] == ["a/"]
    # Deleting the file leaves the directory, and the reverse.
    s3.delete_object(Bucket=bucket, Key="a")
    assert s3.get_object(Bucket=bucket, Key="a/b")["Body"].read() == b"the child"


def test_key_and_key_slash_are_distinct(cluster: Cluster, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="key", Body=b"file")
    s3.put_object(Bucket=bucket, Key="other/", Body=b"")
    assert _status(lambda: s3.head_object(Bucket=bucket, Key="key/")) == 404
    assert _status(lambda: s3.head_object(Bucket=bucket, Key="other")) == 404
    assert cluster.raw("HEAD", f"/{bucket}/key/")[0] == 404
    assert cluster.raw("GET", f"/{bucket}/other")[0] == 404
    assert _status(lambda: s3.head_object(Bucket=bucket, Key="key")) == 200
    assert _status(lambda: s3.head_object(Bucket=bucket, Key="other/")) == 200
    # Writing one never touches the other.
    s3.put_object(Bucket=bucket, Key="key/", Body=b"")
    assert s3.get_object(Bucket=bucket, Key="key")["Body"].read() == b"file"
    s3.delete_object(Bucket=bucket, Key="key/")
    assert s3.get_object(Bucket=bucket, Key="key")["Body"].read() == b"file"


LAYOUT = {
    # name: keys under it (the marker `name/` listed when present)
    "empty/": ["empty/"],
    "one/": ["one/", "one/f"],
    "three/": ["three/", "three/a", "three/b", "three/sub/x"],
    "nomarker1/": ["nomarker1/f"],
    "nomarker3/": ["nomarker3/a", "nomarker3/b", "nomarker3/c"],
    "onlysub/": ["onlysub/", "onlysub/deep/x"],
}


@pytest.fixture(scope="module")
def tree(s3: Any) -> Iterator[str]:
    """One bucket for every probe (read only), removed at the end of the module."""
    bucket = f"dirs-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    for keys in LAYOUT.values():
        for key in keys:
            s3.put_object(Bucket=bucket, Key=key, Body=b"" if key.endswith("/") else b"data")
    # Neighbours a sloppy prefix match would pick up.
    s3.put_object(Bucket=bucket, Key="empty", Body=b"a file named like the dir")
    s3.put_object(Bucket=bucket, Key="empty-not/f", Body=b"x")
    yield bucket
    for obj in s3.list_objects_v2(Bucket=bucket)["Contents"]:
        s3.delete_object(Bucket=bucket, Key=obj["Key"])
    s3.delete_bucket(Bucket=bucket)


@pytest.mark.parametrize(
    "prefix,count,truncated,contents,prefixes",
    [
        ("empty/", 1, "false", ["empty/"], []),
        ("one/", 2, "false", ["one/", "one/f"], []),
        ("three/", 2, "true", ["three/", "three/a"], []),
        ("nomarker1/", 1, "false", ["nomarker1/f"], []),
        ("nomarker3/", 2, "true", ["nomarker3/a", "nomarker3/b"], []),
        ("onlysub/", 2, "false", ["onlysub/"], ["onlysub/deep/"]),
        ("missing/", 0, "false", [], []),
    ],
)
def test_s3fs_probe(
    cluster: Cluster,
    tree: str,
    prefix: str,
    count: int,
    truncated: str,
    contents: list[str],
    prefixes: list[str],
) -> None:
    probe = _probe(cluster, tree, prefix)
    assert probe == {
        "KeyCount": count,
        "IsTruncated": truncated,
        "Contents": contents,
        "CommonPrefixes": prefixes,
    }
    assert _is_empty_dir(probe, prefix) == (prefix == "empty/")


def test_probe_without_trailing_slash_finds_the_directory(cluster: Cluster, tree: str) -> None:
    # `prefix=empty` (no slash): the file `empty`, then the prefixes `empty-not/`, `empty/`.
    status, _, body = cluster.raw("GET", f"/{tree}?list-type=2&prefix=empty&delimiter=%2F")
    assert status == 200
    root = etree.fromstring(body)
    assert [c.findtext(NS + "Key") for c in root.findall(NS + "Contents")] == ["empty"]
    assert [p.findtext(NS + "Prefix") for p in root.findall(NS + "CommonPrefixes")] == [
        "empty-not/",
        "empty/",
    ]


def test_deleting_the_marker_keeps_the_children(s3: Any, bucket: str) -> None:
    for key in ("dir/", "dir/x", "dir/y/z"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"" if key.endswith("/") else key.encode())
    s3.delete_object(Bucket=bucket, Key="dir/")
    assert _status(lambda: s3.head_object(Bucket=bucket, Key="dir/")) == 404
    assert s3.get_object(Bucket=bucket, Key="dir/x")["Body"].read() == b"dir/x"
    assert s3.get_object(Bucket=bucket, Key="dir/y/z")["Body"].read() == b"dir/y/z"
    top = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["dir/"]
    inside = s3.list_objects_v2(Bucket=bucket, Prefix="dir/", Delimiter="/")
    assert [o["Key"] for o in inside["Contents"]] == ["dir/x"]
    assert [p["Prefix"] for p in inside["CommonPrefixes"]] == ["dir/y/"]
    # And deleting a child leaves the marker.
    s3.put_object(Bucket=bucket, Key="dir/", Body=b"")
    s3.delete_object(Bucket=bucket, Key="dir/x")
    assert s3.head_object(Bucket=bucket, Key="dir/")["ContentLength"] == 0
