"""PostgreSQL restarts under traffic: requests in flight fail with 503 ServiceUnavailable
(never a 500, never wrong bytes), later ones succeed, and the gateway is the same process
throughout (no restart needed).

The embedded PostgreSQL is a child of the `s3compat dev` supervisor, which stops the whole
cluster if the postmaster exits, so the postmaster itself is never stopped. Two ways of
restarting the database server without that:

- crash-restart: one backend is killed with -9. The postmaster then terminates every
  other server process, throws away shared memory, replays the WAL and accepts
  connections again: everything a restart after a crash does, with the same postmaster.
- terminate-backends: every connection of the gateway is ended by the server
  (pg_terminate_backend), as a fast shutdown ends them (57P01 admin shutdown).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from tests.chaos.conftest import (
    MiB,
    PatternReader,
    PutOutcome,
    chaos_cluster,
    children,
    client,
    health,
    is_missing,
    log_lines,
    object_sha256,
    run_threads,
    streaming_put,
    wait_settled,
)
from tests.cluster import Cluster, wait_for

pytestmark = pytest.mark.slow

BIG = 96 * MiB


@pytest.fixture(scope="module")
def pc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with chaos_cluster(tmp_path_factory.mktemp("chaos-postgres")) as c:
        yield c


def _pg_log(cluster: Cluster) -> str:
    return (cluster.data_dir / "postgres" / "postgres.log").read_text(errors="replace")


def _client_backends(cluster: Cluster) -> dict[int, str]:
    """Server processes serving a client of the s3compat database."""
    return {
        pid: cmd
        for pid, cmd in children(cluster.pid("postgres")).items()
        if "postgres s3compat" in cmd
    }


def _crash_restart(cluster: Cluster) -> None:
    victim, cmd = next(iter(_client_backends(cluster).items()))
    print(f"kill -9 {victim} ({cmd})")
    os.kill(victim, signal.SIGKILL)


def _terminate_backends(cluster: Cluster) -> None:
    rows = cluster.sql(
        "SELECT pid, pg_terminate_backend(pid) AS ok FROM pg_stat_activity "
        "WHERE datname = 's3compat' AND pid <> pg_backend_pid()"
    )
    print(f"terminated {sum(r['ok'] for r in rows)} backends")


@dataclass
class Traffic:
    """Clients doing PutObject, GetObject, HeadObject and ListObjectsV2 in a loop; every
    outcome recorded as "ok" or the S3 error code (or the exception's type)."""

    s3: Any
    bucket: str
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[float, str, str]] = field(default_factory=list)
    acknowledged: dict[str, bytes] = field(default_factory=dict)
    refused: dict[str, bytes] = field(default_factory=dict)
    last_ok: dict[int, float] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def _call(self, worker: int, op: str, fn: Callable[[], Any]) -> bool:
        try:
            fn()
        except ClientError as exc:
            code = str(exc.response["Error"]["Code"])
            status = exc.response["ResponseMetadata"].get("HTTPStatusCode")
            self.outcomes[f"{op} {status} {code}"] += 1
            self.failures.append((time.monotonic(), op, f"{status} {code}"))
            return False
        except BotoCoreError as exc:
            self.outcomes[f"{op} {type(exc).__name__}"] += 1
            self.failures.append((time.monotonic(), op, type(exc).__name__))
            return False
        self.outcomes[f"{op} ok"] += 1
        self.last_ok[worker] = time.monotonic()
        return True

    def run(self, worker: int) -> None:
        rng = random.Random(worker)
        n = 0
        while not self.stop.is_set():
            n += 1
            size = rng.choice([10, 5000, 300_000, 3 * 1024 * 1024])
            self._round(worker, f"w{worker}-{n}", rng.randbytes(size))

    def run_lists(self, worker: int) -> None:
        while not self.stop.is_set():
            self._call(worker, "ListObjectsV2", lambda: self.s3.list_objects_v2(Bucket=self.bucket))

    def _round(self, worker: int, key: str, data: bytes) -> None:
        s3, bucket = self.s3, self.bucket
        if not self._call(
            worker, "PutObject", lambda: s3.put_object(Bucket=bucket, Key=key, Body=data)
        ):
            self.refused[key] = data
            return
        self.acknowledged[key] = data

        def get() -> None:
            got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            assert got == data, key

        self._call(worker, "GetObject", get)
        self._call(worker, "HeadObject", lambda: s3.head_object(Bucket=bucket, Key=key))
        self._call(
            worker,
            "ListObjectsV2",
            lambda: s3.list_objects_v2(Bucket=bucket, Prefix=f"w{worker}-"),
        )


class WrongStatus(AssertionError):
    """A request failed with something other than 503 ServiceUnavailable."""


def _restart_under_traffic(
    pc: Cluster, bucket: str, restart: Callable[[Cluster], None], rounds: int
) -> tuple[Traffic, str]:
    """Traffic (four mixed clients, two listing clients, one 96 MiB upload) while
    `restart` runs `rounds` times, half a second apart; then every check but the one on
    the failures' status (`_only_503`). Returns the traffic and PostgreSQL's log of it."""
    s3 = client(pc)
    s3.create_bucket(Bucket=bucket)
    for n in range(20):
        s3.put_object(Bucket=bucket, Key=f"listed-{n}", Body=b"x" * n)
    gateway, postmaster = pc.pid("gateway"), pc.pid("postgres")
    backends_before = set(_client_backends(pc))
    log_offset = len(_pg_log(pc))
    traffic = Traffic(s3, bucket)
    workers, listers = 4, 2
    restarted_at: list[float] = []
    # A big upload streaming while the database restarts: its blob row was written before,
    # its heartbeats and its commit come during or after.
    big = PatternReader(BIG, 42)
    big_outcome: list[PutOutcome] = []

    def upload() -> None:
        big_outcome.append(streaming_put(pc, f"/{bucket}/big", big))

    def scenario() -> None:
        try:
            time.sleep(2)
            assert wait_for(lambda: BIG - big.left > 16 * MiB, timeout=30, interval=0.05)
            restarted_at.append(time.monotonic())
            for n in range(rounds):
                if n:
                    time.sleep(0.5)
                restart(pc)
            # Every client gets requests through again, then a little more traffic.
            assert wait_for(
                lambda: (
                    len(traffic.last_ok) == workers + listers
                    and min(traffic.last_ok.values()) > time.monotonic() - 0.5
                ),
                timeout=60,
                interval=0.2,
            )
            time.sleep(1)
        finally:
            traffic.stop.set()

    errors = run_threads(
        [
            *(lambda w=w: traffic.run(w) for w in range(workers)),
            *(lambda w=w: traffic.run_lists(w) for w in range(workers, workers + listers)),
            scenario,
            upload,
        ]
    )
    print(dict(sorted(traffic.outcomes.items())))
    if traffic.failures:
        first, last = traffic.failures[0][0], traffic.failures[-1][0]
        print(
            f"{len(traffic.failures)} failures from {first - restarted_at[0]:+.2f}s to "
            f"{last - restarted_at[0]:+.2f}s after the first restart"
        )
    assert not errors, errors
    assert not backends_before & set(_client_backends(pc)), "every connection was replaced"
    # The same gateway and postmaster serve on; the supervisor never stopped.
    assert pc.proc is not None and pc.proc.poll() is None
    assert (pc.pid("gateway"), pc.pid("postgres")) == (gateway, postmaster)
    status, report = health(pc)
    assert status == 200 and report["database"]["status"] == "ok"
    # Acknowledged writes are there, byte for byte. A refused PutObject may still have
    # committed (the answer to COMMIT can be what was lost): absent or whole, never torn.
    for key, data in traffic.acknowledged.items():
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data, key
    for key, data in traffic.refused.items():
        assert is_missing(s3, bucket, key) or (
            s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data
        ), key
    [outcome] = big_outcome
    print(f"{BIG // MiB} MiB PutObject across the restart: {outcome.status} {outcome.error}")
    if outcome.status == 200:
        assert object_sha256(s3, bucket, "big") == (big.sha256.hexdigest(), BIG)
    else:
        assert outcome.status == 503 and b"ServiceUnavailable" in outcome.body, outcome
        assert is_missing(s3, bucket, "big")
    # Writes cut short by the restart are collected.
    wait_settled(pc, timeout=120)
    return traffic, _pg_log(pc)[log_offset:]


def _only_503(pc: Cluster, traffic: Traffic) -> None:
    """Failures are 503 ServiceUnavailable only: no 500, no broken connection. (A HEAD
    answer has no body: botocore names its error by the status.)"""
    failed = {k: v for k, v in traffic.outcomes.items() if not k.endswith(" ok")}
    wrong = {
        k: v
        for k, v in failed.items()
        if not (k.endswith(" 503 ServiceUnavailable") or k == "HeadObject 503 503")
    }
    if wrong:
        causes = log_lines(pc, "gateway", "asyncpg.exceptions")
        raise WrongStatus(f"{wrong} (all failures: {failed}); gateway log: {causes[-3:]}")


def test_postgres_crash_restart_under_traffic(pc: Cluster) -> None:
    traffic, log = _restart_under_traffic(pc, "chaos-pg-crash", _crash_restart, rounds=1)
    # The server really went through a crash restart, with the same postmaster.
    assert "terminating any other active server processes" in log
    assert "all server processes terminated; reinitializing" in log
    assert "database system is ready to accept connections" in log
    _only_503(pc, traffic)


def test_connections_ended_by_postgres_are_503(pc: Cluster) -> None:
    """What a fast shutdown or `pg_ctl restart -m fast` does to every client: the server
    ends its connections (57P01 admin shutdown), here ten times under traffic."""
    traffic, log = _restart_under_traffic(pc, "chaos-pg-terminate", _terminate_backends, rounds=10)
    assert "terminating connection due to administrator command" in log
    _only_503(pc, traffic)
