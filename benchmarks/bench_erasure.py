"""Reed–Solomon 4+2 against the plain split, and degraded reads. Prints numbers only.

Starts a dev cluster (default codec k=4, m=2) and a second gateway on the same nodes that
writes with the plain split (k=6, m=0). For each codec it PUTs and GETs 64 MiB objects on
2 threads and prints MB/s. Then, with one storage node dead (its supervisor paused so it
is not restarted, then the node SIGKILLed), it GETs the 4+2 objects again: the ratio is the
degraded read throughput. Everything shares this machine's cores.

Run: `python benchmarks/bench_erasure.py [--objects N]`
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.cluster import Cluster, ExtraGateway

MIB = 1 << 20
SIZE = 64 * MIB
THREADS = 2


def _parallel(work: list[Any], fn: Any) -> float:
    """Run fn over work on THREADS threads; returns the elapsed seconds."""
    items = list(work)
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not items:
                    return
                item = items.pop()
            fn(item)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - start


def _put_get(label: str, make_client: Any, bucket: str, count: int, body: bytes) -> float:
    clients = threading.local()

    def client() -> Any:
        if not hasattr(clients, "c"):
            clients.c = make_client()
        return clients.c

    keys = [f"{label}-{i}" for i in range(count)]
    digest = hashlib.md5(body).hexdigest()

    def put(key: str) -> None:
        etag = client().put_object(Bucket=bucket, Key=key, Body=body)["ETag"]
        assert etag.strip('"') == digest

    def get(key: str) -> None:
        data = client().get_object(Bucket=bucket, Key=key)["Body"].read()
        assert len(data) == len(body)

    up = _parallel(keys, put)
    down = _parallel(keys, get)
    mb = count * len(body) / 1e6
    print(f"{label:>12}: PUT {mb / up:7.1f} MB/s   GET {mb / down:7.1f} MB/s")
    return mb / down


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=6)
    args = parser.parse_args()
    body = os.urandom(SIZE)
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(Path(tmp) / "cluster").start()
        plain = ExtraGateway(cluster, env={"S3COMPAT_EC_K": "6", "S3COMPAT_EC_M": "0"}).start()
        try:
            cluster.client().create_bucket(Bucket="bench")
            print(f"{args.objects} objects of 64 MiB, {THREADS} threads, boto3 defaults")
            _put_get("plain 6+0", plain.client, "bench", args.objects, body)
            healthy = _put_get("RS 4+2", cluster.client, "bench", args.objects, body)

            # One node down for good: pause the supervisor so it does not restart it.
            supervisor = cluster.proc
            assert supervisor is not None
            os.kill(supervisor.pid, signal.SIGSTOP)
            victim = "node1"
            os.kill(cluster.pid(victim), signal.SIGKILL)
            try:
                clients = threading.local()

                def get(key: str) -> None:
                    if not hasattr(clients, "c"):
                        clients.c = cluster.client()
                    data = clients.c.get_object(Bucket="bench", Key=key)["Body"].read()
                    assert hashlib.sha256(data).digest() == hashlib.sha256(body).digest()

                keys = [f"RS 4+2-{i}" for i in range(args.objects)]
                seconds = _parallel(keys, get)
                degraded = args.objects * SIZE / 1e6 / seconds
                print(
                    f"{'RS 4+2':>12}: GET {degraded:7.1f} MB/s with {victim} down "
                    f"({100 * degraded / healthy:.0f}% of healthy)"
                )
            finally:
                os.kill(supervisor.pid, signal.SIGCONT)
        finally:
            plain.stop()
            cluster.stop()


if __name__ == "__main__":
    main()
