"""A slow but live write is never mistaken for a dead one: the writing gateway heart-beats
its blob often enough for the configured S3COMPAT_STALE_WRITE_AFTER."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.cluster import Cluster, sign

PIECE = 64 * 1024
PIECES = 8
PAUSE = 1.0  # the body takes PIECES × PAUSE seconds, longer than the staleness window


@pytest.fixture
def impatient(tmp_path: Path) -> Iterator[Cluster]:
    # A write without a heartbeat for 6 s counts as dead, and the janitor looks every 0.5 s.
    cluster = Cluster(tmp_path / "data", env={"S3COMPAT_STALE_WRITE_AFTER": "6"}).start()
    yield cluster
    cluster.stop()


def _slow_body() -> Iterator[bytes]:
    for i in range(PIECES):
        yield bytes([65 + i]) * PIECE
        time.sleep(PAUSE)


def test_a_put_slower_than_the_staleness_window_succeeds(impatient: Cluster) -> None:
    s3 = impatient.client()
    s3.create_bucket(Bucket="slow")
    url = f"{impatient.endpoint}/slow/trickle"
    length = PIECE * PIECES
    headers = sign(impatient, "PUT", url, {"Content-Length": str(length)}, unsigned_payload=True)
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        conn.request("PUT", parts.path, body=_slow_body(), headers=headers)
        response = conn.getresponse()
        status, body = response.status, response.read()
    finally:
        conn.close()
    assert status == 200, body
    data = s3.get_object(Bucket="slow", Key="trickle")["Body"].read()
    assert data == b"".join(bytes([65 + i]) * PIECE for i in range(PIECES))
    assert not impatient.sql("SELECT 1 FROM blobs WHERE state <> 'committed'")
