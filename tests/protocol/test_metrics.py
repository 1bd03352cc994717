"""`/-/metrics`: Prometheus text with requests by AWS action and status, latency, bytes."""

from __future__ import annotations

import urllib.request
from typing import Any

from tests.checks import metric_value as _value
from tests.checks import scrape_metrics, statements_per_request
from tests.cluster import Cluster


def _scrape(cluster: Cluster) -> dict[str, float]:
    with urllib.request.urlopen(cluster.endpoint + "/-/metrics", timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
    return scrape_metrics(cluster.endpoint)


def test_requests_latency_and_bytes_are_counted(cluster: Cluster, s3: Any, bucket: str) -> None:
    before = _scrape(cluster)
    body = b"m" * 12345
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"k{i}", Body=body)
    s3.get_object(Bucket=bucket, Key="k0")["Body"].read()
    missing = cluster.raw("GET", f"/{bucket}/nope")
    assert missing[0] == 404
    after = _scrape(cluster)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("s3compat_requests_total", operation="PutObject", status="200") == 3
    assert delta("s3compat_requests_total", operation="GetObject", status="200") == 1
    assert delta("s3compat_requests_total", operation="GetObject", status="404") == 1
    assert delta("s3compat_request_duration_seconds_count", operation="PutObject") == 3
    assert delta("s3compat_bytes_received_total", operation="PutObject") == 3 * len(body)
    assert delta("s3compat_bytes_sent_total", operation="GetObject") >= len(body)
    # Process metrics come along; scrapes and health checks are not counted as S3 traffic.
    assert "process_resident_memory_bytes" in after
    urllib.request.urlopen(cluster.endpoint + "/-/health", timeout=10).close()
    again = _scrape(cluster)
    requests = {k: v for k, v in after.items() if k.startswith("s3compat_requests_total")}
    assert {k: v for k, v in again.items() if k.startswith("s3compat_requests_total")} == requests


def test_metrics_path_is_not_a_bucket(cluster: Cluster, s3: Any) -> None:
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert "-" not in names
    status, _, _ = cluster.raw("PUT", "/-")
    assert status == 400  # InvalidBucketName: `-` can never be a bucket


def test_database_statements_are_counted_by_operation(
    cluster: Cluster, s3: Any, bucket: str
) -> None:
    """A GET of an object on the nodes is two statements (the bucket and the object in one,
    then its blob), a HEAD one; the janitor's work is counted apart, as background."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"on the nodes")

    def get() -> None:
        assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"on the nodes"

    assert statements_per_request(cluster.endpoint, "GetObject", get) == 2
    assert (
        statements_per_request(
            cluster.endpoint, "HeadObject", lambda: s3.head_object(Bucket=bucket, Key="k")
        )
        == 1
    )
    assert _value(_scrape(cluster), "s3compat_db_statements_total", operation="background") > 0


def test_a_page_of_1000_keys_is_two_statements(cluster: Cluster, s3: Any, bucket: str) -> None:
    """The bucket, then 1001 rows in one query (the last says whether it is truncated)."""
    keys = [f"k{i:04d}" for i in range(1001)]
    copy = {"Bucket": bucket, "CopySource": {"Bucket": bucket, "Key": "k0000"}}
    s3.put_object(Bucket=bucket, Key=keys[0], Body=b"")
    for key in keys[1:]:
        s3.copy_object(Key=key, **copy)

    def page() -> None:
        listed = s3.list_objects_v2(Bucket=bucket)
        assert listed["KeyCount"] == 1000 and listed["IsTruncated"]

    assert statements_per_request(cluster.endpoint, "ListObjectsV2", page) == 2
    for start in (0, 1000):
        batch = [{"Key": k} for k in keys[start : start + 1000]]
        s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
