"""`/-/metrics`: Prometheus text with requests by AWS action and status, latency, bytes."""

from __future__ import annotations

import re
import urllib.request
from typing import Any

from tests.cluster import Cluster


def _scrape(cluster: Cluster) -> dict[str, float]:
    with urllib.request.urlopen(cluster.endpoint + "/-/metrics", timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def _value(samples: dict[str, float], name: str, **labels: str) -> float:
    for key, value in samples.items():
        metric, _, rest = key.partition("{")
        if metric != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if all(found.get(k) == v for k, v in labels.items()):
            return value
    return 0.0


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
