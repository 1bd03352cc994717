"""A multipart upload outlives the gateway it started on.

Two gateways share the database and the storage nodes: the cluster's own (here "B") and a
second `s3compat serve` started by the test ("A"), which can be killed and restarted
freely. The upload is created and its first parts go up through A; A dies in the middle of
a part; the client carries on through B (re-sending the interrupted part), A comes back and
takes a part, B completes, and the object is read back through A.
"""

from __future__ import annotations

import hashlib
import random
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.cluster import Cluster, ExtraGateway, sign, wait_for

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


def _part_put_head(cluster: Cluster, endpoint: str, path: str, length: int) -> bytes:
    url = endpoint + path
    headers = sign(cluster, "PUT", url, {"Content-Length": str(length)}, unsigned_payload=True)
    lines = [f"PUT {path} HTTP/1.1", f"Host: {urlsplit(url).netloc}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _md5_etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


def test_upload_survives_its_gateway(rc: Cluster, tmp_path: Path) -> None:
    rng = random.Random(2024)
    parts = [rng.randbytes(5 * MiB + i) for i in range(4)] + [rng.randbytes(777)]
    whole = b"".join(parts)
    b_client = rc.client()  # the cluster's gateway
    a = ExtraGateway(rc)
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
        assert wait_for(lambda: rc.settled(), timeout=60), (
            rc.sql("SELECT blob_id, state FROM blobs WHERE state <> 'committed'"),
            list((rc.data_dir / "nodes").glob("*/tmp/*")),
        )
    finally:
        a.stop()
