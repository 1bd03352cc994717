"""After every kind of interruption, the chunks on disk are exactly those that committed
metadata references: a gateway killed with -9 mid-PUT, a client killed mid-UploadPart, a
node that is down when its chunks should be deleted."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.cluster import Cluster, ExtraGateway, sign, wait_for

MiB = 1 << 20


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster that declares writes dead after 3 s without heartbeat and gives nodes 2 s."""
    c = Cluster(
        tmp_path_factory.mktemp("interruptions"),
        env={
            "S3COMPAT_STALE_WRITE_AFTER": "3",
            "S3COMPAT_NODE_DEADLINE": "2",
            "S3COMPAT_JANITOR_RETRY": "1",
            "S3COMPAT_BODY_IDLE_TIMEOUT": "2",
        },
    ).start()
    yield c
    c.stop()


def _temp_files(cluster: Cluster) -> list[Path]:
    return list((cluster.data_dir / "nodes").glob("*/tmp/*"))


def _start_put(endpoint: str, cluster: Cluster, path: str, length: int, send: int) -> socket.socket:
    """A signed PUT whose client sends `send` of `length` bytes and then stalls."""
    url = endpoint + path
    headers = sign(cluster, "PUT", url, {"Content-Length": str(length)}, unsigned_payload=True)
    parts = urlsplit(url)
    head = [
        f"PUT {parts.path}{'?' + parts.query if parts.query else ''} HTTP/1.1",
        f"Host: {parts.netloc}",
    ]
    head += [f"{k}: {v}" for k, v in headers.items()]
    sock = socket.create_connection((parts.hostname, parts.port))
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    piece = b"q" * MiB
    for _ in range(send // MiB):
        sock.sendall(piece)
    return sock


def test_gateway_killed_mid_put(quick: Cluster) -> None:
    s3 = quick.client()
    s3.create_bucket(Bucket="killed-gateway")
    s3.put_object(Bucket="killed-gateway", Key="keep", Body=b"k" * MiB)
    other = ExtraGateway(quick).start()
    sock = None
    try:
        sock = _start_put(other.endpoint, quick, "/killed-gateway/partial", 30 * MiB, 14 * MiB)
        # Bytes reached the nodes: a writing blob exists and temp files are growing.
        assert wait_for(lambda: quick.sql("SELECT 1 FROM blobs WHERE state = 'writing'"))
        assert wait_for(lambda: _temp_files(quick))
        other.kill()
    finally:
        other.kill()
        if sock is not None:
            sock.close()
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket="killed-gateway", Key="partial")
    # The surviving gateway's janitor notices the stale heartbeat and collects everything.
    assert wait_for(lambda: quick.settled(), timeout=60), (
        quick.chunk_files(),
        quick.referenced_chunks(),
        _temp_files(quick),
    )
    assert s3.get_object(Bucket="killed-gateway", Key="keep")["Body"].read() == b"k" * MiB


def test_client_killed_mid_upload_part(quick: Cluster) -> None:
    s3 = quick.client()
    s3.create_bucket(Bucket="killed-client")
    upload = s3.create_multipart_upload(Bucket="killed-client", Key="big")["UploadId"]
    done = s3.upload_part(
        Bucket="killed-client", Key="big", UploadId=upload, PartNumber=1, Body=b"1" * (5 * MiB)
    )
    sock = _start_put(
        quick.endpoint,
        quick,
        f"/killed-client/big?partNumber=2&uploadId={upload}",
        20 * MiB,
        13 * MiB,
    )
    assert wait_for(lambda: quick.sql("SELECT 1 FROM blobs WHERE state = 'writing'"))
    sock.close()  # the client dies
    assert wait_for(lambda: quick.settled(), timeout=60)
    parts = s3.list_parts(Bucket="killed-client", Key="big", UploadId=upload)["Parts"]
    assert [(p["PartNumber"], p["ETag"]) for p in parts] == [(1, done["ETag"])]
    # The upload carries on as if nothing happened.
    second = s3.upload_part(
        Bucket="killed-client", Key="big", UploadId=upload, PartNumber=2, Body=b"2" * 10
    )
    s3.complete_multipart_upload(
        Bucket="killed-client",
        Key="big",
        UploadId=upload,
        MultipartUpload={
            "Parts": [
                {"PartNumber": 1, "ETag": done["ETag"]},
                {"PartNumber": 2, "ETag": second["ETag"]},
            ]
        },
    )
    body = s3.get_object(Bucket="killed-client", Key="big")["Body"].read()
    assert body == b"1" * (5 * MiB) + b"2" * 10
    assert wait_for(lambda: quick.settled())


def test_deletion_on_a_down_node_is_retried(quick: Cluster) -> None:
    s3: Any = quick.client()
    s3.create_bucket(Bucket="node-down")
    s3.put_object(Bucket="node-down", Key="doomed", Body=os.urandom(2 * MiB))
    [row] = quick.sql(
        "SELECT part_blobs[1] AS b FROM objects WHERE bucket = 'node-down' AND key = 'doomed'"
    )
    blob = row["b"]
    victim = quick.sql("SELECT node_id FROM chunks WHERE blob_id = $1 AND idx = 0", blob)[0][
        "node_id"
    ]
    victim_chunk = f"{blob.hex}-0"
    pid = quick.pid(victim)
    os.kill(pid, signal.SIGSTOP)  # the node hangs: calls to it reach their deadline
    try:
        s3.delete_object(Bucket="node-down", Key="doomed")
        # Every other chunk goes; the one on the hung node stays, and so do its rows.
        assert wait_for(
            lambda: (
                {r["idx"] for r in quick.sql("SELECT idx FROM chunks WHERE blob_id = $1", blob)}
                == {0}
            ),
            timeout=60,
        )
        assert quick.sql("SELECT state FROM blobs WHERE blob_id = $1", blob)[0]["state"] == (
            "deleting"
        )
        assert victim_chunk in quick.chunk_files()[victim]
    finally:
        os.kill(pid, signal.SIGCONT)
    # Once the node answers again the janitor's retry removes the last chunk and the blob.
    assert wait_for(lambda: victim_chunk not in quick.chunk_files()[victim], timeout=60)
    assert wait_for(lambda: not quick.sql("SELECT 1 FROM blobs WHERE blob_id = $1", blob))
    assert wait_for(lambda: quick.settled())


def test_silent_body_gets_request_timeout(quick: Cluster) -> None:
    """Slowloris: a client that stops sending mid-body is cut off, and nothing is stored."""
    s3 = quick.client()
    s3.create_bucket(Bucket="slow-client")
    sock = _start_put(quick.endpoint, quick, "/slow-client/slow", 10 * MiB, 3 * MiB)
    try:
        sock.settimeout(30)
        reply = b""
        while b"\r\n\r\n" not in reply:
            piece = sock.recv(65536)
            if not piece:
                break
            reply += piece
        head, _, rest = reply.partition(b"\r\n\r\n")
        while b"</Error>" not in rest:
            piece = sock.recv(65536)
            if not piece:
                break
            rest += piece
    finally:
        sock.close()
    assert head.startswith(b"HTTP/1.1 400")
    assert b"<Code>RequestTimeout</Code>" in rest
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket="slow-client", Key="slow")
    assert wait_for(lambda: quick.settled(), timeout=60)


def test_unreachable_nodes_are_service_unavailable(quick: Cluster) -> None:
    """Three hung nodes of a blob's six are one more than 4+2 can lose: the GET fails before
    any header with 503 ServiceUnavailable, never with wrong bytes; with two it is served."""
    s3: Any = quick.client(retries={"total_max_attempts": 1})
    s3.create_bucket(Bucket="node-hung")
    data = os.urandom(MiB)
    s3.put_object(Bucket="node-hung", Key="k", Body=data)
    [row] = quick.sql(
        "SELECT part_blobs[1] AS b FROM objects WHERE bucket = 'node-hung' AND key = 'k'"
    )
    nodes = [
        r["node_id"]
        for r in quick.sql("SELECT node_id FROM chunks WHERE blob_id = $1 ORDER BY idx", row["b"])
    ]
    pids = [quick.pid(n) for n in nodes[:3]]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        status, _, body = quick.raw("GET", "/node-hung/k")
        assert status == 503
        assert b"<Code>ServiceUnavailable</Code>" in body
        os.kill(pids[0], signal.SIGCONT)
        assert s3.get_object(Bucket="node-hung", Key="k")["Body"].read() == data
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    assert s3.get_object(Bucket="node-hung", Key="k")["Body"].read() == data
