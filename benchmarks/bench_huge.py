"""Round trip of one huge object (default 10 GiB) through a dev cluster.

Uploads with boto3's multipart `upload_fileobj` from a generated stream (nothing is
materialised on disk), downloads with parallel ranged GETs into a hashing sink, and prints
the times, the throughput and the gateway's peak memory: each worker's own peak (VmHWM) and,
with one worker, its RSS growth. Asserts nothing.

    .venv/bin/python benchmarks/bench_huge.py [--gib 10] [--workers N]

`--workers` defaults to the product's default (one per core); 1 puts all four concurrent
transfers on one process.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_cluster import proc_status_kib
from boto3.s3.transfer import TransferConfig
from compare_servers import process_tree

from tests.cluster import Cluster, RssSampler

MiB = 1 << 20
BLOCK = 4 * MiB


class GeneratedStream:
    """Deterministic pseudo-random bytes, produced block by block as they are read."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pos = 0
        self.digest = hashlib.sha256()
        self._lock = threading.Lock()

    def _block(self, index: int) -> bytes:
        seed = hashlib.sha256(index.to_bytes(8, "big")).digest()
        return seed * (BLOCK // len(seed))

    def read(self, n: int = -1) -> bytes:
        with self._lock:
            if n < 0:
                n = self.size - self.pos
            n = min(n, self.size - self.pos)
            out = bytearray()
            while len(out) < n:
                index, offset = divmod(self.pos + len(out), BLOCK)
                out += self._block(index)[offset : offset + n - len(out)]
            self.pos += n
            self.digest.update(out)
            return bytes(out)


class HashingSink:
    """A seekable write target that hashes in order (downloads arrive out of order)."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.pending: dict[int, bytes] = {}
        self.next = 0
        self.pos = 0
        self._lock = threading.Lock()

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = pos
        return pos

    def tell(self) -> int:
        return self.pos

    def write(self, data: bytes) -> int:
        with self._lock:
            self.pending[self.pos] = bytes(data)
            self.pos += len(data)
            while self.next in self.pending:
                piece = self.pending.pop(self.next)
                self.digest.update(piece)
                self.next += len(piece)
        return len(data)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gib", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=0, help="gateway workers (0: default)")
    args = parser.parse_args()
    # The test cluster pins one worker; 0 restores the product's default.
    workers = str(args.workers) if args.workers else ""
    size = int(args.gib * 1024 * MiB)
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(Path(tmp) / "data", env={"S3COMPAT_WORKERS": workers}).start()
        try:
            s3 = cluster.client()
            s3.create_bucket(Bucket="huge")
            config = TransferConfig(multipart_chunksize=64 * MiB, max_concurrency=4)
            source = GeneratedStream(size)
            with RssSampler(cluster.pid("gateway")) as rss:
                baseline = rss.samples[0]
                start = time.monotonic()
                s3.upload_fileobj(source, "huge", "object", Config=config)
                up = time.monotonic() - start
                sink = HashingSink()
                start = time.monotonic()
                s3.download_fileobj("huge", "object", sink, Config=config)
                down = time.monotonic() - start
            ok = sink.digest.hexdigest() == source.digest.hexdigest()
            print(f"object        {size / 1024**3:.2f} GiB, sha256 match: {ok}")
            print(f"upload        {up:8.1f} s  {size / up / 1e6:8.1f} MB/s")
            print(f"download      {down:8.1f} s  {size / down / 1e6:8.1f} MB/s")
            print(f"round trip    {up + down:8.1f} s")
            gateway = cluster.pid("gateway")
            procs = process_tree(gateway)
            # With several workers the gateway pid is their supervisor: its RSS says little.
            if len(procs) == 1:
                print(
                    f"gateway RSS   baseline {baseline / MiB:.1f} MiB, peak "
                    f"{rss.peak / MiB:.1f} MiB, growth {(rss.peak - baseline) / MiB:.1f} MiB"
                )
            peaks = [f"{(proc_status_kib(pid, 'VmHWM') or 0) / 1024:.1f} MiB" for pid in procs]
            print(f"each gateway process's own peak (VmHWM): {', '.join(peaks)}")
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
