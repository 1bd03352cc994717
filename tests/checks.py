"""What tests check objects with: digests, S3's multipart ETag, bodies and listings."""

from __future__ import annotations

import hashlib
import re
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

MiB = 1 << 20


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read 1 MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(MiB):
            digest.update(piece)
    return digest.hexdigest()


def multipart_etag(data: bytes, part: int) -> str:
    """S3's ETag of `data` uploaded in `part`-byte parts: MD5 of the parts' binary MD5s,
    then `-<count>`, computed independently of the server."""
    md5s = [hashlib.md5(data[i : i + part]).digest() for i in range(0, len(data), part)]
    return f'"{hashlib.md5(b"".join(md5s)).hexdigest()}-{len(md5s)}"'


def body(s3: Any, bucket: str, key: str) -> bytes:
    data: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return data


def listed(s3: Any, bucket: str, prefix: str = "") -> dict[str, dict[str, Any]]:
    """Every object under `prefix`, by key, as ListObjectsV2 describes it."""
    found: dict[str, dict[str, Any]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = obj
    return found


def scrape_metrics(endpoint: str) -> dict[str, float]:
    """`/-/metrics` as {'name{labels}': value}."""
    with urllib.request.urlopen(endpoint + "/-/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def metric_value(samples: dict[str, float], name: str, **labels: str) -> float:
    """The first sample of `name` whose labels include `labels` (0 if none)."""
    for key, value in samples.items():
        metric, _, rest = key.partition("{")
        if metric != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if all(found.get(k) == v for k, v in labels.items()):
            return value
    return 0.0


def statements_per_request(endpoint: str, operation: str, request: Callable[[], object]) -> int:
    """The fewest database statements `operation` took over five runs of `request`.

    asyncpg adds a few introspection statements the first time a connection meets a type,
    so a single run can show more; the fewest is what each request needs."""
    name = "s3compat_db_statements_total"
    counts = []
    for _ in range(5):
        before = metric_value(scrape_metrics(endpoint), name, operation=operation)
        request()
        after = metric_value(scrape_metrics(endpoint), name, operation=operation)
        counts.append(int(after - before))
    return min(counts)
