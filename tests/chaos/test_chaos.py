"""Chaos on one cluster, scenario after scenario (each starts from a settled cluster):

- a storage node hangs (SIGSTOP) under concurrent GETs and PUTs: every request still
  finishes, the node's breaker opens, and closes again after SIGCONT;
- chunk files are corrupted, truncated and deleted on disk: GETs return the right bytes,
  and `s3compat scrub` finds the damage and rebuilds every file byte for byte;
- the gateway is killed with -9 in the middle of uploads: the supervisor restarts it,
  nothing partial is visible, and the janitor collects the chunks.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.conftest import (
    MiB,
    PatternReader,
    all_healthy,
    breaker,
    chaos_cluster,
    chunk_file,
    client,
    health,
    is_missing,
    kill9,
    metrics,
    object_blobs,
    run_threads,
    scrub,
    streaming_put,
    timed,
    wait_settled,
)
from tests.cluster import Cluster, stopped, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with chaos_cluster(tmp_path_factory.mktemp("chaos")) as c:
        yield c


@pytest.fixture
def calm(cc: Cluster) -> Iterator[Cluster]:
    """Each scenario starts and ends with every node healthy and nothing left to repair
    or collect, so damage never carries over from one scenario to the next."""
    assert wait_for(lambda: all_healthy(cc), timeout=60, interval=0.5)
    wait_settled(cc)
    yield cc
    assert wait_for(lambda: all_healthy(cc), timeout=60, interval=0.5)
    wait_settled(cc)


def _empty_bucket(s3: Any, bucket: str) -> None:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])
    s3.delete_bucket(Bucket=bucket)


# --- a hung node ------------------------------------------------------------------------


def test_hung_node_under_traffic(calm: Cluster) -> None:
    """SIGSTOP a node while two clients PUT and GET: every request still succeeds (no
    client retries), the breaker opens, and it closes again after SIGCONT."""
    cc = calm
    s3 = client(cc)
    bucket = "chaos-hang"
    s3.create_bucket(Bucket=bucket)
    seeded = {f"seed-{n}": random.Random(n).randbytes(n) for n in (1000, 3 * MiB + 5)}
    for key, data in seeded.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    victim = "node3"
    phase = ["healthy"]
    timings: dict[str, list[float]] = {}
    written: dict[str, bytes] = {}
    stop = threading.Event()

    def traffic(worker: int) -> None:
        rng = random.Random(worker)
        n = 0
        while not stop.is_set():
            n += 1
            key = f"w{worker}-{n}"
            data = rng.randbytes(rng.choice([1000, 700_000, 2 * MiB + 1, 6 * MiB]))
            start = time.monotonic()
            s3.put_object(Bucket=bucket, Key=key, Body=data)
            timings.setdefault(f"{phase[0]} PUT", []).append(time.monotonic() - start)
            written[key] = data
            for k, expected in ((key, data), *seeded.items()):
                start = time.monotonic()
                got = s3.get_object(Bucket=bucket, Key=k)["Body"].read()
                timings.setdefault(f"{phase[0]} GET", []).append(time.monotonic() - start)
                assert got == expected, k

    seen: set[str] = set()

    def scenario() -> None:
        try:
            time.sleep(2)
            with stopped(cc.pid(victim)):
                phase[0] = "hung"
                start = time.monotonic()

                def opened() -> bool:
                    seen.add(breaker(cc, victim))
                    return "open" in seen

                assert wait_for(opened, timeout=120, interval=0.2)
                print(f"breaker of {victim} open {time.monotonic() - start:.2f}s after SIGSTOP")
                phase[0] = "open"
                gauge = metrics(cc)[f's3compat_node_breaker_state{{node="{victim}"}}']
                assert gauge in (1.0, 2.0)  # open or half-open
                status, report = health(cc)
                assert status == 503 and report["nodes"][victim]["status"] == "unavailable"
                time.sleep(3)
            phase[0] = "resumed"
            start = time.monotonic()
            assert wait_for(lambda: breaker(cc, victim) == "closed", timeout=60, interval=0.2)
            print(f"breaker of {victim} closed {time.monotonic() - start:.2f}s after SIGCONT")
            phase[0] = "closed"
            time.sleep(2)
        finally:
            stop.set()

    errors = run_threads([lambda: traffic(1), lambda: traffic(2), scenario])
    for name, values in sorted(timings.items()):
        print(
            f"{name}: n={len(values)} median={statistics.median(values):.2f}s "
            f"max={max(values):.2f}s"
        )
    assert not errors, errors
    # PUTs and GETs finished while the node was stopped (with its breaker open, and most
    # likely before too) and after it ran again.
    assert {"open PUT", "open GET", "closed PUT", "closed GET"} <= set(timings)
    assert wait_for(lambda: all_healthy(cc), timeout=60, interval=0.5)
    for key, data in {**seeded, **written}.items():
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data, key
    print(f"{len(written)} objects written around the hang")
    # Chunks the hung node missed are rebuilt by the janitor (see `calm`).
    wait_settled(cc)
    for key, data in {**seeded, **written}.items():
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data, key
    _empty_bucket(s3, bucket)


# --- rotten chunks ----------------------------------------------------------------------


def _flip_every(step: int, start: int = 0) -> Callable[[bytes], bytes]:
    def damage(data: bytes) -> bytes:
        spoiled = bytearray(data)
        for at in range(start, len(spoiled), step):
            spoiled[at] ^= 0x5A
        return bytes(spoiled)

    return damage


def _flip_at(position: int) -> Callable[[bytes], bytes]:
    def damage(data: bytes) -> bytes:
        spoiled = bytearray(data)
        spoiled[position] ^= 0xFF
        return bytes(spoiled)

    return damage


DELETE = None


def _damage(
    cc: Cluster, plan: list[tuple[Any, int, Callable[[bytes], bytes] | None]]
) -> list[Path]:
    """Apply (blob, chunk index, damage) on disk; DELETE removes the file."""
    paths = []
    for blob, index, spoil in plan:
        path = chunk_file(cc, blob, index)
        if spoil is DELETE:
            path.unlink()
        else:
            data = path.read_bytes()
            spoiled = spoil(data)
            assert spoiled != data
            path.write_bytes(spoiled)
        paths.append(path)
    return paths


def _read_all(s3: Any, bucket: str, objects: dict[str, bytes]) -> None:
    for key, data in objects.items():
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data, key
        for first, last in ((0, 0), (len(data) // 3, len(data) - 2), (len(data) - 1, None)):
            if len(data) < 3:
                continue
            rng = f"bytes={first}-{'' if last is None else last}"
            got = s3.get_object(Bucket=bucket, Key=key, Range=rng)["Body"].read()
            assert got == data[first : None if last is None else last + 1], (key, rng)


def test_rotten_chunks_are_served_around_and_scrubbed(calm: Cluster) -> None:
    cc = calm
    s3 = client(cc)
    bucket = "chaos-rot"
    s3.create_bucket(Bucket=bucket)
    objects = {
        "small": random.Random(1).randbytes(1000),
        "mid": random.Random(2).randbytes(9 * MiB + 7),
    }
    for key, data in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    parts = [random.Random(3).randbytes(5 * MiB), random.Random(4).randbytes(3 * MiB + 1)]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="multi")["UploadId"]
    done = [
        {
            "PartNumber": n,
            "ETag": s3.upload_part(
                Bucket=bucket, Key="multi", UploadId=upload, PartNumber=n, Body=body
            )["ETag"],
        }
        for n, body in enumerate(parts, 1)
    ]
    s3.complete_multipart_upload(
        Bucket=bucket, Key="multi", UploadId=upload, MultipartUpload={"Parts": done}
    )
    objects["multi"] = b"".join(parts)
    [small] = object_blobs(cc, bucket, "small")
    [mid] = object_blobs(cc, bucket, "mid")
    part1, part2 = object_blobs(cc, bucket, "multi")
    originals = {
        chunk_file(cc, blob, i): chunk_file(cc, blob, i).read_bytes()
        for blob in (small, mid, part1, part2)
        for i in range(6)
    }

    def identical() -> bool:
        return all(p.exists() and p.read_bytes() == data for p, data in originals.items())

    out, summary = scrub(cc)
    assert out.returncode == 0, out.stderr
    assert summary["missing"] == summary["corrupt"] == 0, out.stdout

    # Round 1: damage nothing has read yet, so only the scrub can find it (exact counts).
    plan = [
        (small, 1, lambda data: b""),  # truncated to nothing
        (small, 4, DELETE),
        (mid, 0, _flip_every(997, 100)),  # flipped bytes all through the payload
        (mid, 5, lambda data: data[: len(data) // 2]),  # truncated to half
        (part1, 2, _flip_at(10)),  # a byte of the file header
        (part1, 3, lambda data: data[:-1]),  # one byte short
        (part2, 3, _flip_at(-1)),  # the very last byte
    ]
    _damage(cc, plan)
    out, summary = timed("scrub", scrub, cc)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (summary["missing"], summary["corrupt"], summary["still broken"]) == (1, 6, 0)
    assert summary["unreachable"] == 0
    assert identical()  # rebuilt in place, byte for byte
    _read_all(s3, bucket, objects)
    again = scrub(cc)[1]
    assert again["missing"] == again["corrupt"] == again["repaired"] == 0

    # Round 2: GETs meet the damage first; they must still return the right bytes.
    before = metrics(cc)
    plan = [
        (small, 0, _flip_every(7)),
        (small, 2, DELETE),
        (mid, 1, lambda data: data[: len(data) // 2]),
        (mid, 3, _flip_every(4096, 5000)),
        (part1, 0, DELETE),
        (part1, 5, _flip_every(1000, 200)),  # parity: no healthy GET reads it
        (part2, 2, lambda data: b""),
    ]
    _damage(cc, plan)
    timed("GETs of damaged objects", _read_all, s3, bucket, objects)
    after = metrics(cc)
    degraded = after["s3compat_degraded_reads_total"] - before["s3compat_degraded_reads_total"]
    print(f"degraded reads: {degraded:.0f}")
    assert degraded > 0
    out, summary = timed("scrub", scrub, cc)
    assert out.returncode == 0, out.stdout + out.stderr
    assert summary["still broken"] == 0, out.stdout
    # The parity chunk only the scrub reads; the rest the GETs may have reported first
    # (the janitor then repairs them, racing the scrub).
    assert 1 <= summary["missing"] + summary["corrupt"] <= len(plan)
    assert wait_for(identical, timeout=60)
    again = scrub(cc)[1]
    assert again["missing"] == again["corrupt"] == 0
    _read_all(s3, bucket, objects)
    _empty_bucket(s3, bucket)


# --- a gateway killed mid-upload --------------------------------------------------------


def _writing(cc: Cluster) -> int:
    return len(cc.sql("SELECT 1 FROM blobs WHERE state = 'writing'"))


def test_gateway_killed_mid_upload(calm: Cluster) -> None:
    """kill -9 the dev cluster's gateway while a 200 MiB PutObject and a 64 MiB UploadPart
    stream through it. The supervisor restarts it; nothing partial is visible; the upload
    keeps its finished part and completes later; the janitor collects the chunks."""
    cc = calm
    s3 = client(cc)
    bucket = "chaos-gateway"
    s3.create_bucket(Bucket=bucket)
    keep = random.Random(5).randbytes(3 * MiB)
    s3.put_object(Bucket=bucket, Key="keep", Body=keep)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mpu")["UploadId"]
    first = random.Random(6).randbytes(5 * MiB)
    etag1 = s3.upload_part(Bucket=bucket, Key="mpu", UploadId=upload, PartNumber=1, Body=first)[
        "ETag"
    ]
    outcomes: dict[str, Any] = {}
    big = PatternReader(200 * MiB, 7)
    part = PatternReader(64 * MiB, 8)

    def put() -> None:
        outcomes["put"] = streaming_put(cc, f"/{bucket}/big", big)

    def upload_part() -> None:
        path = f"/{bucket}/mpu?partNumber=2&uploadId={upload}"
        outcomes["part"] = streaming_put(cc, path, part)

    threads = [threading.Thread(target=put), threading.Thread(target=upload_part)]
    for t in threads:
        t.start()
    # Both bodies are streaming to the nodes: two blobs being written, temp files growing.
    assert wait_for(lambda: _writing(cc) >= 2 and big.left < 150 * MiB, timeout=60, interval=0.05)
    gateway = cc.pid("gateway")
    kill9(gateway)
    print(f"gateway killed with {200 - big.left // MiB} MiB and {64 - part.left // MiB} MiB sent")
    for t in threads:
        t.join(120)
    print(outcomes)
    assert outcomes["put"].status is None and outcomes["part"].status is None
    # The supervisor restarts it on the same port.
    start = time.monotonic()
    assert wait_for(lambda: cc.pid("gateway") != gateway and all_healthy(cc), timeout=60)
    print(f"gateway back after {time.monotonic() - start:.2f}s")
    assert is_missing(s3, bucket, "big")
    parts = s3.list_parts(Bucket=bucket, Key="mpu", UploadId=upload).get("Parts", [])
    assert [(p["PartNumber"], p["ETag"]) for p in parts] == [(1, etag1)]
    # The dead gateway's writes stop beating; the janitor aborts them and collects their
    # chunks and temp files.
    wait_settled(cc, timeout=120)
    assert s3.get_object(Bucket=bucket, Key="keep")["Body"].read() == keep
    # The upload carries on through the new gateway.
    second = random.Random(9).randbytes(MiB + 1)
    etag2 = s3.upload_part(Bucket=bucket, Key="mpu", UploadId=upload, PartNumber=2, Body=second)[
        "ETag"
    ]
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="mpu",
        UploadId=upload,
        MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": etag1}, {"PartNumber": 2, "ETag": etag2}]
        },
    )
    assert s3.get_object(Bucket=bucket, Key="mpu")["Body"].read() == first + second
    _empty_bucket(s3, bucket)
