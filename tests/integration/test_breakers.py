"""Circuit breakers, deadlines and retries on the real cluster: a storage node that hangs
(SIGSTOP) costs requests at most a deadline before its breaker opens, GETs and PUTs keep
succeeding meanwhile (reads rebuild from parity, writes commit with the quorum and route
new chunks around the node), the health report shows the breaker open, and once the node
runs again (SIGCONT) the breaker closes by itself.

Timings are printed (run with -s), never asserted: the machine is shared.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import signal
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.cluster import Cluster, sign, wait_for

MiB = 1 << 20
DEADLINE = 1.0
COOLDOWN = 1.0


@pytest.fixture(scope="module")
def brk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(
        tmp_path_factory.mktemp("breakers"),
        env={
            "S3COMPAT_NODE_DEADLINE": str(DEADLINE),
            "S3COMPAT_BREAKER_COOLDOWN": str(COOLDOWN),
            "S3COMPAT_HEDGE_DELAY": "0.2",
        },
    ).start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def s3(brk: Cluster) -> Any:
    # No client retries: every request must succeed the first time.
    return brk.client(retries={"total_max_attempts": 1})


def health(cluster: Cluster) -> tuple[int, dict[str, Any]]:
    status, _, body = cluster.raw("GET", "/-/health", sign=False)
    report: dict[str, Any] = json.loads(body)
    return status, report


def breaker(cluster: Cluster, node_id: str) -> str:
    state: str = health(cluster)[1]["nodes"][node_id]["breaker"]
    return state


def all_closed(cluster: Cluster) -> bool:
    status, report = health(cluster)
    return status == 200 and all(n["breaker"] == "closed" for n in report["nodes"].values())


@contextmanager
def stopped(cluster: Cluster, node_id: str) -> Iterator[None]:
    pid = cluster.pid(node_id)
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def chunks(cluster: Cluster, bucket: str, key: str) -> list[tuple[str, int | None]]:
    """(node, stored size or None if recorded missing) of the object's chunks, by index."""
    rows = cluster.sql(
        "SELECT c.node_id, c.size FROM objects o JOIN chunks c ON c.blob_id = o.part_blobs[1] "
        "WHERE o.bucket = $1 AND o.key = $2 ORDER BY c.idx",
        bucket,
        key,
    )
    return [(r["node_id"], r["size"]) for r in rows]


def timed(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    start = time.monotonic()
    result = fn(*args, **kwargs)
    print(f"{what}: {time.monotonic() - start:.2f}s")
    return result


def check(s3: Any, bucket: str, objects: dict[str, bytes]) -> None:
    for key, data in objects.items():
        got = timed(f"GET {key}", lambda k=key: s3.get_object(Bucket=bucket, Key=k)["Body"].read())
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), key


def breaker_gauges(cluster: Cluster) -> dict[str, float]:
    """s3compat_node_breaker_state by node, from /-/metrics."""
    with urllib.request.urlopen(cluster.endpoint + "/-/metrics", timeout=10) as resp:
        text = resp.read().decode()
    found = re.findall(r's3compat_node_breaker_state\{node="([^"]+)"\} (\S+)', text)
    return {node: float(value) for node, value in found}


def test_health_shows_every_breaker_closed(brk: Cluster) -> None:
    status, report = health(brk)
    assert status == 200
    assert set(breaker_gauges(brk).values()) == {0.0}
    assert report["status"] == "ok"
    assert len(report["nodes"]) == 6
    for node in report["nodes"].values():
        assert node["status"] == "ok"
        assert node["breaker"] == "closed"
        assert {"used_bytes", "free_bytes", "chunk_count"} <= set(node)


def test_hung_node_opens_its_breaker_and_closes_it_after_sigcont(brk: Cluster, s3: Any) -> None:
    s3.create_bucket(Bucket="brk")
    before = {f"before-{n}": os.urandom(n) for n in (1000, 3 * MiB + 5)}
    for key, data in before.items():
        s3.put_object(Bucket="brk", Key=key, Body=data)
    victim = "node3"
    during: dict[str, bytes] = {}

    def put_and_read() -> str:
        key = f"during-{len(during)}"
        data = os.urandom(2 * MiB + len(during))
        timed(f"PUT {key}", s3.put_object, Bucket="brk", Key=key, Body=data)
        during[key] = data
        check(s3, "brk", {**before, key: data})
        return breaker(brk, victim)

    with stopped(brk, victim):
        # Calls to the hung node fail at their deadline (PUTs lose its chunk, health checks
        # time out) until enough have failed in a row: then its breaker opens.
        assert wait_for(lambda: put_and_read() == "open", timeout=120, interval=0)
        status, report = health(brk)
        assert status == 503
        assert report["nodes"][victim]["status"] == "unavailable"
        for node_id, node in report["nodes"].items():
            if node_id != victim:
                assert (node["status"], node["breaker"]) == ("ok", "closed"), node_id
        # With the breaker open, new chunks go to the healthy nodes first: the hung node
        # gets the last (parity) chunk, which fails at once and is recorded missing.
        for n in range(3):
            key = f"open-{n}"
            data = os.urandom(MiB + n)
            timed(f"PUT {key}", s3.put_object, Bucket="brk", Key=key, Body=data)
            during[key] = data
            placed = chunks(brk, "brk", key)
            assert placed[-1] == (victim, None)
            assert all(size is not None for _, size in placed[:-1])
            assert victim not in [node for node, _ in placed[:-1]]
        check(s3, "brk", {**before, **during})
        assert breaker(brk, victim) in ("open", "half-open")
        gauge = breaker_gauges(brk)
        assert gauge[victim] in (1.0, 2.0)  # half-open or open
        assert all(v == 0.0 for n, v in gauge.items() if n != victim)
    # Running again: the next trial after the cool-down closes the breaker (the health
    # checks polled here are such trials).
    assert wait_for(lambda: breaker(brk, victim) == "closed", timeout=60)
    assert wait_for(lambda: all_closed(brk), timeout=30)
    check(s3, "brk", {**before, **during})
    data = os.urandom(MiB)
    s3.put_object(Bucket="brk", Key="after", Body=data)
    placed = chunks(brk, "brk", "after")
    assert victim in [node for node, _ in placed]
    assert all(size is not None for _, size in placed)
    check(s3, "brk", {"after": data})


def test_node_hung_in_the_middle_of_a_write(brk: Cluster, s3: Any) -> None:
    """The node stops while chunks stream to it: its writes stall on flow control, reach
    the deadline, and the PUT commits with the other five chunks."""
    assert wait_for(lambda: all_closed(brk), timeout=60)
    s3.create_bucket(Bucket="brk-mid")
    data = os.urandom(24 * MiB)
    url = f"{brk.endpoint}/brk-mid/big"
    headers = sign(brk, "PUT", url, {"Content-Length": str(len(data))}, unsigned_payload=True)
    victims: list[str] = []

    def body() -> Iterator[bytes]:
        for at in range(0, len(data), MiB):
            if at == 4 * MiB:
                rows = wait_for(
                    lambda: brk.sql(
                        "SELECT c.node_id FROM blobs b JOIN chunks c USING (blob_id) "
                        "WHERE b.state = 'writing' AND c.idx = 0"
                    )
                )
                victims.append(rows[0]["node_id"])
                os.kill(brk.pid(victims[0]), signal.SIGSTOP)
            yield data[at : at + MiB]

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        start = time.monotonic()
        conn.request("PUT", parts.path, body=body(), headers=headers)
        response = conn.getresponse()
        answer = response.read()
        print(f"PUT with a node hung mid-write: {time.monotonic() - start:.2f}s")
        assert response.status == 200, answer
        check(s3, "brk-mid", {"big": data})
    finally:
        conn.close()
        for node_id in victims:
            os.kill(brk.pid(node_id), signal.SIGCONT)
    [victim] = victims
    placed = chunks(brk, "brk-mid", "big")
    assert placed[0] == (victim, None)
    assert all(size is not None for _, size in placed[1:])
    assert wait_for(lambda: all_closed(brk), timeout=60)
    check(s3, "brk-mid", {"big": data})
