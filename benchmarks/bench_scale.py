"""What a request costs, and two gateways on one database. Prints numbers, asserts nothing.

Starts a dev cluster (embedded PostgreSQL, six storage nodes, one gateway with one worker
process, the product's other defaults) in a temporary directory, then:

1. Per-request cost. For each S3 action it runs a bounded number of requests and prints
   ops/s, the PostgreSQL statements per request (each one round trip; the gateway's
   `s3compat_db_statements_total` by operation, BEGIN and COMMIT included) and the CPU per
   request of the gateway, the six nodes, PostgreSQL (every backend) and the client.
   One worker, so that the gateway's /-/metrics is the whole gateway.
2. Scale-out. A second gateway (`s3compat serve`, one worker, another port) on the same
   database and nodes. Objects written through either gateway are read back through the
   other (checked byte for byte), then 4 KiB PUT and GET with 8 client threads go to one
   gateway, then half to each, and the aggregate ops/s is printed. Gateways share nothing
   but PostgreSQL and the nodes, so on more cores the aggregate grows with the gateways
   until one of those is saturated; on the 2-core benchmark machine the client, both
   gateways, PostgreSQL and the nodes share the same two cores.

Run: `python benchmarks/bench_scale.py [--quick] [--env VAR=VALUE …]` (or `make bench-scale`);
`--env` compares a setting, e.g. `--env S3COMPAT_INLINE_MAX=0` (small bodies on the nodes)
or `--env S3COMPAT_MALLOC_TUNING=0` (glibc's allocator defaults).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

# Runnable from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_cluster import KIB, MIB
from bench_compare import default_cluster_env
from compare_load import (
    Measured,
    Op,
    RawListWalker,
    RawS3,
    Target,
    delete_objects_op,
    drive,
    get_op,
    head_op,
    populate,
    put_op,
)

from tests.cluster import Cluster, ExtraGateway

BUCKET = "bench"


@dataclass
class Plan:
    small_count: int  # requests per small-object row
    big_count: int  # requests per 64 MiB row
    budget: float  # seconds per row at most
    list_keys: int


QUICK = Plan(small_count=400, big_count=6, budget=5.0, list_keys=3000)
FULL = Plan(small_count=3000, big_count=24, budget=20.0, list_keys=10_000)


# --- counting ----------------------------------------------------------------------------------


def scrape(endpoint: str) -> dict[str, float]:
    """Database statements by operation, from the gateway's /-/metrics."""
    with urllib.request.urlopen(endpoint + "/-/metrics", timeout=10) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    prefix = 's3compat_db_statements_total{operation="'
    for line in text.splitlines():
        if line.startswith(prefix):
            name, _, value = line[len(prefix) :].partition('"} ')
            out[name] = float(value)
    return out


class CpuMeter:
    """CPU seconds (user + system) of the cluster's process groups and of this client."""

    def __init__(self, cluster: Cluster) -> None:
        pids = {name: int(pid) for name, pid in cluster.info["pids"].items() if pid}
        self.roots = {
            "gateway": [pids["gateway"]],
            "nodes": [pid for name, pid in pids.items() if name.startswith("node")],
            "postgres": [pids["postgres"]],
        }

    @staticmethod
    def _tree(pid: int) -> float:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0.0
        for proc in procs:
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def read(self) -> dict[str, float]:
        out = {group: sum(self._tree(pid) for pid in pids) for group, pids in self.roots.items()}
        times = psutil.Process().cpu_times()
        out["client"] = times.user + times.system
        return out


@dataclass
class Cost:
    label: str
    operation: str
    measured: Measured
    statements: float  # per request
    cpu_ms: dict[str, float]  # per request, by process group


def measure(
    label: str,
    operation: str,
    endpoint: str,
    meter: CpuMeter,
    run: Callable[[], Measured],
) -> Cost:
    before_sql, before_cpu = scrape(endpoint), meter.read()
    result = run()
    after_sql, after_cpu = scrape(endpoint), meter.read()
    n = max(result.done, 1)
    statements = (after_sql.get(operation, 0.0) - before_sql.get(operation, 0.0)) / n
    cpu = {group: (after_cpu[group] - before_cpu[group]) * 1000 / n for group in after_cpu}
    cost = Cost(label, operation, result, statements, cpu)
    print(
        f"  {label:<34} {rate(result):>12}  {statements:5.1f} statements  CPU ms: "
        + "  ".join(f"{group} {ms:.2f}" for group, ms in cpu.items()),
        flush=True,
    )
    return cost


def rate(result: Measured) -> str:
    if result.unit == "MB/s":
        return f"{result.bytes / result.seconds / 1e6:,.0f} MB/s" if result.seconds else "-"
    return f"{result.done / result.seconds:,.0f} ops/s" if result.seconds else "-"


# --- the workloads -------------------------------------------------------------------------------


def per_request_costs(cluster: Cluster, plan: Plan, stop: threading.Event) -> list[Cost]:
    target = Target("ours", cluster.endpoint, cluster.access_key, cluster.secret_key)
    target.new_client().create_bucket(Bucket=BUCKET)
    meter = CpuMeter(cluster)
    costs: list[Cost] = []
    written: list[str] = []  # deleted at the end, in batches of 1000

    def rows(size: int, threads: int, count: int, unit: str) -> None:
        payload = os.urandom(size)
        keys = [f"{size}/{i}" for i in range(count)]
        done: list[str] = []
        name = f"{size // MIB} MiB" if size >= MIB else f"{size // KIB} KiB"
        clients = target.clients(threads)

        def run(
            op: Op[str], items: Sequence[str], record: list[str] | None = None
        ) -> Callable[[], Measured]:
            return lambda: drive(name, unit, clients, items, op, plan.budget, stop, record)

        costs.append(
            measure(
                f"PutObject {name} ({threads} thr)",
                "PutObject",
                cluster.endpoint,
                meter,
                run(put_op(BUCKET, payload), keys, done),
            )
        )
        costs.append(
            measure(
                f"GetObject {name} ({threads} thr)",
                "GetObject",
                cluster.endpoint,
                meter,
                run(get_op(BUCKET, size), done),
            )
        )
        if size < MIB:
            costs.append(
                measure(
                    f"HeadObject ({threads} thr)",
                    "HeadObject",
                    cluster.endpoint,
                    meter,
                    run(head_op(BUCKET, size), done),
                )
            )
        written.extend(done)

    rows(4 * KIB, 8, plan.small_count, "ops/s")
    rows(1 * MIB, 4, plan.small_count // 4, "MB/s")
    rows(64 * MIB, 2, plan.big_count, "MB/s")

    filled = populate(target, "listing", [], plan.list_keys, 8, 300, stop, copy=True)
    walker = RawListWalker("listing", len(filled.keys))
    raw = RawS3(target)
    try:
        costs.append(
            measure(
                "ListObjectsV2 1000 keys (raw, 1 thr)",
                "ListObjectsV2",
                cluster.endpoint,
                meter,
                lambda: drive(
                    "ListObjectsV2", "ops/s", [raw], range(200), walker, plan.budget, stop
                ),
            )
        )
    finally:
        raw.close()
    clients = target.clients(1)
    for bucket, keys in (("listing", filled.keys), (BUCKET, written)):
        batches = [keys[i : i + 1000] for i in range(0, len(keys), 1000)]
        delete = functools.partial(
            drive, "DeleteObjects", "ops/s", clients, batches, delete_objects_op(bucket)
        )
        costs.append(
            measure(
                f"DeleteObjects of 1000 ({bucket}, 1 thr)",
                "DeleteObjects",
                cluster.endpoint,
                meter,
                functools.partial(delete, plan.budget, stop),
            )
        )
    return costs


def scale_out(cluster: Cluster, plan: Plan, stop: threading.Event) -> list[tuple[str, Measured]]:
    second = ExtraGateway(cluster).start()
    try:
        a = Target("A", cluster.endpoint, cluster.access_key, cluster.secret_key)
        b = Target("B", second.endpoint, cluster.access_key, cluster.secret_key)
        # The same objects through either gateway.
        for writer, reader in ((a, b), (b, a)):
            body = os.urandom(3 * MIB + 17)
            key = f"via-{writer.name}"
            writer.new_client().put_object(Bucket=BUCKET, Key=key, Body=body)
            got = reader.new_client().get_object(Bucket=BUCKET, Key=key)["Body"].read()
            if got != body:
                raise SystemExit(f"{key}: read through {reader.name} differs")
        print("  objects written through either gateway read back through the other: ok")

        payload = os.urandom(4 * KIB)
        keys = [f"scale/{i}" for i in range(plan.small_count)]
        results: list[tuple[str, Measured]] = []
        for label, clients in (
            ("one gateway", a.clients(8)),
            ("two gateways", a.clients(4) + b.clients(4)),
        ):
            put = drive("PUT", "ops/s", clients, keys, put_op(BUCKET, payload), plan.budget, stop)
            get = drive(
                "GET",
                "ops/s",
                clients,
                keys[: put.done],
                get_op(BUCKET, len(payload)),
                plan.budget,
                stop,
            )
            for name, result in ((f"PUT 4 KiB, {label}", put), (f"GET 4 KiB, {label}", get)):
                results.append((name, result))
                print(f"  {name:<34} {rate(result):>12}  errors {result.errors}", flush=True)
        return results
    finally:
        second.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (about a minute)")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="VAR=VALUE",
        help="a setting for every cluster process, e.g. S3COMPAT_INLINE_MAX=0 (repeatable)",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    stop = threading.Event()
    env = {**default_cluster_env(), "S3COMPAT_WORKERS": "1"}
    for setting in args.env:
        var, sep, value = setting.partition("=")
        if not sep:
            parser.error(f"--env wants VAR=VALUE, not {setting!r}")
        env[var] = value
    with tempfile.TemporaryDirectory(prefix="s3compat-scale-") as tmp:
        cluster = Cluster(Path(tmp) / "cluster", env=env).start()
        try:
            print(f"== cost per request (one gateway worker; {os.cpu_count()} cores) ==")
            costs = per_request_costs(cluster, plan, stop)
            print("== two gateways on one database and one set of nodes ==")
            scaled = scale_out(cluster, plan, stop)
        finally:
            cluster.stop()
    failed = sum(c.measured.errors for c in costs) + sum(m.errors for _, m in scaled)
    print(f"failed requests: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
