"""Stop everything, start again: the objects are still there and intact."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tests.cluster import Cluster


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_objects_survive_a_full_restart(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "data").start()
    try:
        s3 = cluster.client()
        s3.create_bucket(Bucket="persist")
        blobs = {f"k{n}": os.urandom(n) for n in (0, 1, 7, 3 * 1024 * 1024 + 1)}
        for key, data in blobs.items():
            s3.put_object(Bucket="persist", Key=key, Body=data)
        keys = (cluster.access_key, cluster.secret_key)
        pids = [int(p) for p in cluster.info["pids"].values()]
        assert len(pids) == 8  # gateway, six nodes, postgres
    finally:
        assert cluster.stop() == 0
    assert not (tmp_path / "data" / "cluster.json").exists()
    # Ctrl-C stopped every process the supervisor started.
    alive = [pid for pid in pids if _alive(pid)]
    assert not alive

    cluster = Cluster(tmp_path / "data", port=cluster.port).start()
    try:
        # Generated credentials are kept in the data dir, so clients keep working.
        assert (cluster.access_key, cluster.secret_key) == keys
        s3 = cluster.client()
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["persist"]
        for key, data in blobs.items():
            body = s3.get_object(Bucket="persist", Key=key)["Body"].read()
            assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    finally:
        assert cluster.stop() == 0
