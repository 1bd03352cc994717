"""Reed–Solomon 4+2 on the real cluster: any two of a blob's six chunks can be lost, hung,
or corrupted and every byte still comes back; a write commits with five chunks stored and
refuses (503 SlowDown) with four; blobs written with the plain split still read.

Nodes are lost the ways a disk or process fails: chunk files deleted or damaged, or the
node process stopped (SIGSTOP: it hangs, which the reader outruns with hedged reads).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from s3compat.core.layout import RS_4_2, BlobLayout
from tests.cluster import Cluster, ExtraGateway, stopped, wait_for

MiB = 1 << 20
SIZES = [1, 1000, 4 * MiB, 9 * MiB + 7]


@pytest.fixture(scope="module")
def ec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The default codec (k=4, m=2), nodes given 2 s per call, hedging after 0.2 s."""
    c = Cluster(
        tmp_path_factory.mktemp("erasure"),
        env={"S3COMPAT_NODE_DEADLINE": "2", "S3COMPAT_HEDGE_DELAY": "0.2"},
    ).start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def s3(ec: Cluster) -> Any:
    return ec.client(retries={"total_max_attempts": 1})  # no client retries at all


@pytest.fixture(scope="module")
def stored(ec: Cluster, s3: Any) -> dict[str, bytes]:
    s3.create_bucket(Bucket="ec-data")
    objects = {f"o{n}": os.urandom(n) for n in SIZES}
    for key, data in objects.items():
        s3.put_object(Bucket="ec-data", Key=key, Body=data)
    return objects


@pytest.fixture(autouse=True)
def healed(ec: Cluster) -> Iterator[None]:
    """Reads mark the damage each test does for repair; every test starts and ends with
    the janitor's repairs done, so damage never adds up across tests."""
    yield
    assert wait_for(lambda: not ec.sql("SELECT 1 FROM chunks WHERE size IS NULL"), timeout=60)


def _blob(ec: Cluster, key: str) -> Any:
    [row] = ec.sql(
        "SELECT part_blobs[1] AS b FROM objects WHERE bucket = 'ec-data' AND key = $1", key
    )
    return row["b"]


def _chunk_nodes(ec: Cluster, blob: Any) -> list[str]:
    rows = ec.sql("SELECT node_id FROM chunks WHERE blob_id = $1 ORDER BY idx", blob)
    return [r["node_id"] for r in rows]


def _chunk_file(ec: Cluster, blob: Any, index: int) -> Path:
    node = _chunk_nodes(ec, blob)[index]
    [path] = (ec.node_dir(node) / "chunks").rglob(f"{blob.hex}-{index}")
    return path


def _read_all(s3: Any, objects: dict[str, bytes]) -> None:
    for key, data in objects.items():
        got = s3.get_object(Bucket="ec-data", Key=key)["Body"].read()
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), key
        if len(data) > 10:
            first, last = len(data) // 3, len(data) - 2
            part = s3.get_object(Bucket="ec-data", Key=key, Range=f"bytes={first}-{last}")
            assert part["Body"].read() == data[first : last + 1], key


def _stopped(ec: Cluster, nodes: list[str]) -> AbstractContextManager[None]:
    return stopped(*(ec.pid(n) for n in nodes))


def test_codec_and_storage_overhead(ec: Cluster, stored: dict[str, bytes]) -> None:
    """Each blob is k=4, m=2; its six chunks are on six nodes and hold 1.5× its bytes (plus
    an 80-byte header per fragment)."""
    for key, data in stored.items():
        blob = _blob(ec, key)
        [row] = ec.sql("SELECT k, m FROM blobs WHERE blob_id = $1", blob)
        assert (row["k"], row["m"]) == (4, 2)
        assert len(set(_chunk_nodes(ec, blob))) == 6
        rows = ec.sql("SELECT size FROM chunks WHERE blob_id = $1 ORDER BY idx", blob)
        sizes = [r["size"] for r in rows]
        layout = BlobLayout(RS_4_2, len(data))
        assert sizes == [layout.chunk_size] * 6
        headers = 6 * 80 * layout.segment_count
        # 1.5× the data, up to the zero padding of the last fragments (< k bytes each).
        assert 1.5 * len(data) <= sum(sizes) - headers < 1.5 * len(data) + 6 * 4


@pytest.mark.parametrize("lost", [(0,), (3,), (0, 1), (2, 5), (4, 5), (1, 4)])
def test_any_two_chunks_deleted(
    ec: Cluster, s3: Any, stored: dict[str, bytes], lost: tuple[int, ...]
) -> None:
    """Chunk files gone from disk (a lost disk): reads rebuild from the other four."""
    saved: dict[Path, bytes] = {}
    for key in stored:
        blob = _blob(ec, key)
        for index in lost:
            path = _chunk_file(ec, blob, index)
            saved[path] = path.read_bytes()
            path.unlink()
    try:
        _read_all(s3, stored)
    finally:
        for path, data in saved.items():
            path.write_bytes(data)


def test_three_chunks_deleted_is_503_not_wrong_bytes(
    ec: Cluster, s3: Any, stored: dict[str, bytes]
) -> None:
    blob = _blob(ec, "o1000")
    saved = {}
    for index in (0, 2, 4):
        path = _chunk_file(ec, blob, index)
        saved[path] = path.read_bytes()
        path.unlink()
    try:
        status, _, body = ec.raw("GET", "/ec-data/o1000")
        assert status == 503
        assert b"<Code>ServiceUnavailable</Code>" in body
    finally:
        for path, data in saved.items():
            path.write_bytes(data)
    assert s3.get_object(Bucket="ec-data", Key="o1000")["Body"].read() == stored["o1000"]


def test_corrupted_chunks_are_rebuilt(ec: Cluster, s3: Any, stored: dict[str, bytes]) -> None:
    """Flipped bytes in two data chunks (and a truncated one elsewhere): every fragment is
    checked against its recorded digest, so the damage is found and routed around."""
    saved: dict[Path, bytes] = {}
    for key in stored:
        blob = _blob(ec, key)
        for index, damage in ((0, "flip"), (3, "truncate")):
            path = _chunk_file(ec, blob, index)
            data = path.read_bytes()
            saved[path] = data
            if damage == "flip":
                spoiled = bytearray(data)
                for at in range(0, len(spoiled), 997):
                    spoiled[at] ^= 0x5A
                path.write_bytes(bytes(spoiled))
            else:
                path.write_bytes(data[: len(data) // 2])
    try:
        _read_all(s3, stored)
    finally:
        for path, data in saved.items():
            path.write_bytes(data)


def test_two_hung_nodes_do_not_stop_reads(ec: Cluster, s3: Any, stored: dict[str, bytes]) -> None:
    """SIGSTOP two nodes: fetches to them hang, hedged reads ask the others."""
    blob = _blob(ec, f"o{9 * MiB + 7}")
    nodes = _chunk_nodes(ec, blob)
    with _stopped(ec, [nodes[0], nodes[2]]):
        _read_all(s3, stored)


def test_write_commits_with_one_node_hung(ec: Cluster, s3: Any) -> None:
    """Five of six chunks stored meets the quorum (k + 1): the write commits, the missing
    chunk is recorded as such (no size), and the object reads back."""
    s3.create_bucket(Bucket="ec-write")
    data = os.urandom(6 * MiB + 3)
    victim = "node3"
    with _stopped(ec, [victim]):
        s3.put_object(Bucket="ec-write", Key="k", Body=data)
        assert s3.get_object(Bucket="ec-write", Key="k")["Body"].read() == data
    [row] = ec.sql("SELECT part_blobs[1] AS b FROM objects WHERE bucket = 'ec-write'")
    chunks = ec.sql("SELECT node_id, size FROM chunks WHERE blob_id = $1", row["b"])
    missing = [c["node_id"] for c in chunks if c["size"] is None]
    assert missing == [victim] or (victim not in [c["node_id"] for c in chunks] and missing == [])
    assert s3.get_object(Bucket="ec-write", Key="k")["Body"].read() == data
    s3.delete_object(Bucket="ec-write", Key="k")
    s3.delete_bucket(Bucket="ec-write")


def test_write_below_quorum_is_slow_down_and_leaves_nothing(ec: Cluster, s3: Any) -> None:
    s3.create_bucket(Bucket="ec-refused")
    with _stopped(ec, ["node2", "node5"]):
        status, headers, body = ec.raw("PUT", "/ec-refused/k", body=os.urandom(2 * MiB))
        assert status == 503, body
        assert b"<Code>SlowDown</Code>" in body
        assert headers.get("retry-after") == "1"
    assert ec.sql("SELECT 1 FROM objects WHERE bucket = 'ec-refused'") == []
    assert wait_for(ec.settled, timeout=60)
    s3.delete_bucket(Bucket="ec-refused")


def test_plain_split_blobs_still_read(ec: Cluster, s3: Any) -> None:
    """A gateway configured for the plain split (k=6, m=0) writes; the default one reads."""
    old = ExtraGateway(ec, env={"S3COMPAT_EC_K": "6", "S3COMPAT_EC_M": "0"}).start()
    try:
        s3.create_bucket(Bucket="ec-plain")
        data = os.urandom(7 * MiB + 11)
        old.client().put_object(Bucket="ec-plain", Key="k", Body=data)
    finally:
        old.stop()
    [row] = ec.sql(
        "SELECT b.k, b.m FROM objects o JOIN blobs b ON b.blob_id = o.part_blobs[1] "
        "WHERE o.bucket = 'ec-plain'"
    )
    assert (row["k"], row["m"]) == (6, 0)
    assert s3.get_object(Bucket="ec-plain", Key="k")["Body"].read() == data
    part = s3.get_object(Bucket="ec-plain", Key="k", Range="bytes=1048570-6291460")
    assert part["Body"].read() == data[1048570:6291461]
    s3.delete_object(Bucket="ec-plain", Key="k")
    s3.delete_bucket(Bucket="ec-plain")


def _metrics(ec: Cluster) -> dict[str, float]:
    with urllib.request.urlopen(ec.endpoint + "/-/metrics", timeout=10) as resp:
        lines = resp.read().decode().splitlines()
    pairs = (line.rpartition(" ") for line in lines if line and not line.startswith("#"))
    return {name: float(value) for name, _, value in pairs}


def _scrub(ec: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "s3compat", "scrub", "--data-dir", str(ec.data_dir), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
    )


def _summary(out: str) -> dict[str, int]:
    pairs = (line.split(": ", 1) for line in out.splitlines() if ": " in line)
    return {k: int(v) for k, v in pairs}


def test_scrub_finds_and_repairs_missing_and_corrupt_chunks(
    ec: Cluster, s3: Any, stored: dict[str, bytes]
) -> None:
    """A deleted chunk file and a corrupted one: scrub reports both, rebuilds them on their
    nodes byte for byte, and a second scrub finds nothing."""
    first = _scrub(ec, "--rate", "0")
    assert first.returncode == 0, first.stderr
    clean = _summary(first.stdout)
    assert clean["missing"] == clean["corrupt"] == 0 and clean["checked"] >= 6 * len(stored)

    big = _blob(ec, f"o{9 * MiB + 7}")
    small = _blob(ec, "o1000")
    gone = _chunk_file(ec, big, 1)
    original_gone = gone.read_bytes()
    gone.unlink()
    spoiled = _chunk_file(ec, small, 4)
    original_spoiled = spoiled.read_bytes()
    damaged = bytearray(original_spoiled)
    damaged[len(damaged) // 2] ^= 0xFF
    spoiled.write_bytes(bytes(damaged))

    out = _scrub(ec, "--rate", "0")
    assert out.returncode == 0, out.stdout + out.stderr
    summary = _summary(out.stdout)
    assert (summary["missing"], summary["corrupt"]) == (1, 1), out.stdout
    # Repaired by the scrub or, racing it, by the gateway's janitor: none is left.
    assert summary["still broken"] == 0 and summary["repaired"] <= 2, out.stdout
    assert "chunks" in out.stderr  # the progress bar
    # Rebuilt in place, identical to what was written.
    assert _chunk_file(ec, big, 1).read_bytes() == original_gone
    assert _chunk_file(ec, small, 4).read_bytes() == original_spoiled
    assert ec.sql("SELECT 1 FROM chunks WHERE size IS NULL") == []
    again = _summary(_scrub(ec, "--rate", "0").stdout)
    assert again["missing"] == again["corrupt"] == again["repaired"] == 0
    _read_all(s3, stored)


def test_reads_mark_bad_chunks_and_the_janitor_repairs_them(
    ec: Cluster, s3: Any, stored: dict[str, bytes]
) -> None:
    """A GET that meets a missing chunk is served from parity, marks the chunk, and the
    janitor's repair pass puts it back without any scrub."""
    blob = _blob(ec, "o1000")
    node = _chunk_nodes(ec, blob)[0]
    path = _chunk_file(ec, blob, 0)
    original = path.read_bytes()
    before = _metrics(ec)
    path.unlink()
    assert s3.get_object(Bucket="ec-data", Key="o1000")["Body"].read() == stored["o1000"]
    after = _metrics(ec)
    assert after["s3compat_degraded_reads_total"] > before["s3compat_degraded_reads_total"]
    failures = f's3compat_fragment_failures_total{{node="{node}"}}'
    assert after[failures] > before.get(failures, 0)
    assert wait_for(lambda: path.exists() and path.read_bytes() == original, timeout=60)
    assert wait_for(lambda: not ec.sql("SELECT 1 FROM chunks WHERE size IS NULL"), timeout=30)


def test_missing_chunk_from_a_degraded_write_is_repaired(ec: Cluster, s3: Any) -> None:
    s3.create_bucket(Bucket="ec-heal")
    data = os.urandom(5 * MiB + 1)
    with _stopped(ec, ["node4"]):
        s3.put_object(Bucket="ec-heal", Key="k", Body=data)
    [row] = ec.sql("SELECT part_blobs[1] AS b FROM objects WHERE bucket = 'ec-heal'")
    # Once node4 answers again, the janitor rebuilds the chunk it missed.
    assert wait_for(
        lambda: not ec.sql("SELECT 1 FROM chunks WHERE blob_id = $1 AND size IS NULL", row["b"]),
        timeout=60,
    )
    for index in range(6):
        assert _chunk_file(ec, row["b"], index).exists()
    assert s3.get_object(Bucket="ec-heal", Key="k")["Body"].read() == data
    s3.delete_object(Bucket="ec-heal", Key="k")
    s3.delete_bucket(Bucket="ec-heal")
