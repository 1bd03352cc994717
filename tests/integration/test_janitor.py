"""Interrupted writes leave nothing visible, and their chunks are collected."""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.cluster import Cluster, sign, wait_for

MiB = 1 << 20


def _signed_put_head(cluster: Cluster, path: str, length: int) -> bytes:
    url = cluster.endpoint + path
    headers = sign(cluster, "PUT", url, {"Content-Length": str(length)}, unsigned_payload=True)
    lines = [f"PUT {path} HTTP/1.1", f"Host: {urlsplit(url).netloc}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _temp_files(cluster: Cluster) -> list[str]:
    return [p.name for p in (cluster.data_dir / "nodes").glob("*/tmp/*")]


def _disk_matches_metadata(cluster: Cluster) -> bool:
    on_disk = {n: ids for n, ids in cluster.chunk_files().items() if ids}
    referenced = {n: ids for n, ids in cluster.referenced_chunks().items() if ids}
    return on_disk == referenced


def test_client_disconnect_mid_put_leaves_no_object_and_no_chunks(
    cluster: Cluster, s3: Any, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="keep", Body=b"kept")
    assert wait_for(lambda: _disk_matches_metadata(cluster))
    before = cluster.sql("SELECT count(*) AS n FROM blobs")[0]["n"]

    parts = urlsplit(cluster.endpoint)
    sock = socket.create_connection((parts.hostname, parts.port))
    sock.sendall(_signed_put_head(cluster, f"/{bucket}/partial", 20 * MiB))
    sent = 0
    piece = b"z" * MiB
    while sent < 13 * MiB:  # several full segments reach the nodes, then the client dies
        sock.sendall(piece)
        sent += len(piece)
    # Wait until the gateway has begun storing (a 'writing' blob exists), then vanish.
    assert wait_for(
        lambda: cluster.sql("SELECT count(*) AS n FROM blobs")[0]["n"] > before, timeout=20
    )
    # The bytes reached the nodes (still temp files: a chunk becomes visible only at finish).
    assert wait_for(lambda: _temp_files(cluster), timeout=20)
    sock.close()

    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=bucket, Key="partial")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["keep"]
    assert wait_for(lambda: not cluster.sql("SELECT 1 FROM blobs WHERE state <> 'committed'")), (
        "the aborted blob was not collected"
    )
    assert wait_for(lambda: _disk_matches_metadata(cluster)), (
        cluster.chunk_files(),
        cluster.referenced_chunks(),
    )
    assert not _temp_files(cluster)


def test_deleted_objects_chunks_are_collected(cluster: Cluster, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="doomed", Body=b"d" * (2 * MiB))
    [row] = cluster.sql(
        "SELECT part_blobs[1] AS b FROM objects WHERE bucket = $1 AND key = 'doomed'", bucket
    )
    ids = {f"{row['b'].hex}-{i}" for i in range(6)}
    assert ids <= set().union(*cluster.chunk_files().values())
    s3.delete_object(Bucket=bucket, Key="doomed")
    s3.delete_object(Bucket=bucket, Key="doomed")  # idempotent
    assert wait_for(lambda: not (ids & set().union(*cluster.chunk_files().values())))
    assert wait_for(lambda: _disk_matches_metadata(cluster))
