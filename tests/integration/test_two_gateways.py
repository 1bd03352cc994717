"""Two gateways on one database and one set of nodes serve the same objects.

The cluster's own gateway ("A") and a second `s3compat serve` ("B") share nothing but
PostgreSQL and the storage nodes: whatever one writes, the other reads, lists, overwrites
and deletes at once, and racing conditional writes through both still have one winner.
Small bodies go inline (the default), larger ones to the nodes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.checks import body
from tests.cluster import Cluster, ExtraGateway

MiB = 1 << 20


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    cluster = Cluster(
        tmp_path_factory.mktemp("two-gateways") / "data", env={"S3COMPAT_INLINE_MAX": "32768"}
    ).start()
    second = ExtraGateway(cluster)
    try:
        second.start()
        a, b = cluster.client(), second.client()
        a.create_bucket(Bucket="shared")
        yield a, b
    finally:
        second.stop()
        cluster.stop()


@pytest.mark.parametrize("size", [100, 3 * MiB + 5])
def test_written_through_one_read_through_the_other(gateways: tuple[Any, Any], size: int) -> None:
    a, b = gateways
    for writer, reader, name in ((a, b, "a-to-b"), (b, a, "b-to-a")):
        data = os.urandom(size)
        key = f"{name}/{size}"
        writer.put_object(Bucket="shared", Key=key, Body=data)
        assert body(reader, "shared", key) == data
        got = reader.get_object(Bucket="shared", Key=key, Range="bytes=7-56")["Body"].read()
        assert got == data[7:57]
        listed = reader.list_objects_v2(Bucket="shared", Prefix=key)["Contents"]
        assert [(o["Key"], o["Size"]) for o in listed] == [(key, size)]


def test_overwrite_and_delete_are_seen_at_once(gateways: tuple[Any, Any]) -> None:
    a, b = gateways
    a.put_object(Bucket="shared", Key="k", Body=b"first")
    b.put_object(Bucket="shared", Key="k", Body=b"second, through B")
    assert body(a, "shared", "k") == b"second, through B"
    a.delete_object(Bucket="shared", Key="k")
    with pytest.raises(ClientError) as err:
        b.head_object(Bucket="shared", Key="k")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_multipart_upload_across_gateways(gateways: tuple[Any, Any]) -> None:
    """Created on A, parts through both, completed on B, read through A."""
    a, b = gateways
    upload = a.create_multipart_upload(Bucket="shared", Key="mp")["UploadId"]
    pieces = [os.urandom(5 * MiB), os.urandom(MiB + 3)]
    etags = [
        client.upload_part(Bucket="shared", Key="mp", UploadId=upload, PartNumber=n, Body=piece)[
            "ETag"
        ]
        for n, (client, piece) in enumerate(zip((a, b), pieces, strict=True), start=1)
    ]
    listed = b.list_parts(Bucket="shared", Key="mp", UploadId=upload)["Parts"]
    assert [p["ETag"] for p in listed] == etags
    b.complete_multipart_upload(
        Bucket="shared",
        Key="mp",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]},
    )
    assert body(a, "shared", "mp") == b"".join(pieces)


def test_racing_conditional_creates_through_both_have_one_winner(
    gateways: tuple[Any, Any],
) -> None:
    a, b = gateways
    results: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def put(client: Any, n: int) -> None:
        start.wait()
        try:
            client.put_object(
                Bucket="shared", Key="race", Body=f"writer {n}".encode(), IfNoneMatch="*"
            )
            outcome = f"won {n}"
        except ClientError as exc:
            outcome = exc.response["Error"]["Code"]
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=put, args=((a, b)[n % 2], n)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r.startswith("won")]
    assert len(winners) == 1, results
    assert sorted(r for r in results if not r.startswith("won")) == ["PreconditionFailed"] * 7
    assert body(a, "shared", "race") == f"writer {winners[0].split()[1]}".encode()
