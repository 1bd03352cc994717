"""`s3compat dev` restarts a node or the gateway that dies, on the port it had; it stops
everything when one child keeps dying, or when PostgreSQL dies."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from s3compat.devcluster.supervisor import RESTART_LIMIT
from tests.cluster import Cluster, wait_for

MiB = 1 << 20
NODES = [f"node{i}" for i in range(1, 7)]


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path / "data").start()
    yield cluster
    cluster.stop()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _pids(cluster: Cluster) -> dict[str, int] | None:
    try:
        pids: dict[str, int] = cluster.info["pids"]
    except (FileNotFoundError, ValueError):
        return None
    return pids


def _replaced(cluster: Cluster, old: dict[str, int], names: list[str]) -> dict[str, int] | None:
    """cluster.json's pids once every child in `names` has a new one."""
    pids = _pids(cluster)
    if pids is None or any(pids[n] == old[n] for n in names):
        return None
    return pids


def _health(cluster: Cluster) -> dict[str, Any] | None:
    try:
        status, _, body = cluster.raw("GET", "/-/health", sign=False)
    except OSError:
        return None
    report: dict[str, Any] = json.loads(body)
    return report if status == 200 else None


def _said(cluster: Cluster, text: str) -> bool:
    return any(text in line for line in list(cluster.output))


def test_killed_node_and_gateway_are_restarted(dev: Cluster) -> None:
    s3 = dev.client()
    s3.create_bucket(Bucket="survivor")
    written = {"small": b"s" * 100, "big": os.urandom(7 * MiB + 3)}
    for key, data in written.items():
        s3.put_object(Bucket="survivor", Key=key, Body=data)
    info = dev.info
    old = info["pids"]

    os.kill(old["node3"], signal.SIGKILL)
    os.kill(old["gateway"], signal.SIGKILL)

    pids = wait_for(lambda: _replaced(dev, old, ["node3", "gateway"]), timeout=120)
    assert pids, (dev.info, "".join(dev.output))
    assert _alive(pids["node3"]) and _alive(pids["gateway"])
    assert not _alive(old["node3"]) and not _alive(old["gateway"])
    # Nothing else was touched, and every node kept its address.
    assert {n: pids[n] for n in old if n not in ("node3", "gateway")} == {
        n: old[n] for n in old if n not in ("node3", "gateway")
    }
    assert dev.info["nodes"] == info["nodes"]
    assert dev.info["endpoint"] == info["endpoint"]
    assert wait_for(lambda: _said(dev, "node3 exited with -9; restarting it"))
    assert wait_for(lambda: _said(dev, "gateway exited with -9; restarting it"))

    health = wait_for(lambda: _health(dev), timeout=120)
    assert health, _health(dev)
    assert health["status"] == "ok"
    assert sorted(health["nodes"]) == NODES
    assert all(node["status"] == "ok" for node in health["nodes"].values())

    s3 = dev.client()
    for key, data in written.items():
        assert s3.get_object(Bucket="survivor", Key=key)["Body"].read() == data
    fresh = os.urandom(2 * MiB)
    s3.put_object(Bucket="survivor", Key="after", Body=fresh)
    assert s3.get_object(Bucket="survivor", Key="after")["Body"].read() == fresh
    # The restarted node holds its share of the new object.
    [row] = dev.sql(
        "SELECT part_blobs[1] AS b FROM objects WHERE bucket = 'survivor' AND key = 'after'"
    )
    assert any(name.startswith(row["b"].hex) for name in dev.chunk_files()["node3"])
    assert dev.proc is not None and dev.proc.poll() is None


def test_a_child_that_keeps_dying_stops_everything(dev: Cluster) -> None:
    first = _pids(dev)
    assert first is not None
    victims = []
    for _ in range(RESTART_LIMIT):
        pids = _pids(dev)
        assert pids is not None
        victims.append(pids["node2"])
        os.kill(pids["node2"], signal.SIGKILL)
        replaced = wait_for(lambda old=pids: _replaced(dev, old, ["node2"]), timeout=60)
        assert replaced, "".join(dev.output)
    # One death too many within the window: the supervisor gives up.
    last = _pids(dev)
    assert last is not None
    victims.append(last["node2"])
    os.kill(last["node2"], signal.SIGKILL)
    assert dev.proc is not None
    assert dev.proc.wait(120) == 1
    assert wait_for(lambda: _said(dev, f"node2 exited with -9 after {RESTART_LIMIT} restarts"))
    everyone = [*first.values(), *last.values(), *victims]
    assert wait_for(lambda: not [p for p in everyone if _alive(p)]), [
        p for p in everyone if _alive(p)
    ]
    assert not (dev.data_dir / "cluster.json").exists()


def test_postgres_dying_stops_everything(dev: Cluster) -> None:
    pids = _pids(dev)
    assert pids is not None
    os.kill(pids["postgres"], signal.SIGKILL)
    assert dev.proc is not None
    assert dev.proc.wait(120) == 1
    assert wait_for(lambda: _said(dev, "postgres exited with -9; stopping"))
    assert wait_for(lambda: not [p for p in pids.values() if _alive(p)])
    assert not (dev.data_dir / "cluster.json").exists()
