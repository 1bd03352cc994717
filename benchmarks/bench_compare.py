"""s3compat against moto, side by side, in one run. Prints a comparison table, asserts nothing.

Starts our dev cluster (`s3compat dev`: embedded PostgreSQL, six storage nodes, one gateway,
in a temporary directory, with the product's default settings), moto's standalone server
(in memory) and a bare Starlette endpoint (the raw ceiling), then drives every workload
against ours and moto alternately (ours, moto, moto, ours: two rounds each, so drift in
the machine's load hits both alike) with identically configured boto3 clients:

- PUT and GET of 4 KiB (8 threads), 1 MiB (4) and 64 MiB (2); PUT in both of boto3's
  request checksum modes (`when_supported`, the default, and `when_required`);
- a multipart upload (64 MiB parts, 4 threads, from a generated stream) and a parallel
  ranged download of one big object: 1 GiB (256 MiB with --quick);
- HEAD of 4 KiB objects (8 threads);
- ListObjectsV2 pages of 1000 keys in a bucket of 10k empty objects, then the same bucket
  grown to 100k (not with --quick), each twice: through boto3 (whose parsing of a page costs
  about 100 ms of client CPU, more than either server) and as signed raw requests read
  with lxml (the servers' own cost); then DeleteObjects in batches of 1000 over it. Filling
  is timed apart from the rows: CopyObject of one empty object for ours (metadata only),
  0-byte PUTs for moto (the faster way for each), signed raw requests on many threads;
- the raw ceiling: the bare endpoint (same uvicorn options as the gateway) taking 64 MiB
  PUTs and streaming 64 MiB GETs, and one storage node's own write speed over gRPC.

Every phase is bounded in count and in time. For each row it prints MB/s or ops/s, p50 and
p99 latency, the ratio ours/moto, the peak RSS of our gateway, of all our processes
together (gateway, nodes, PostgreSQL) and of moto. Everything shares this machine's cores
with the client: read the numbers as "the whole system on N cores".

Exits 1 only if a request failed (or a server would not start); never for speed.

Run: `python benchmarks/bench_compare.py [--quick]` (or `make bench` / `make bench-quick`)
"""

from __future__ import annotations

import argparse
import datetime
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Runnable from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_cluster import KIB, MIB, cluster_rss, mib, proc_status_kib
from compare_load import (
    CHECKSUM_MODES,
    DEFAULT_MODE,
    Filled,
    ListWalker,
    Measured,
    RawListWalker,
    RawS3,
    Target,
    delete_objects_op,
    download_op,
    drive,
    get_op,
    head_op,
    node_writes,
    populate,
    put_op,
    transfer_config,
    upload_op,
)
from compare_servers import (
    GroupSampler,
    Server,
    ceiling_server,
    machine_description,
    moto_server,
    process_tree,
)

from s3compat.settings import Settings
from tests.cluster import TEST_ENV, Cluster

GIB = 1024 * MIB
START_TIMEOUT = 120.0
PART_SIZE = 64 * MIB
TRANSFER_THREADS = 4


@dataclass(frozen=True)
class Plan:
    """Counts (per server and phase) and time budgets (seconds per server and phase)."""

    name: str
    small_count: int  # 4 KiB objects per PUT phase
    small_budget: float  # each 4 KiB / 1 MiB / HEAD phase
    mid_count: int  # 1 MiB objects per PUT phase
    big_count: int  # 64 MiB objects per PUT phase
    big_budget: float
    head_count: int
    multipart_size: int
    list_sizes: tuple[int, ...]
    list_pages: int
    list_budget: float
    populate_threads: int
    populate_budget: float  # per server and bucket
    delete_budget: float
    ceiling_count: int  # 64 MiB requests per ceiling phase


QUICK = Plan(
    name="quick",
    small_count=600,
    small_budget=3.0,
    mid_count=120,
    big_count=4,
    big_budget=15.0,
    head_count=1500,
    multipart_size=256 * MIB,
    list_sizes=(10_000,),
    list_pages=40,
    list_budget=4.0,
    populate_threads=16,
    populate_budget=60.0,
    delete_budget=10.0,
    ceiling_count=4,
)

FULL = Plan(
    name="full",
    small_count=4000,
    small_budget=15.0,
    mid_count=600,
    big_count=12,
    big_budget=60.0,
    head_count=8000,
    multipart_size=1 * GIB,
    list_sizes=(10_000, 100_000),
    list_pages=200,
    list_budget=20.0,
    populate_threads=32,
    populate_budget=420.0,
    delete_budget=40.0,
    ceiling_count=8,
)


def size_name(size: int) -> str:
    if size >= GIB and size % GIB == 0:
        return f"{size // GIB} GiB"
    if size >= MIB:
        return f"{size // MIB} MiB"
    return f"{size // KIB} KiB"


@dataclass
class Row:
    label: str
    threads: int
    unit: str
    results: dict[str, Measured]  # by target name
    note: str = ""


@dataclass
class Bench:
    plan: Plan
    ours: Target
    moto: Target
    sampler: GroupSampler
    stop: threading.Event
    rows: list[Row] = field(default_factory=list)
    ceiling: list[Row] = field(default_factory=list)
    fills: list[tuple[int, dict[str, Filled]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def targets(self) -> list[Target]:
        return [self.ours, self.moto]

    def alternate(
        self,
        label: str,
        unit: str,
        threads: int,
        run: Callable[[Target, int, int, float], Measured],
        budget: float,
        rounds: int = 2,
        flip: bool = False,
        note: str = "",
    ) -> Row:
        """`run(target, round, rounds, seconds)` for ours and moto in turn: two rounds each
        as ours, moto, moto, ours; one round each as ours, moto (moto, ours if `flip`)."""
        if rounds == 2:
            order = [self.ours, self.moto, self.moto, self.ours]
        else:
            order = [self.moto, self.ours] if flip else [self.ours, self.moto]
        merged: dict[str, Measured] = {}
        seen: dict[str, int] = {}
        for target in order:
            if self.stop.is_set():
                raise KeyboardInterrupt
            r = seen.get(target.name, 0)
            seen[target.name] = r + 1
            result = run(target, r, rounds, budget / rounds)
            previous = merged.get(target.name)
            merged[target.name] = previous.merge(result) if previous else result
        row = Row(label, threads, unit, merged, note)
        self.rows.append(row)
        ours, moto = merged[self.ours.name], merged[self.moto.name]
        print(
            f"  {label:<38} ours {fmt_rate(ours):>14}   moto {fmt_rate(moto):>14}   "
            f"{ratio(ours, moto):>7}",
            flush=True,
        )
        return row

    # --- workloads ---------------------------------------------------------------------------

    def put_get(self, size: int, threads: int, count: int, budget: float) -> dict[str, list[str]]:
        """PUT `count` objects per checksum mode, then GET what was written; returns the keys
        written on each target."""
        name = size_name(size)
        slug = name.replace(" ", "").lower()
        payload = os.urandom(size)
        unit = "ops/s" if size < MIB else "MB/s"
        written: dict[str, list[str]] = {t.name: [] for t in self.targets}
        for mode in CHECKSUM_MODES:
            keys = [f"{slug}/{mode}/{i:06d}" for i in range(count)]

            def put(
                target: Target,
                r: int,
                rounds: int,
                seconds: float,
                keys: Any = keys,
                mode: str = mode,
            ) -> Measured:
                return drive(
                    f"PUT {name}",
                    unit,
                    target.clients(threads, mode),
                    part(keys, r, rounds),
                    put_op(target.bucket, payload),
                    seconds,
                    self.stop,
                    written[target.name],
                )

            self.alternate(f"PUT {name} [{mode}]", unit, threads, put, budget)

        def get(target: Target, r: int, rounds: int, seconds: float) -> Measured:
            return drive(
                f"GET {name}",
                unit,
                target.clients(threads),
                part(written[target.name], r, rounds),
                get_op(target.bucket, size),
                seconds,
                self.stop,
            )

        self.alternate(f"GET {name}", unit, threads, get, budget)
        return written

    def head(self, keys: dict[str, list[str]], size: int) -> None:
        threads = 8

        def run(target: Target, r: int, rounds: int, seconds: float) -> Measured:
            pool = keys[target.name]
            items = [pool[i % len(pool)] for i in range(self.plan.head_count)] if pool else []
            return drive(
                f"HEAD {size_name(size)}",
                "ops/s",
                target.clients(threads),
                part(items, r, rounds),
                head_op(target.bucket, size),
                seconds,
                self.stop,
            )

        self.alternate(f"HEAD {size_name(size)}", "ops/s", threads, run, self.plan.small_budget)

    def multipart(self) -> None:
        size = self.plan.multipart_size
        name = size_name(size)
        config = transfer_config(PART_SIZE, TRANSFER_THREADS)
        uploaded: dict[str, list[str]] = {t.name: [] for t in self.targets}
        note = f"{PART_SIZE // MIB} MiB parts"
        for i, mode in enumerate(CHECKSUM_MODES):
            key = f"multipart/{mode}"

            def up(
                target: Target,
                r: int,
                rounds: int,
                seconds: float,
                mode: str = mode,
                key: str = key,
            ) -> Measured:
                return drive(
                    f"multipart up {name}",
                    "MB/s",
                    target.clients(1, mode),
                    [key],
                    upload_op(target.bucket, size, config),
                    seconds,
                    self.stop,
                    uploaded[target.name],
                )

            self.alternate(
                f"multipart PUT {name} [{mode}]",
                "MB/s",
                TRANSFER_THREADS,
                up,
                budget=3600,
                rounds=1,
                flip=bool(i % 2),
                note=note,
            )

        def down(target: Target, r: int, rounds: int, seconds: float) -> Measured:
            return drive(
                f"multipart down {name}",
                "MB/s",
                target.clients(1),
                uploaded[target.name][:1],
                download_op(target.bucket, size, config),
                seconds,
                self.stop,
            )

        self.alternate(
            f"multipart GET {name} (ranged)",
            "MB/s",
            TRANSFER_THREADS,
            down,
            budget=3600,
            rounds=1,
            flip=True,
            note=note,
        )
        self.delete_untimed(uploaded)

    def listing(self) -> dict[str, Filled]:
        """Fill one bucket to each of plan.list_sizes in turn (10k, then on to 100k) and time
        ListObjectsV2 pages at each size; returns the last filling of each target."""
        bucket = "list"
        fill: dict[str, Filled] = {}
        copy = {self.ours.name: True, self.moto.name: False}  # the faster way for each
        for n in self.plan.list_sizes:
            for target in self.targets:
                have = fill[target.name].keys if target.name in fill else []
                print(f"  filling {target.name}'s bucket to {n:,} keys …", flush=True)
                f = populate(
                    target,
                    bucket,
                    have,
                    n,
                    self.plan.populate_threads,
                    self.plan.populate_budget,
                    self.stop,
                    copy[target.name],
                )
                fill[target.name] = f
                print(
                    f"  … {f.added:,} keys in {f.seconds:.1f}s "
                    f"({f.added / f.seconds:,.0f}/s, {f.errors} errors)",
                    flush=True,
                )
            self.fills.append((n, dict(fill)))
            made = {t: len(f.keys) for t, f in fill.items()}
            note = "" if set(made.values()) == {n} else f"keys: {made}"

            def run(target: Target, r: int, rounds: int, seconds: float) -> Measured:
                walker = ListWalker(bucket, len(fill[target.name].keys))
                return drive(
                    "ListObjectsV2",
                    "ops/s",
                    target.clients(1),
                    range(self.plan.list_pages // rounds),
                    walker,
                    seconds,
                    self.stop,
                )

            self.alternate(
                f"ListObjectsV2 1000 of {n // 1000}k",
                "ops/s",
                1,
                run,
                self.plan.list_budget,
                note=note,
            )

            def run_raw(target: Target, r: int, rounds: int, seconds: float) -> Measured:
                walker = RawListWalker(bucket, len(fill[target.name].keys))
                raw = RawS3(target)
                try:
                    return drive(
                        "ListObjectsV2 raw",
                        "ops/s",
                        [raw],
                        range(self.plan.list_pages // rounds),
                        walker,
                        seconds,
                        self.stop,
                    )
                finally:
                    raw.close()

            self.alternate(
                f"ListObjectsV2 1000 of {n // 1000}k, raw + lxml",
                "ops/s",
                1,
                run_raw,
                self.plan.list_budget,
                note=note,
            )
        return fill

    def delete_objects(self, fill: dict[str, Filled]) -> None:
        threads = 2
        n = max(self.plan.list_sizes)

        def run(target: Target, r: int, rounds: int, seconds: float) -> Measured:
            keys = fill[target.name].keys
            batches = [keys[i : i + 1000] for i in range(0, len(keys), 1000)]
            return drive(
                "DeleteObjects",
                "ops/s",
                target.clients(threads),
                part(batches, r, rounds),
                delete_objects_op("list"),
                seconds,
                self.stop,
            )

        self.alternate(
            f"DeleteObjects 1000 of {n // 1000}k", "ops/s", threads, run, self.plan.delete_budget
        )

    def delete_untimed(self, keys: dict[str, list[str]]) -> None:
        """Drop objects a workload is done with (frees moto's memory, our disk), untimed."""
        for target in self.targets:
            names = sorted(set(keys[target.name]))
            client = target.clients(1)[0]
            for i in range(0, len(names), 1000):
                client.delete_objects(
                    Bucket=target.bucket,
                    Delete={"Objects": [{"Key": k} for k in names[i : i + 1000]], "Quiet": True},
                )

    # --- the raw ceiling ---------------------------------------------------------------------

    def run_ceiling(self, ceiling: Target, node_address: str, token: str) -> None:
        size = 64 * MIB
        threads = 2
        count = self.plan.ceiling_count
        payload = os.urandom(size)
        measured = node_writes(node_address, token, payload, count, threads, self.stop)
        self.ceiling.append(
            Row("node write 64 MiB (one node, gRPC)", threads, "MB/s", {"ours": measured})
        )
        print(f"  {self.ceiling[-1].label:<38} {fmt_rate(measured):>14}", flush=True)
        keys = [f"{size}/{i}" for i in range(count)]
        for mode in CHECKSUM_MODES:
            m = drive(
                "ceiling PUT",
                "MB/s",
                ceiling.clients(threads, mode),
                keys,
                put_op(ceiling.bucket, payload),
                self.plan.big_budget,
                self.stop,
            )
            self.ceiling.append(Row(f"bare PUT 64 MiB [{mode}]", threads, "MB/s", {"ceiling": m}))
            print(f"  {self.ceiling[-1].label:<38} {fmt_rate(m):>14}", flush=True)
        m = drive(
            "ceiling GET",
            "MB/s",
            ceiling.clients(threads),
            keys,
            get_op(ceiling.bucket, size),
            self.plan.big_budget,
            self.stop,
        )
        self.ceiling.append(Row("bare GET 64 MiB", threads, "MB/s", {"ceiling": m}))
        print(f"  {self.ceiling[-1].label:<38} {fmt_rate(m):>14}", flush=True)


def part(items: list[Any], r: int, rounds: int) -> list[Any]:
    """Round `r`'s share of `items` (contiguous, as equal as can be)."""
    n = len(items)
    return items[n * r // rounds : n * (r + 1) // rounds]


# --- report --------------------------------------------------------------------------------


def fmt_rate(m: Measured | None) -> str:
    if m is None or not m.done:
        return "-"
    return f"{m.rate:,.1f} {m.unit}"


def ratio(ours: Measured | None, other: Measured | None) -> str:
    if not ours or not other or not ours.done or not other.done or not other.rate:
        return "-"
    return f"{ours.rate / other.rate:.2f}×"


def fmt_ms(m: Measured | None, q: float) -> str:
    if m is None or not m.latencies:
        return "-"
    v = m.percentile(q)
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def fmt_mib(kib: int) -> str:
    return f"{kib / 1024:.0f}" if kib else "-"


def print_table(bench: Bench) -> None:
    s = bench.sampler
    head = (
        f"{'workload':<38} {'thr':>3} {'ours':>14} {'moto':>14} {'ours/moto':>9} "
        f"{'p50 ms ours/moto':>17} {'p99 ms ours/moto':>17} "
        f"{'gw':>5} {'ours':>5} {'moto':>5} {'n ours/moto':>12} {'err':>4} {'retry':>5}"
    )
    print(head)
    print("-" * len(head))
    for row in bench.rows:
        ours = row.results.get("ours")
        moto = row.results.get("moto")
        wo = ours.windows if ours else []
        wm = moto.windows if moto else []
        n = f"{ours.done if ours else 0}/{moto.done if moto else 0}"
        err = (ours.errors if ours else 0) + (moto.errors if moto else 0)
        retry = (ours.retries if ours else 0) + (moto.retries if moto else 0)
        print(
            f"{row.label:<38} {row.threads:>3} {fmt_rate(ours):>14} {fmt_rate(moto):>14} "
            f"{ratio(ours, moto):>9} "
            f"{fmt_ms(ours, 50) + ' / ' + fmt_ms(moto, 50):>17} "
            f"{fmt_ms(ours, 99) + ' / ' + fmt_ms(moto, 99):>17} "
            f"{fmt_mib(s.peak_kib('gateway', wo)):>5} {fmt_mib(s.peak_kib('ours', wo)):>5} "
            f"{fmt_mib(s.peak_kib('moto', wm)):>5} {n:>12} {err:>4} {retry:>5}"
            + (f"  ({row.note})" if row.note else "")
        )


def print_ceiling(bench: Bench) -> None:
    by_label = {r.label: r.results.get("ours") for r in bench.rows}
    compare = {
        "node write 64 MiB (one node, gRPC)": f"PUT 64 MiB [{DEFAULT_MODE}]",
        **{f"bare PUT 64 MiB [{m}]": f"PUT 64 MiB [{m}]" for m in CHECKSUM_MODES},
        "bare GET 64 MiB": "GET 64 MiB",
    }
    head = (
        f"{'stage':<38} {'thr':>3} {'rate':>14} {'p50 ms':>8} {'p99 ms':>8} {'n':>4} "
        f"{'err':>4}  ours' same workload"
    )
    print(head)
    print("-" * len(head))
    for row in bench.ceiling:
        m = next(iter(row.results.values()))
        ours = by_label.get(compare.get(row.label, ""))
        share = (
            f"{fmt_rate(ours)} = {100 * ours.rate / m.rate:.0f}% of this"
            if ours and ours.done and m.done and m.rate
            else "-"
        )
        print(
            f"{row.label:<38} {row.threads:>3} {fmt_rate(m):>14} {fmt_ms(m, 50):>8} "
            f"{fmt_ms(m, 99):>8} {m.done:>4} {m.errors:>4}  {share}"
        )


def print_fills(bench: Bench) -> None:
    for n, fill in bench.fills:
        for name, f in fill.items():
            rate = f.added / f.seconds if f.seconds else 0
            print(
                f"  to {n // 1000}k: {name:<4} +{f.added:,} keys in {f.seconds:.1f}s "
                f"({rate:,.0f}/s, {f.errors} errors; {f.method})"
            )


def pss_kib(pid: int) -> int:
    """Proportional set size: shared pages divided among the processes that map them."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def default_cluster_env() -> dict[str, str]:
    """Undo the tests' fast janitor (tests.cluster.TEST_ENV): the product's defaults."""
    defaults = Settings()
    env = {}
    for var in TEST_ENV:
        attr = var.removeprefix("S3COMPAT_").lower()
        if hasattr(defaults, attr):
            env[var] = str(getattr(defaults, attr))
    return env


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@dataclass
class Servers:
    cluster: Cluster
    moto: Server
    ceiling: Server

    def roots(self) -> dict[str, list[int]]:
        """The root pids of each memory group, re-read (a restarted child gets a new pid)."""
        ours = {n: int(p) for n, p in self.cluster.info["pids"].items() if p}
        return {
            "gateway": [ours["gateway"]],
            "ours": list(ours.values()),
            "moto": [self.moto.pid] if self.moto.proc else [],
            "ceiling": [self.ceiling.pid] if self.ceiling.proc else [],
        }


def run_all(bench: Bench, servers: Servers, ceiling: Target) -> None:
    plan = bench.plan
    section = time.monotonic()
    print("raw ceiling …", flush=True)
    node_address = next(iter(servers.cluster.info["nodes"].values()))
    bench.run_ceiling(ceiling, node_address, servers.cluster.node_env["S3COMPAT_NODE_TOKEN"])
    ceiling.close()
    servers.ceiling.stop()
    bench.notes.append(f"ceiling {time.monotonic() - section:.0f}s")

    for size, threads, count, budget in (
        (4 * KIB, 8, plan.small_count, plan.small_budget),
        (1 * MIB, 4, plan.mid_count, plan.small_budget),
        (64 * MIB, 2, plan.big_count, plan.big_budget),
    ):
        section = time.monotonic()
        print(f"{size_name(size)} objects …", flush=True)
        written = bench.put_get(size, threads, count, budget)
        if size == 4 * KIB:
            bench.head(written, size)
        bench.delete_untimed(written)
        bench.notes.append(f"{size_name(size)} {time.monotonic() - section:.0f}s")

    section = time.monotonic()
    print(f"multipart {size_name(plan.multipart_size)} …", flush=True)
    bench.multipart()
    bench.notes.append(f"multipart {time.monotonic() - section:.0f}s")

    section = time.monotonic()
    print("listing …", flush=True)
    fill = bench.listing()
    bench.notes.append(f"filling and listing {time.monotonic() - section:.0f}s")
    section = time.monotonic()
    print("DeleteObjects …", flush=True)
    bench.delete_objects(fill)
    bench.notes.append(f"DeleteObjects {time.monotonic() - section:.0f}s")


def report(bench: Bench, servers: Servers, idle_gw_kib: int) -> int:
    """Print every table; returns the number of failed requests."""
    plan, sampler = bench.plan, bench.sampler
    pids = {n: int(p) for n, p in servers.cluster.info["pids"].items() if p}
    gw_hwm = proc_status_kib(pids["gateway"], "VmHWM") or 0
    # Each worker's own peak (VmHWM): what one gateway process needs, whatever the count.
    worker_hwm = [
        (pid, proc_status_kib(pid, "VmHWM") or 0) for pid in process_tree(pids["gateway"])[1:]
    ]
    end_rss = cluster_rss(pids)
    end_pss = {
        group: sum(pss_kib(p) for root in roots for p in process_tree(root))
        for group, roots in servers.roots().items()
    }
    moto_now = sampler.current_kib("moto")
    sampler.stop()
    everything = [(0.0, float("inf"))]

    print()
    print(
        f"== s3compat vs moto ({plan.name}; MB = 10^6 bytes; p50/p99: latency per request, "
        "nearest rank; RSS in MiB, peak during the row: gw = our gateway, "
        "ours = gateway + nodes + PostgreSQL, moto = moto's server) =="
    )
    print_table(bench)
    if 100_000 not in plan.list_sizes:
        print("(--quick: the 100k-object ListObjectsV2 case was skipped; DeleteObjects on 10k)")
    if plan.multipart_size < GIB:
        print(f"(--quick: the multipart object is {size_name(plan.multipart_size)}, not 1 GiB)")
    print()
    print("== raw ceiling (same run): bare Starlette endpoint, gateway's uvicorn options ==")
    print_ceiling(bench)
    print()
    print("== filling the list bucket (timed separately, not part of any row) ==")
    print_fills(bench)
    print()
    print("== memory ==")
    print(
        f"  our gateway: idle {mib(idle_gw_kib)}, "
        f"peak {mib(sampler.peak_kib('gateway', everything))} "
        f"(VmRSS sampled every {sampler.interval:g}s, all its processes), "
        f"VmHWM {mib(gw_hwm)} (the supervising process)"
    )
    if worker_hwm:
        print(
            "  each gateway child's own peak (VmHWM): "
            + ", ".join(f"{pid}: {mib(kib)}" for pid, kib in worker_hwm)
        )
    print(
        f"  all ours: peak {mib(sampler.peak_kib('ours', everything))} "
        "(RSS summed: PostgreSQL's shared buffers count once per backend)"
    )
    for group, count, kib in end_rss:
        print(f"    at the end: {group:<9} {count:>2} proc  RSS {mib(kib):>12}")
    print(
        f"    at the end, PSS (shared pages split): gateway {mib(end_pss.get('gateway', 0))}, "
        f"all ours {mib(end_pss.get('ours', 0))}"
    )
    print(
        f"  moto: peak {mib(sampler.peak_kib('moto', everything))}, at the end {mib(moto_now)}; "
        f"ceiling app: peak {mib(sampler.peak_kib('ceiling', everything))}"
    )
    print()
    print(f"sections: {', '.join(bench.notes)}")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return sum(m.errors for row in bench.rows + bench.ceiling for m in row.results.values()) + sum(
        f.errors for _, fill in bench.fills for f in fill.values()
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer and smaller objects, no 100k bucket (under 3 minutes)",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the servers too, like Ctrl-C
    started = time.monotonic()
    now = datetime.datetime.now(datetime.UTC)
    settings = Settings.from_env()
    print(f"s3compat vs moto, {plan.name} mode, {now:%Y-%m-%d %H:%M} UTC")
    for line in machine_description():
        print(f"  {line}")
    print(f"  load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"  ours: s3compat dev, default settings (gateway workers {settings.workers}, "
        f"erasure {settings.ec_k}+{settings.ec_m}); moto: moto.server, in memory"
    )
    print(
        "  clients: boto3, path-style, us-east-1, standard retries (3 attempts), one "
        "session and client per thread; GET/HEAD/List/Delete at boto3's default checksums"
    )
    print(flush=True)

    stop = threading.Event()
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="s3c-compare-", ignore_cleanup_errors=True) as tmp:
        tmp_dir = Path(tmp)
        servers = Servers(
            Cluster(tmp_dir / "cluster", env=default_cluster_env()),
            moto_server(),
            ceiling_server(settings.workers),
        )
        targets: list[Target] = []
        bench: Bench | None = None
        idle_gw_kib = 0
        try:
            servers.cluster.start(timeout=START_TIMEOUT)
            servers.moto.start(tmp_dir, ready_path="/moto-api/")
            servers.ceiling.start(tmp_dir)
            cluster = servers.cluster
            idle_gw_kib = proc_status_kib(cluster.pid("gateway"), "VmRSS") or 0
            sampler = GroupSampler(servers.roots)
            sampler.start()
            print(
                f"servers up in {time.monotonic() - started:.1f}s: ours {cluster.endpoint}, "
                f"moto {servers.moto.endpoint}, ceiling {servers.ceiling.endpoint}",
                flush=True,
            )
            targets = [
                Target("ours", cluster.endpoint, cluster.access_key, cluster.secret_key),
                Target("moto", servers.moto.endpoint, "bench", "bench-secret"),
                Target("ceiling", servers.ceiling.endpoint, "bench", "bench-secret", "ceiling"),
            ]
            for t in targets[:2]:
                client = t.new_client()
                client.create_bucket(Bucket=t.bucket)
                client.close()
            bench = Bench(plan, targets[0], targets[1], sampler, stop)
            run_all(bench, servers, targets[2])
        except KeyboardInterrupt:
            stop.set()
            print("\ninterrupted; stopping the servers", file=sys.stderr)
            failures.append("interrupted")
        except Exception as exc:
            stop.set()
            print(f"bench_compare: {type(exc).__name__}: {exc}", file=sys.stderr)
            failures.append(f"{type(exc).__name__}: {exc}")
        try:
            if bench is not None and servers.cluster.proc is not None:
                errors = report(bench, servers, idle_gw_kib)
                if errors:
                    failures.append(f"{errors} requests failed (see stderr)")
        finally:
            stop.set()
            if bench is not None:
                bench.sampler.stop()
            for t in targets:
                t.close()
            servers.moto.stop()
            servers.ceiling.stop()
            servers.cluster.stop()
    print(f"total time {time.monotonic() - started:.1f}s")
    if failures:
        print("FAILED: " + "; ".join(failures), file=sys.stderr)
        return 130 if failures == ["interrupted"] else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
