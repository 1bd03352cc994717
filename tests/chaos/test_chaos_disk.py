"""A storage node's disk fills up (ENOSPC from a small tmpfs): writes route around it
(they commit with the node's chunk recorded missing), nothing already stored is damaged,
reads stay byte-identical, and once space is freed the janitor puts the missing chunks
back and a scrub finds nothing wrong.

The node's whole data directory is a 48 MiB tmpfs, mounted before the cluster starts (the
node creates its chunks/ and tmp/ in it), so temp files and renames stay on one
filesystem, as on a real disk. The filesystem is filled with a file beside them.
"""

from __future__ import annotations

import errno
import os
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.conftest import (
    MiB,
    chaos_cluster,
    client,
    health,
    metrics,
    scrub,
    wait_settled,
)
from tests.cluster import Cluster, wait_for

pytestmark = pytest.mark.slow

VICTIM = "node4"
TMPFS_MIB = 48
BUCKET = "chaos-full"


def _umount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], check=True)


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Path]]:
    data = tmp_path_factory.mktemp("chaos-disk")
    mount = data / "nodes" / VICTIM
    mount.mkdir(parents=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MIB}m,mode=0755", "tmpfs", str(mount)],
        check=True,
    )
    try:
        with chaos_cluster(data) as cluster:
            yield cluster, mount
    finally:
        _umount(mount)
    assert not os.path.ismount(mount)


def _free(mount: Path) -> int:
    st = os.statvfs(mount)
    return st.f_bavail * st.f_frsize


def _fill(mount: Path, leave: int) -> None:
    """Grow the filler file until only `leave` bytes of the filesystem are free."""
    with open(mount / "filler", "ab") as f:
        grow = _free(mount) - leave
        if grow > 0:
            os.posix_fallocate(f.fileno(), f.seek(0, os.SEEK_END), grow)
    if leave == 0:  # the last pages, whatever the rounding
        fd = os.open(mount / "filler", os.O_WRONLY | os.O_APPEND)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        finally:
            os.close(fd)
    print(f"{VICTIM}: {_free(mount)} bytes free")


def _fill_completely(mount: Path) -> None:
    """No byte free, and none about to be freed: the janitor keeps trying to repair the
    chunks the node missed, and a repair's temp file that held pages gives them back when
    it fails. So fill until nothing is in tmp/ and the filesystem stays full."""
    tmp = mount / "tmp"
    for _ in range(60):
        _fill(mount, leave=0)
        if not list(tmp.iterdir()):
            time.sleep(1)
            if _free(mount) == 0 and not list(tmp.iterdir()):
                return
        time.sleep(0.1)
    raise AssertionError(f"{mount} never stayed full")


def _victim_chunks(cluster: Cluster, key: str) -> list[int | None]:
    """Sizes of the object's chunks on the full node (None: recorded missing), after
    checking that every chunk elsewhere is stored."""
    rows = cluster.sql(
        "SELECT c.node_id, c.size FROM objects o JOIN chunks c ON c.blob_id = ANY(o.part_blobs) "
        "WHERE o.bucket = $1 AND o.key = $2",
        BUCKET,
        key,
    )
    assert rows, key
    assert all(r["size"] is not None for r in rows if r["node_id"] != VICTIM), (key, rows)
    return [r["size"] for r in rows if r["node_id"] == VICTIM]


def _put(s3: Any, key: str, data: bytes, multipart: bool = False) -> None:
    if not multipart:
        s3.put_object(Bucket=BUCKET, Key=key, Body=data)
        return
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    half = len(data) // 2
    parts = [
        {
            "PartNumber": n,
            "ETag": s3.upload_part(
                Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=n, Body=body
            )["ETag"],
        }
        for n, body in ((1, data[:half]), (2, data[half:]))
    ]
    s3.complete_multipart_upload(
        Bucket=BUCKET, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
    )


def _check_all(s3: Any, objects: dict[str, bytes]) -> None:
    for key, data in objects.items():
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == data, key


def test_full_disk_is_routed_around(full: tuple[Cluster, Path]) -> None:
    cluster, mount = full
    s3 = client(cluster)
    s3.create_bucket(Bucket=BUCKET)
    objects = {f"before-{n}": random.Random(n).randbytes(n) for n in (1000, 3 * MiB + 5)}
    for key, data in objects.items():
        _put(s3, key, data)
    assert all(size is not None for key in objects for size in _victim_chunks(cluster, key))
    lost_before = metrics(cluster)["s3compat_write_chunks_lost_total"]
    tmp = mount / "tmp"

    try:
        # Nearly full: small chunks still fit, big ones run out of space half-way.
        _fill(mount, leave=MiB)
        nearly = {
            "nearly-1000": random.Random(10).randbytes(1000),
            "nearly-9m": random.Random(11).randbytes(9 * MiB + 1),
            "nearly-24m": random.Random(12).randbytes(24 * MiB + 7),
            "nearly-mpu": random.Random(13).randbytes(14 * MiB),
        }
        for key, data in nearly.items():
            _put(s3, key, data, multipart=key.endswith("mpu"))
            print(f"{key}: chunk sizes on {VICTIM}: {_victim_chunks(cluster, key)}")
        objects.update(nearly)
        # A 6 MiB chunk cannot fit in 1 MiB: recorded missing, the write committed.
        assert _victim_chunks(cluster, "nearly-24m") == [None]
        # The failed chunk writes took their temp files with them.
        assert wait_for(lambda: not list(tmp.iterdir()), timeout=30, interval=0.1)
        _check_all(s3, objects)

        # Completely full: not even a tiny chunk fits.
        _fill_completely(mount)
        full_ = {
            "full-1": b"x",
            "full-5000": random.Random(20).randbytes(5000),
            "full-2m": random.Random(21).randbytes(2 * MiB + 3),
        }
        for key, data in full_.items():
            _put(s3, key, data)
            assert _victim_chunks(cluster, key) == [None], key
        objects.update(full_)
        _check_all(s3, objects)
        _, report = health(cluster)
        node = report["nodes"][VICTIM]
        print(f"{VICTIM} while full: {node}")
        lost = metrics(cluster)["s3compat_write_chunks_lost_total"] - lost_before
        print(f"chunks lost on write: {lost:.0f}")
        assert lost >= 4
        assert wait_for(lambda: not list(tmp.iterdir()), timeout=30, interval=0.1)
    finally:
        (mount / "filler").unlink(missing_ok=True)
    print(f"{VICTIM}: {_free(mount)} bytes free again")
    # Space again: the janitor writes the missing chunks to the node; nothing is corrupt.
    wait_settled(cluster, timeout=120)
    out, summary = scrub(cluster)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (summary["missing"], summary["corrupt"], summary["still broken"]) == (0, 0, 0)
    for key in objects:
        assert all(size is not None for size in _victim_chunks(cluster, key)), key
    _check_all(s3, objects)
