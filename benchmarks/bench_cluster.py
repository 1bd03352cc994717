"""End-to-end throughput, latency and memory of a local cluster. Prints numbers, asserts nothing.

Starts its own `s3compat dev` (embedded PostgreSQL, six storage nodes, one gateway) in a
temporary directory, drives it with boto3 at default settings, and reports:

- PUT and GET MB/s for 1 MiB objects (4 threads) and 64 MiB objects (2 threads),
- PUT and GET ops/s for 4 KiB objects (8 threads),
- p50/p99 latency of each,
- the gateway's peak RSS (VmRSS sampled every 50 ms, and the kernel's VmHWM), and the
  RSS of every cluster process at the end.

Each thread has its own boto3 client. Everything runs on this machine, so the client
competes with the cluster for CPU: read the numbers as "the whole system on N cores".

Run: `python benchmarks/bench_cluster.py [--quick]`
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import psutil
from botocore.config import Config

# Runnable from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.cluster import Cluster

KIB = 1024
MIB = 1024 * KIB
START_TIMEOUT = 120.0
SAMPLE_INTERVAL = 0.05


@dataclass(frozen=True)
class Workload:
    name: str
    size: int
    count: int
    threads: int
    budget: float  # seconds for each of PUT and GET; stops issuing requests after it
    unit: str  # "MB/s" or "ops/s"


def workloads(quick: bool) -> list[Workload]:
    if quick:
        return [
            Workload("1 MiB", 1 * MIB, 16, 4, 20, "MB/s"),
            Workload("64 MiB", 64 * MIB, 2, 2, 40, "MB/s"),
            Workload("4 KiB", 4 * KIB, 400, 8, 20, "ops/s"),
        ]
    return [
        Workload("1 MiB", 1 * MIB, 64, 4, 60, "MB/s"),
        Workload("64 MiB", 64 * MIB, 8, 2, 120, "MB/s"),
        Workload("4 KiB", 4 * KIB, 2000, 8, 60, "ops/s"),
    ]


# --- the cluster -------------------------------------------------------------------------


def proc_status_kib(pid: int, field_name: str) -> int | None:
    """A `kB` field of /proc/<pid>/status (VmRSS, VmHWM), or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


class RssSampler(threading.Thread):
    """VmRSS of one process every SAMPLE_INTERVAL seconds: the peak, overall and per window."""

    def __init__(self, pid: int) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            rss = proc_status_kib(self.pid, "VmRSS")
            if rss is not None:
                with self.lock:
                    self.samples.append((time.monotonic(), rss))
            self.stopped.wait(SAMPLE_INTERVAL)

    def peak_kib(self, start: float = 0.0, end: float = float("inf")) -> int:
        with self.lock:
            return max((rss for t, rss in self.samples if start <= t <= end), default=0)

    def stop(self) -> None:
        self.stopped.set()
        self.join(1)


def cluster_rss(pids: dict[str, int]) -> list[tuple[str, int, int]]:
    """(group, processes, RSS KiB) for the gateway, the nodes and PostgreSQL, children included.

    RSS counts shared pages once per process, so PostgreSQL's total (shared buffers mapped
    by every backend) overstates what it really uses.
    """
    groups: dict[str, list[int]] = {"gateway": [], "nodes": [], "postgres": []}
    for name, pid in pids.items():
        group = "nodes" if name.startswith("node") else name
        tree = [pid]
        with suppress(psutil.Error):
            tree += [c.pid for c in psutil.Process(pid).children(recursive=True)]
        groups.setdefault(group, []).extend(tree)
    out = []
    for group, members in groups.items():
        sizes = [s for s in (proc_status_kib(p, "VmRSS") for p in members) if s is not None]
        out.append((group, len(sizes), sum(sizes)))
    return out


# --- load --------------------------------------------------------------------------------


@dataclass
class Result:
    label: str
    unit: str
    done: int = 0
    errors: int = 0
    bytes: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    rss_peak_kib: int = 0

    @property
    def rate(self) -> float:
        if not self.seconds:
            return 0.0
        if self.unit == "MB/s":
            return self.bytes / self.seconds / 1e6
        return self.done / self.seconds

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile in milliseconds."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
        return ordered[rank - 1] * 1000


def make_client(cluster: Cluster) -> Any:
    # A session per client: boto3's default session is not meant to be shared by threads.
    return boto3.session.Session().client(
        "s3",
        endpoint_url=cluster.endpoint,
        aws_access_key_id=cluster.access_key,
        aws_secret_access_key=cluster.secret_key,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )


def run_phase(
    label: str,
    work: Workload,
    clients: list[Any],
    keys: list[str],
    op: Callable[[Any, str], int],
    sampler: RssSampler,
    stop: threading.Event,
) -> tuple[Result, list[str]]:
    """Run `op` over `keys` on `work.threads` threads; returns the result and the keys done."""
    result = Result(label, work.unit)
    todo = iter(keys)
    lock = threading.Lock()
    succeeded: list[str] = []
    start_gate = threading.Barrier(work.threads + 1)
    deadline = 0.0

    def worker(client: Any) -> None:
        start_gate.wait()
        while not stop.is_set() and time.monotonic() < deadline:
            with lock:
                key = next(todo, None)
            if key is None:
                return
            t0 = time.perf_counter()
            try:
                n = op(client, key)
            except Exception as exc:
                with lock:
                    result.errors += 1
                    if result.errors <= 3:
                        print(f"  {label} {key}: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            elapsed = time.perf_counter() - t0
            with lock:
                result.done += 1
                result.bytes += n
                result.latencies.append(elapsed)
                succeeded.append(key)

    threads = [
        threading.Thread(target=worker, args=(clients[i],), daemon=True)
        for i in range(work.threads)
    ]
    for t in threads:
        t.start()
    begin = time.monotonic()
    deadline = begin + work.budget
    start_gate.wait()
    for t in threads:
        while t.is_alive():
            t.join(0.2)  # short joins keep Ctrl-C responsive
    end = time.monotonic()
    result.seconds = end - begin
    result.rss_peak_kib = sampler.peak_kib(begin, end)
    return result, succeeded


def put_op(bucket: str, payload: bytes) -> Callable[[Any, str], int]:
    def op(client: Any, key: str) -> int:
        client.put_object(Bucket=bucket, Key=key, Body=payload)
        return len(payload)

    return op


def get_op(bucket: str, size: int) -> Callable[[Any, str], int]:
    def op(client: Any, key: str) -> int:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        n = 0
        for chunk in body.iter_chunks(MIB):
            n += len(chunk)
        if n != size:
            raise ValueError(f"read {n} bytes, expected {size}")
        return n

    return op


def run_workload(
    work: Workload,
    cluster: Cluster,
    bucket: str,
    sampler: RssSampler,
    stop: threading.Event,
) -> list[Result]:
    clients = [make_client(cluster) for _ in range(work.threads)]
    for client in clients:  # connect and sign once before the clock starts
        client.head_bucket(Bucket=bucket)
    payload = os.urandom(work.size)
    prefix = work.name.replace(" ", "").lower()
    keys = [f"{prefix}/{i:06d}" for i in range(work.count)]
    put, written = run_phase(
        f"PUT {work.name}", work, clients, keys, put_op(bucket, payload), sampler, stop
    )
    get, _ = run_phase(
        f"GET {work.name}", work, clients, written, get_op(bucket, work.size), sampler, stop
    )
    for client in clients:
        client.close()
    return [put, get]


def warm_up(client: Any, bucket: str) -> None:
    """Create the bucket and open the gateway's database and node connections, untimed."""
    client.create_bucket(Bucket=bucket)
    payload = os.urandom(MIB)
    for i in range(3):
        key = f"warm-up/{i}"
        client.put_object(Bucket=bucket, Key=key, Body=payload)
        client.get_object(Bucket=bucket, Key=key)["Body"].read()
        client.delete_object(Bucket=bucket, Key=key)


# --- report ------------------------------------------------------------------------------


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def print_results(results: list[Result], threads: dict[str, int]) -> None:
    header = (
        f"{'workload':<12} {'thr':>3} {'ops':>6} {'err':>4} {'secs':>7} {'rate':>14} "
        f"{'p50 ms':>9} {'p99 ms':>9} {'gw peak RSS':>12}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        rate = f"{r.rate:,.1f} {r.unit}"
        print(
            f"{r.label:<12} {threads[r.label]:>3} {r.done:>6} {r.errors:>4} {r.seconds:>7.2f} "
            f"{rate:>14} {r.percentile(50):>9.1f} {r.percentile(99):>9.1f} "
            f"{mib(r.rss_peak_kib):>12}"
        )


@contextmanager
def temp_data_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="s3c-bench-", ignore_cleanup_errors=True) as d:
        yield Path(d)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer objects (under 3 minutes)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the cluster too, like Ctrl-C
    plan = workloads(args.quick)
    stop = threading.Event()
    started = time.monotonic()
    with temp_data_dir() as data_dir:
        # Production janitor settings, not the tests' fast ones.
        cluster = Cluster(
            data_dir,
            env={"S3COMPAT_JANITOR_INTERVAL": "30", "S3COMPAT_DELETE_GRACE": "300"},
        )
        sampler: RssSampler | None = None
        try:
            print(f"starting s3compat dev in {data_dir} …", flush=True)
            cluster.start(timeout=START_TIMEOUT)
            pids = {name: int(pid) for name, pid in cluster.info["pids"].items() if pid}
            print(
                f"cluster ready in {time.monotonic() - started:.1f}s at {cluster.endpoint} "
                f"(gateway pid {pids['gateway']}, {os.cpu_count()} CPUs, "
                f"load average {os.getloadavg()[0]:.2f})",
                flush=True,
            )
            sampler = RssSampler(pids["gateway"])
            sampler.start()
            idle_kib = proc_status_kib(pids["gateway"], "VmRSS") or 0
            bucket = f"bench-{secrets.token_hex(4)}"
            warm_up(make_client(cluster), bucket)

            results: list[Result] = []
            threads: dict[str, int] = {}
            for work in plan:
                print(
                    f"running {work.name}: {work.count} objects, {work.threads} threads …",
                    flush=True,
                )
                for r in run_workload(work, cluster, bucket, sampler, stop):
                    results.append(r)
                    threads[r.label] = work.threads

            hwm_kib = proc_status_kib(pids["gateway"], "VmHWM") or 0
            sampler.stop()
            rss_end = cluster_rss(pids)

            print()
            print(
                f"s3compat cluster benchmark ({'quick' if args.quick else 'full'}; "
                "MB = 10^6 bytes; latency per request, nearest rank)"
            )
            print_results(results, threads)
            print()
            print("gateway memory")
            print(f"  RSS when idle, before load    {mib(idle_kib):>12}")
            print(f"  peak VmRSS (sampled / 50 ms)  {mib(sampler.peak_kib()):>12}")
            print(f"  VmHWM (kernel high water)     {mib(hwm_kib):>12}")
            print("cluster RSS at the end (children included; shared pages counted per process)")
            for group, count, kib in rss_end:
                print(f"  {group:<10} {count:>3} proc  {mib(kib):>12}")
            total = sum(kib for _, _, kib in rss_end)
            print(f"  {'total':<10} {sum(c for _, c, _ in rss_end):>3} proc  {mib(total):>12}")
        except KeyboardInterrupt:
            stop.set()
            print("\ninterrupted; stopping the cluster", file=sys.stderr)
            return 130
        except RuntimeError as exc:
            print(f"bench_cluster: {exc}", file=sys.stderr)
            return 1
        finally:
            stop.set()
            if sampler is not None:
                sampler.stop()
            cluster.stop()
    print(f"total time {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
