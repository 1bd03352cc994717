"""`s3compat cleanup --once`: one janitor pass from the command line, against a dev cluster
(`--data-dir`) or any database (`DATABASE_URL`), printing what it removed.

The cluster's own janitor runs only at start here (interval one hour), so whatever the
test leaves behind is still there for the command to find.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import TEST_ENV, Cluster

MiB = 1 << 20
COUNTS = [
    "stale writes aborted",
    "uploads aborted",
    "blobs collected",
    "chunks deleted",
    "chunks deferred",
    "chunks repaired",
    "repairs failed",
]


@pytest.fixture(scope="module")
def idle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(
        tmp_path_factory.mktemp("cleanup") / "data",
        env={"S3COMPAT_JANITOR_INTERVAL": "3600"},
    ).start()
    yield cluster
    cluster.stop()


def _command(*args: str, **env: str) -> list[str]:
    return [sys.executable, "-m", "s3compat", "cleanup", "--once", *args]


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, **TEST_ENV, **extra}
    if "DATABASE_URL" not in extra:
        env.pop("DATABASE_URL", None)
    env.pop("S3COMPAT_NODES", None)
    return env


def _counts(proc: subprocess.CompletedProcess[str]) -> dict[str, int]:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    counts = {}
    for line in proc.stdout.splitlines():
        name, _, value = line.partition(": ")
        counts[name] = int(value)
    assert list(counts) == COUNTS, proc.stdout
    return counts


def cleanup(*args: str, **env: str) -> dict[str, int]:
    proc = subprocess.run(
        _command(*args), capture_output=True, text=True, env=_env(**env), timeout=300
    )
    return _counts(proc)


def _nothing(**changes: int) -> dict[str, int]:
    return {**dict.fromkeys(COUNTS, 0), **{k.replace("_", " "): v for k, v in changes.items()}}


def _all_chunk_files(cluster: Cluster) -> set[str]:
    return set().union(*cluster.chunk_files().values())


def _chunk_ids(blob_id: uuid.UUID) -> set[str]:
    return {f"{blob_id.hex}-{i}" for i in range(6)}


def _put_and_delete(cluster: Cluster, s3: Any, bucket: str, key: str) -> set[str]:
    """An object deleted by a client: its chunks now wait for a janitor."""
    s3.put_object(Bucket=bucket, Key=key, Body=os.urandom(2 * MiB))
    [row] = cluster.sql(
        "SELECT part_blobs[1] AS b FROM objects WHERE bucket = $1 AND key = $2", bucket, key
    )
    ids = _chunk_ids(row["b"])
    assert ids <= _all_chunk_files(cluster)
    s3.delete_object(Bucket=bucket, Key=key)
    return ids


def test_once_on_a_dev_cluster_collects_a_deleted_object(idle: Cluster) -> None:
    s3 = idle.client()
    s3.create_bucket(Bucket="dev-dir")
    s3.put_object(Bucket="dev-dir", Key="kept", Body=b"k" * MiB)
    ids = _put_and_delete(idle, s3, "dev-dir", "doomed")
    assert ids <= _all_chunk_files(idle)  # nobody collected them yet

    counts = cleanup("--data-dir", str(idle.data_dir))
    assert counts == _nothing(blobs_collected=1, chunks_deleted=6)
    assert not ids & _all_chunk_files(idle)
    assert not idle.sql("SELECT 1 FROM blobs WHERE state <> 'committed'")
    assert s3.get_object(Bucket="dev-dir", Key="kept")["Body"].read() == b"k" * MiB
    # Nothing is left for a second pass.
    assert cleanup("--data-dir", str(idle.data_dir)) == _nothing()


def test_once_with_database_url(idle: Cluster) -> None:
    s3 = idle.client()
    s3.create_bucket(Bucket="by-url")
    ids = _put_and_delete(idle, s3, "by-url", "doomed")
    # The nodes' addresses come from the database: S3COMPAT_NODES is not set.
    counts = cleanup(DATABASE_URL=idle.database_url, **idle.node_env)
    assert counts == _nothing(blobs_collected=1, chunks_deleted=6)
    assert not ids & _all_chunk_files(idle)


def test_a_write_whose_gateway_died_is_aborted_and_collected(idle: Cluster) -> None:
    # What a gateway killed mid-PUT leaves: a 'writing' blob whose heartbeat stopped an hour
    # ago (beyond S3COMPAT_STALE_WRITE_AFTER), with its intent record of six chunks.
    blob_id = uuid.uuid4()
    nodes = [r["node_id"] for r in idle.sql("SELECT node_id FROM nodes ORDER BY node_id")]
    idle.sql(
        "WITH b AS (INSERT INTO blobs (blob_id, state, k, m, fragment_size, heartbeat_at) "
        "VALUES ($1, 'writing', 6, 0, 1048576, now() - interval '1 hour') RETURNING blob_id) "
        "INSERT INTO chunks (blob_id, idx, node_id) "
        "SELECT b.blob_id, t.idx, t.node_id FROM b, "
        "unnest($2::smallint[], $3::text[]) AS t (idx, node_id)",
        blob_id,
        list(range(6)),
        nodes[:6],
    )
    counts = cleanup("--data-dir", str(idle.data_dir))
    assert counts == _nothing(stale_writes_aborted=1, blobs_collected=1, chunks_deleted=6)
    assert not idle.sql("SELECT 1 FROM blobs WHERE blob_id = $1", blob_id)


def _age_upload(cluster: Cluster, upload_id: str, age: timedelta) -> None:
    cluster.sql(
        "UPDATE uploads SET initiated = now() - $2::interval WHERE upload_id = $1",
        uuid.UUID(upload_id),
        age,
    )


def _open_uploads(s3: Any, bucket: str) -> set[str]:
    return {u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])}


def test_uploads_expire_by_bucket_lifecycle_then_default_ttl(idle: Cluster) -> None:
    s3 = idle.client()
    for name in ("ttl-short", "ttl-default"):
        s3.create_bucket(Bucket=name)
    s3.put_bucket_lifecycle_configuration(
        Bucket="ttl-short",
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "one-day",
                    "Status": "Enabled",
                    "Filter": {"Prefix": ""},
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                }
            ]
        },
    )
    short = s3.create_multipart_upload(Bucket="ttl-short", Key="two-days")["UploadId"]
    s3.upload_part(
        Bucket="ttl-short", Key="two-days", UploadId=short, PartNumber=1, Body=b"p" * 1000
    )
    [part] = idle.sql("SELECT blob_id FROM upload_parts WHERE upload_id = $1", uuid.UUID(short))
    part_chunks = _chunk_ids(part["blob_id"])
    assert part_chunks <= _all_chunk_files(idle)
    recent = s3.create_multipart_upload(Bucket="ttl-default", Key="two-days")["UploadId"]
    old = s3.create_multipart_upload(Bucket="ttl-default", Key="eight-days")["UploadId"]
    fresh = s3.create_multipart_upload(Bucket="ttl-short", Key="fresh")["UploadId"]
    _age_upload(idle, short, timedelta(days=2))
    _age_upload(idle, recent, timedelta(days=2))
    _age_upload(idle, old, timedelta(days=8))

    # Bucket TTL 1 day: the 2-day upload goes. Default 7 days: only the 8-day one goes.
    counts = cleanup("--data-dir", str(idle.data_dir))
    assert counts == _nothing(uploads_aborted=2, blobs_collected=1, chunks_deleted=6)
    assert _open_uploads(s3, "ttl-short") == {fresh}
    assert _open_uploads(s3, "ttl-default") == {recent}
    assert not part_chunks & _all_chunk_files(idle)

    # S3COMPAT_UPLOAD_TTL sets the default: one hour catches the 2-day upload too.
    counts = cleanup("--data-dir", str(idle.data_dir), S3COMPAT_UPLOAD_TTL="3600")
    assert counts == _nothing(uploads_aborted=1)
    assert _open_uploads(s3, "ttl-default") == set()
    assert _open_uploads(s3, "ttl-short") == {fresh}
    s3.abort_multipart_upload(Bucket="ttl-short", Key="fresh", UploadId=fresh)


def test_two_janitors_at_once_abort_each_upload_once(idle: Cluster) -> None:
    s3 = idle.client()
    s3.create_bucket(Bucket="racing")
    uploads = [
        s3.create_multipart_upload(Bucket="racing", Key=f"k{i}")["UploadId"] for i in range(40)
    ]
    idle.sql("UPDATE uploads SET initiated = now() - interval '30 days' WHERE bucket = 'racing'")
    procs = [
        subprocess.Popen(
            _command("--data-dir", str(idle.data_dir)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for _ in range(2)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        results.append(_counts(subprocess.CompletedProcess(proc.args, proc.returncode, out, err)))
    # However the work was shared, each upload was aborted once and counted once.
    assert sum(r["uploads aborted"] for r in results) == len(uploads)
    assert _open_uploads(s3, "racing") == set()
    assert not idle.sql("SELECT 1 FROM uploads WHERE bucket = 'racing'")


def test_without_a_running_cluster_it_says_so(tmp_path: Path) -> None:
    proc = subprocess.run(
        _command("--data-dir", str(tmp_path)), capture_output=True, text=True, env=_env()
    )
    assert proc.returncode != 0
    assert "cluster.json" in proc.stderr
    assert proc.stdout == ""
