"""Object round trips through the real gateway, nodes and PostgreSQL."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest

from s3compat.core.layout import DEFAULT_FRAGMENT_SIZE
from s3compat.core.ring import Ring
from tests.cluster import Cluster, wait_for

MiB = 1 << 20


@pytest.mark.parametrize("size", [0, 1, 5, 6, 7, MiB + 3, 100 * MiB])
def test_round_trip(s3: Any, bucket: str, size: int) -> None:
    data = os.urandom(size)
    put = s3.put_object(Bucket=bucket, Key=f"obj-{size}", Body=data)
    assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key=f"obj-{size}")
    body = got["Body"].read()
    assert got["ContentLength"] == size
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest()
    head = s3.head_object(Bucket=bucket, Key=f"obj-{size}")
    assert head["ContentLength"] == size
    assert head["ETag"] == put["ETag"]


def test_ranges_cross_fragment_and_segment_boundaries(s3: Any, bucket: str) -> None:
    # Default layout: k = 4 fragments of F bytes, segments of 4F. Six segments and 5 bytes:
    # the last segment short (5 bytes, padded across the four data fragments).
    frag = DEFAULT_FRAGMENT_SIZE
    seg = 4 * frag
    size = 6 * seg + 5
    data = os.urandom(size)
    s3.put_object(Bucket=bucket, Key="big", Body=data)
    ranges = [
        (0, 0),
        (frag - 1, frag),  # fragment (chunk) boundary inside segment 0
        (seg - 3, seg + 2),  # segment boundary
        (frag - 10, 3 * frag + 10),  # several fragments
        (seg - 1, 2 * seg),  # a whole segment and a bit on each side
        (6 * seg, size - 1),  # the short last segment
        (size - 1, size - 1),
        (0, size - 1),
        (5 * frag + 17, 7 * frag + 17),
    ]
    for first, last in ranges:
        got = s3.get_object(Bucket=bucket, Key="big", Range=f"bytes={first}-{last}")
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["ContentRange"] == f"bytes {first}-{last}/{size}"
        assert got["Body"].read() == data[first : last + 1], (first, last)
    got = s3.get_object(Bucket=bucket, Key="big", Range="bytes=-7")
    assert got["Body"].read() == data[-7:]
    got = s3.get_object(Bucket=bucket, Key="big", Range=f"bytes={size - 3}-")
    assert got["Body"].read() == data[-3:]


def test_chunks_sit_on_the_six_nodes_the_ring_names(cluster: Cluster, s3: Any, bucket: str) -> None:
    data = os.urandom(MiB + 11)  # under one 2 MiB segment
    s3.put_object(Bucket=bucket, Key="placed", Body=data)
    [row] = cluster.sql(
        "SELECT part_blobs[1] AS blob_id FROM objects WHERE bucket = $1 AND key = $2",
        bucket,
        "placed",
    )
    blob_id = row["blob_id"]
    chunks = cluster.sql(
        "SELECT idx, node_id, size FROM chunks WHERE blob_id = $1 ORDER BY idx", blob_id
    )
    nodes = [r["node_id"] for r in cluster.sql("SELECT node_id FROM nodes")]
    expected = Ring(nodes).nodes_for(blob_id.hex, 6)
    assert [c["node_id"] for c in chunks] == expected
    assert len(set(expected)) == 6
    on_disk = cluster.chunk_files()
    for c in chunks:
        cid = f"{blob_id.hex}-{c['idx']}"
        assert cid in on_disk[c["node_id"]]
        holders = [n for n, ids in on_disk.items() if cid in ids]
        assert holders == [c["node_id"]]
        # One short segment (k=4, m=2): every chunk holds the coder's 80-byte header and a
        # quarter of the data, rounded up.
        assert c["size"] == 80 + -(-len(data) // 4)


def test_overwrite_is_atomic_and_old_chunks_are_collected(
    cluster: Cluster, s3: Any, bucket: str
) -> None:
    first, second = os.urandom(2 * MiB), os.urandom(MiB + 1)
    s3.put_object(Bucket=bucket, Key="k", Body=first)
    [old] = cluster.sql(
        "SELECT part_blobs[1] AS b FROM objects WHERE bucket = $1 AND key = 'k'", bucket
    )
    s3.put_object(Bucket=bucket, Key="k", Body=second)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == second
    old_ids = {f"{old['b'].hex}-{i}" for i in range(6)}

    def gone() -> bool:
        present = set().union(*cluster.chunk_files().values())
        return not (old_ids & present)

    assert wait_for(gone), "the replaced blob's chunks were not collected"
    assert not cluster.sql("SELECT 1 FROM blobs WHERE blob_id = $1", old["b"])


def test_metadata_headers_round_trip(s3: Any, bucket: str) -> None:
    s3.put_object(
        Bucket=bucket,
        Key="meta",
        Body=b"x",
        ContentType="text/plain; charset=utf-8",
        ContentDisposition='attachment; filename="a b.txt"',
        ContentEncoding="identity",
        ContentLanguage="en-GB",
        CacheControl="max-age=60",
        Expires="Wed, 21 Oct 2037 07:28:00 GMT",
        Metadata={"mtime": "1700000000.5", "Mixed-Case": "Value With Spaces"},
    )
    for resp in (
        s3.head_object(Bucket=bucket, Key="meta"),
        s3.get_object(Bucket=bucket, Key="meta"),
    ):
        assert resp["ContentType"] == "text/plain; charset=utf-8"
        assert resp["ContentDisposition"] == 'attachment; filename="a b.txt"'
        assert resp["ContentEncoding"] == "identity"
        assert resp["ContentLanguage"] == "en-GB"
        assert resp["CacheControl"] == "max-age=60"
        assert resp["ResponseMetadata"]["HTTPHeaders"]["expires"] == "Wed, 21 Oct 2037 07:28:00 GMT"
        assert resp["Metadata"] == {"mtime": "1700000000.5", "mixed-case": "Value With Spaces"}
        assert resp["AcceptRanges"] == "bytes"


KEYS = [
    "a",
    "a/b",
    "a/",
    "dir//double",
    "with space",
    "plus+sign",
    "percent%20literal",
    "dollar$sign",
    "unicode-€-ü-日本",
    "trailing/",
    "../../etc/passwd",
    "x" * 1024,
    "é" * 512,
]


@pytest.mark.parametrize("key", KEYS, ids=range(len(KEYS)))
def test_keys_round_trip_exactly(cluster: Cluster, s3: Any, bucket: str, key: str) -> None:
    body = key.encode()[:64]
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [o["Key"] for o in listed] == [key]
    # Nothing is written outside the node data directories, whatever the key says.
    assert not (cluster.data_dir.parent / "etc").exists()
