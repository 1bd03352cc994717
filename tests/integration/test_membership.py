"""Membership: a 7th node registered with `s3compat admin node add` reaches the running
gateway without a restart; `s3compat rebalance` under traffic moves only the chunks whose
placement changed (about 1/7) and everything stays byte-identical; a node is then drained,
emptied by a second rebalance, and removed."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import Cluster, wait_for

KiB = 1 << 10
OBJECTS = 70


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("membership")).start()
    yield c
    c.stop()


def _cli(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "s3compat", *args, "--data-dir", str(cluster.data_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
    )


def _summary(out: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)


@pytest.fixture(scope="module")
def node7(members: Cluster) -> Iterator[str]:
    """A seventh nodeserver of the same cluster (token and cluster id), on a free port."""
    data = members.data_dir / "nodes" / "node7"
    log = members.data_dir / "logs" / "node7.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nodeserver",
                "--id",
                "node7",
                "--listen",
                "127.0.0.1:0",
                "--data",
                str(data),
                "--token-file",
                str(members.data_dir / "node-token"),
                "--cluster-id",
                (members.data_dir / "cluster-id").read_text().strip(),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    marker = "nodeserver node7 listening on "

    def address() -> str | None:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith(marker):
                return line[len(marker) :].strip()
        return None

    try:
        found = wait_for(address, timeout=30)
        assert found, log.read_text()
        yield str(found)
    finally:
        proc.terminate()
        proc.wait(10)


def _interrupted_rebalance(cluster: Cluster) -> int:
    """Start `s3compat rebalance`, SIGKILL it once its progress shows a moved chunk;
    returns how many moves it reported."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "s3compat", "rebalance", "--data-dir", str(cluster.data_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
    )
    assert proc.stderr is not None
    moved = 0
    buffer = b""
    try:
        while moved == 0:
            piece = proc.stderr.read1(4096)
            if not piece:
                break
            buffer += piece
            for update in buffer.split(b"\r"):
                words = update.decode(errors="replace").split()
                if "moved," in words:
                    moved = max(moved, int(words[words.index("moved,") - 2]))
    finally:
        proc.kill()
        proc.wait(30)
    return moved


def _chunks_per_node(cluster: Cluster) -> dict[str, int]:
    rows = cluster.sql("SELECT node_id, count(*) AS n FROM chunks GROUP BY node_id")
    return {r["node_id"]: r["n"] for r in rows}


def _check(s3: Any, stored: dict[str, bytes]) -> None:
    for key, data in stored.items():
        got = s3.get_object(Bucket="members", Key=key)["Body"].read()
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), key


def test_add_rebalance_drain_remove(members: Cluster, node7: str) -> None:
    s3 = members.client()
    s3.create_bucket(Bucket="members")
    stored = {f"k{i:03d}": os.urandom(5 * KiB + i) for i in range(OBJECTS)}
    for key, data in stored.items():
        s3.put_object(Bucket="members", Key=key, Body=data)
    before = _chunks_per_node(members)
    assert set(before) == {f"node{i}" for i in range(1, 7)}

    added = _cli(members, "admin", "node", "add", "node7", node7)
    assert added.returncode == 0, added.stderr
    again = _cli(members, "admin", "node", "add", "node7", node7)
    assert again.returncode == 1 and "already registered" in again.stderr
    wrong = _cli(members, "admin", "node", "add", "node8", node7)
    assert wrong.returncode == 1 and "node7" in wrong.stderr
    # The running gateway picks the node up by itself.
    assert wait_for(
        lambda: "node7" in members.raw("GET", "/-/health", sign=False)[2].decode(), timeout=30
    )

    # Traffic during the rebalance: reads of the stored objects and new writes.
    stop = threading.Event()
    errors: list[str] = []
    written: dict[str, bytes] = {}

    def traffic() -> None:
        client = members.client()
        n = 0
        while not stop.is_set():
            key = f"k{n % OBJECTS:03d}"
            try:
                assert client.get_object(Bucket="members", Key=key)["Body"].read() == stored[key]
                data = os.urandom(3 * KiB)
                client.put_object(Bucket="members", Key=f"live{n}", Body=data)
                written[f"live{n}"] = data
            except Exception as exc:  # collected, asserted below
                errors.append(repr(exc))
            n += 1

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        # Interrupted (SIGKILL) once it has moved something, then run again to the end.
        interrupted = _interrupted_rebalance(members)
        out = _cli(members, "rebalance")
    finally:
        stop.set()
        worker.join(60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert errors == []
    summary = _summary(out.stdout)
    per_node = _chunks_per_node(members)
    share = per_node.get("node7", 0) / sum(per_node.values())
    print(
        f"rebalance after adding node7: interrupted after {interrupted} moves, then "
        f"{summary['moved']} more of {summary['chunks']} chunks; node7 now holds "
        f"{per_node.get('node7', 0)} of {sum(per_node.values())} chunks ({share:.1%})"
    )
    assert interrupted > 0 and int(summary["moved"]) > 0
    assert 0.05 < share < 0.3  # about 1/7
    _check(s3, stored)
    for key, data in written.items():
        assert s3.get_object(Bucket="members", Key=key)["Body"].read() == data
    assert wait_for(members.settled, timeout=60)  # old copies deleted, nothing orphaned

    # A second run finds nothing to move.
    rerun = _summary(_cli(members, "rebalance").stdout)
    assert rerun["moved"] == "0" and rerun["failed"] == "0"

    # Drain node2: it takes no new chunks, and a rebalance empties it.
    refused = _cli(members, "admin", "node", "remove", "node2")
    assert refused.returncode == 1 and "drain" in refused.stderr
    drained = _cli(members, "admin", "node", "drain", "node2")
    assert drained.returncode == 0, drained.stderr
    time.sleep(3)  # the gateway reloads the registry every 2 s
    s3.put_object(Bucket="members", Key="after-drain", Body=b"x" * 5000)
    [row] = members.sql("SELECT part_blobs[1] AS b FROM objects WHERE key = 'after-drain'")
    placed = members.sql("SELECT node_id FROM chunks WHERE blob_id = $1", row["b"])
    assert "node2" not in {r["node_id"] for r in placed}
    emptied = _cli(members, "rebalance")
    assert emptied.returncode == 0, emptied.stdout + emptied.stderr
    assert _chunks_per_node(members).get("node2", 0) == 0
    assert wait_for(lambda: not list(Path(members.node_dir("node2"), "chunks").rglob("*-*")))
    removed = _cli(members, "admin", "node", "remove", "node2")
    assert removed.returncode == 0, removed.stderr
    listing = _cli(members, "admin", "node", "list").stdout
    assert "node2" not in listing and "node7" in listing
    _check(s3, stored)
