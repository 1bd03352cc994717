"""A gateway with several worker processes (the default is one per core): every worker
serves the same objects, and stopping the gateway stops them all."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from tests.checks import sha256
from tests.cluster import Cluster, wait_for


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(
        tmp_path_factory.mktemp("workers") / "data", env={"S3COMPAT_WORKERS": "2"}
    ).start()
    yield cluster
    cluster.stop()


def _workers(cluster: Cluster) -> list[psutil.Process]:
    gateway = psutil.Process(cluster.pid("gateway"))
    # uvicorn's supervisor, its spawn helper (multiprocessing's resource tracker) and the
    # workers: the workers are the children that run the app.
    return [p for p in gateway.children() if "resource_tracker" not in " ".join(p.cmdline())]


def test_two_worker_processes_serve_the_same_objects(two_workers: Cluster) -> None:
    assert len(wait_for(lambda: len(_workers(two_workers)) == 2 and _workers(two_workers))) == 2
    two_workers.client().create_bucket(Bucket="shared")
    bodies = {f"key-{i}": os.urandom(1000 + 7919 * i) for i in range(24)}

    def put(key: str) -> None:
        # A fresh client each time: a new connection, accepted by whichever worker is free.
        two_workers.client().put_object(Bucket="shared", Key=key, Body=bodies[key])

    def get(key: str) -> str:
        return sha256(two_workers.client().get_object(Bucket="shared", Key=key)["Body"].read())

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, bodies))
        digests = dict(zip(bodies, pool.map(get, bodies), strict=True))
    assert digests == {key: sha256(body) for key, body in bodies.items()}
    listed = two_workers.client().list_objects_v2(Bucket="shared")["Contents"]
    assert sorted(o["Key"] for o in listed) == sorted(bodies)


def test_stopping_the_gateway_stops_every_worker(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "data", env={"S3COMPAT_WORKERS": "2"}).start()
    try:
        workers = wait_for(lambda: len(_workers(cluster)) == 2 and _workers(cluster))
        cluster.client().list_buckets()
    finally:
        assert cluster.stop() == 0
    gone, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive and len(gone) == 2
