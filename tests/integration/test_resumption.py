"""A multipart upload outlives the gateway it started on.

Two gateways share the database and the storage nodes: the cluster's own (here "B") and a
second `s3compat serve` started by the test ("A"), which can be killed and restarted
freely. The upload is created and its first parts go up through A; A dies in the middle of
a part; the client carries on through B (re-sending the interrupted part), A comes back and
takes a part, B completes, and the object is read back through A.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest

from tests.cluster import TEST_ENV, Cluster, free_port, sign, wait_for

MiB = 1 << 20
# Short, so that the write the dead gateway left behind is found and collected within the
# test (heartbeats then come every second from both gateways).
STALE_AFTER = "3"


@pytest.fixture(scope="module")
def rc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(
        tmp_path_factory.mktemp("resumption"),
        env={"S3COMPAT_STALE_WRITE_AFTER": STALE_AFTER},
    ).start()
    yield c
    c.stop()


@dataclass
class ExtraGateway:
    """`python -m s3compat serve` on the cluster's database and nodes."""

    cluster: Cluster
    log: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ExtraGateway:
        info = self.cluster.info
        env = {
            **os.environ,
            **TEST_ENV,
            "S3COMPAT_STALE_WRITE_AFTER": STALE_AFTER,
            "DATABASE_URL": info["database_url"],
            "S3COMPAT_NODES": ",".join(f"{n}={a}" for n, a in sorted(info["nodes"].items())),
            "S3COMPAT_ACCESS_KEY": self.cluster.access_key,
            "S3COMPAT_SECRET_KEY": self.cluster.secret_key,
            "S3COMPAT_USER": "admin",
            "S3COMPAT_HOST": "127.0.0.1",
            "S3COMPAT_PORT": str(self.port),
            **self.cluster.node_env,
        }
        env.pop("S3COMPAT_CREDENTIALS_FILE", None)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "s3compat", "serve"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"second gateway exited:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.endpoint + "/-/health", timeout=5) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"second gateway not healthy in {timeout} s:\n{self.log.read_text()}")

    def kill(self) -> None:
        """Die as a crashed process does: no graceful shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.cluster.access_key,
            aws_secret_access_key=self.cluster.secret_key,
            region_name="us-east-1",
        )


def _part_put_head(cluster: Cluster, endpoint: str, path: str, length: int) -> bytes:
    url = endpoint + path
    headers = sign(cluster, "PUT", url, {"Content-Length": str(length)}, unsigned_payload=True)
    lines = [f"PUT {path} HTTP/1.1", f"Host: {urlsplit(url).netloc}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _settled(cluster: Cluster) -> bool:
    on_disk = {n: ids for n, ids in cluster.chunk_files().items() if ids}
    referenced = {n: ids for n, ids in cluster.referenced_chunks().items() if ids}
    pending = cluster.sql("SELECT 1 FROM blobs WHERE state <> 'committed'")
    temp = list((cluster.data_dir / "nodes").glob("*/tmp/*"))
    return on_disk == referenced and not pending and not temp


def _md5_etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


def test_upload_survives_its_gateway(rc: Cluster, tmp_path: Path) -> None:
    rng = random.Random(2024)
    parts = [rng.randbytes(5 * MiB + i) for i in range(4)] + [rng.randbytes(777)]
    whole = b"".join(parts)
    b_client = rc.client()  # the cluster's gateway
    a = ExtraGateway(rc, tmp_path / "gateway-a.log")
    try:
        a.start()
        a_client = a.client()
        a_client.create_bucket(Bucket="resume")
        uid = a_client.create_multipart_upload(
            Bucket="resume", Key="big.bin", ContentType="application/x-big", Metadata={"by": "a"}
        )["UploadId"]
        for n in (1, 2):
            a_client.upload_part(
                Bucket="resume", Key="big.bin", UploadId=uid, PartNumber=n, Body=parts[n - 1]
            )

        # Part 3 is half sent through A when A dies.
        writing_before = rc.sql("SELECT count(*) AS n FROM blobs WHERE state = 'writing'")[0]["n"]
        path = f"/resume/big.bin?partNumber=3&uploadId={uid}"
        sock = socket.create_connection(("127.0.0.1", a.port))
        try:
            sock.sendall(_part_put_head(rc, a.endpoint, path, len(parts[2])))
            sock.sendall(parts[2][: 3 * MiB])
            assert wait_for(
                lambda: (
                    rc.sql("SELECT count(*) AS n FROM blobs WHERE state = 'writing'")[0]["n"]
                    > writing_before
                ),
                timeout=20,
            ), "the interrupted part never started storing"
            a.kill()
        finally:
            sock.close()

        # The client goes on through B: what A stored is there, the half part is not.
        listed = b_client.list_parts(Bucket="resume", Key="big.bin", UploadId=uid)["Parts"]
        assert [(p["PartNumber"], p["ETag"]) for p in listed] == [
            (1, _md5_etag(parts[0])),
            (2, _md5_etag(parts[1])),
        ]
        [upload] = b_client.list_multipart_uploads(Bucket="resume")["Uploads"]
        assert (upload["Key"], upload["UploadId"]) == ("big.bin", uid)
        for n in (3, 4):
            b_client.upload_part(
                Bucket="resume", Key="big.bin", UploadId=uid, PartNumber=n, Body=parts[n - 1]
            )

        # A comes back (a new process on the same port) and takes the last part.
        a.start()
        a_client.upload_part(
            Bucket="resume", Key="big.bin", UploadId=uid, PartNumber=5, Body=parts[4]
        )

        # B completes, from what ListParts reports (the client kept no ETags).
        listed = b_client.list_parts(Bucket="resume", Key="big.bin", UploadId=uid)["Parts"]
        assert [p["PartNumber"] for p in listed] == [1, 2, 3, 4, 5]
        done = b_client.complete_multipart_upload(
            Bucket="resume",
            Key="big.bin",
            UploadId=uid,
            MultipartUpload={
                "Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in listed]
            },
        )
        joined = b"".join(hashlib.md5(p).digest() for p in parts)
        assert done["ETag"] == f'"{hashlib.md5(joined).hexdigest()}-5"'

        # Read back through A.
        got = a_client.get_object(Bucket="resume", Key="big.bin")
        assert got["ContentLength"] == len(whole)
        assert got["ContentType"] == "application/x-big"
        assert got["Metadata"] == {"by": "a"}
        assert got["ETag"] == done["ETag"]
        assert hashlib.sha256(got["Body"].read()).hexdigest() == hashlib.sha256(whole).hexdigest()
        assert a_client.head_object(Bucket="resume", Key="big.bin", PartNumber=3)[
            "ContentLength"
        ] == len(parts[2])

        # The dead gateway's half-written part is found by its stale heartbeat and collected.
        assert wait_for(lambda: _settled(rc), timeout=60), (
            rc.sql("SELECT blob_id, state FROM blobs WHERE state <> 'committed'"),
            list((rc.data_dir / "nodes").glob("*/tmp/*")),
        )
    finally:
        a.stop()
