"""ListObjects v1 and v2 over 2,500 awkward keys, against a reference computed here."""

from __future__ import annotations

import concurrent.futures
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster import Cluster


def _keys() -> list[str]:
    keys = []
    for i in range(2000):
        keys.append(f"flat/{i:05d}")
    for i in range(300):
        keys.append(f"dirs/d{i % 30:02d}/f{i:04d}")
    specials = [
        "a",
        "a/b",
        "a/",
        "a//b",
        "a/b/c",
        "with space/x",
        "plus+/y",
        "pct%2F/z",
        "dollar$",
        "€uro/1",
        "日本/2",
        "ü",
        "zz/",
        "zz//",
        "z z",
        "+",
        "%",
        "~tilde",
        "UPPER/lower",
        "emoji-😀/k",
        "trailing/",
        "x/y/z/",
        "..",
        "../up",
    ]
    keys += specials
    i = 0
    while len(keys) < 2500:
        keys.append(f"misc/{i:04d}-{'€' if i % 3 else 'e'}")
        i += 1
    return keys


KEYS = _keys()


def _reference(prefix: str, delimiter: str | None) -> list[tuple[str, str]]:
    """Every (kind, name) in S3 order: keys sorted by UTF-8 bytes, prefixes folded."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for key in sorted(KEYS, key=lambda k: k.encode()):
        if not key.startswith(prefix):
            continue
        if delimiter:
            at = key.find(delimiter, len(prefix))
            if at >= 0:
                cp = key[: at + len(delimiter)]
                if cp not in seen:
                    seen.add(cp)
                    out.append(("prefix", cp))
                continue
        out.append(("key", key))
    return out


@pytest.fixture(scope="module")
def listing_bucket(cluster: Cluster) -> Iterator[str]:
    s3 = cluster.client(max_pool_connections=16)
    name = f"list-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=name, Key=k, Body=b""), KEYS))
    yield name
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.delete_object(Bucket=name, Key=k), KEYS))
    s3.delete_bucket(Bucket=name)


CASES = [
    ("", None, 1000),
    ("", "/", 1000),
    ("", "/", 7),
    ("dirs/", "/", 5),
    ("a", "/", 2),
    ("a/", "/", 1000),
    ("zz", "/", 1),
    ("misc/", None, 333),
    ("", "//", 50),
    ("", "€", 100),
    ("nothing-here/", "/", 10),
]


def _page_items(page: dict[str, Any]) -> list[tuple[str, str]]:
    items = [("key", o["Key"]) for o in page.get("Contents", [])]
    items += [("prefix", p["Prefix"]) for p in page.get("CommonPrefixes", [])]
    return items


@pytest.mark.parametrize("prefix,delimiter,max_keys", CASES)
def test_list_objects_v2_pages(
    s3: Any, listing_bucket: str, prefix: str, delimiter: str | None, max_keys: int
) -> None:
    expected = _reference(prefix, delimiter)
    got: list[tuple[str, str]] = []
    kwargs: dict[str, Any] = {"Bucket": listing_bucket, "Prefix": prefix, "MaxKeys": max_keys}
    if delimiter:
        kwargs["Delimiter"] = delimiter
    while True:
        page = s3.list_objects_v2(**kwargs)
        items = _page_items(page)
        assert page["KeyCount"] == len(items) <= max_keys
        # Within a page keys and prefixes are each in order; merge them for comparison.
        got += sorted(items, key=lambda kv: kv[1].encode())
        if not page["IsTruncated"]:
            break
        assert len(items) == max_keys
        kwargs["ContinuationToken"] = page["NextContinuationToken"]
    assert got == expected


@pytest.mark.parametrize("prefix,delimiter,max_keys", CASES)
def test_list_objects_v1_pages(
    s3: Any, listing_bucket: str, prefix: str, delimiter: str | None, max_keys: int
) -> None:
    expected = _reference(prefix, delimiter)
    got: list[tuple[str, str]] = []
    kwargs: dict[str, Any] = {"Bucket": listing_bucket, "Prefix": prefix, "MaxKeys": max_keys}
    if delimiter:
        kwargs["Delimiter"] = delimiter
    while True:
        page = s3.list_objects(**kwargs)
        items = sorted(_page_items(page), key=lambda kv: kv[1].encode())
        got += items
        if not page["IsTruncated"]:
            break
        # NextMarker comes only with a delimiter; otherwise clients use the last key.
        kwargs["Marker"] = page.get("NextMarker") or items[-1][1]
    assert got == expected


def test_start_after_and_url_encoding(s3: Any, listing_bucket: str) -> None:
    page = s3.list_objects_v2(Bucket=listing_bucket, StartAfter="flat/01990", Prefix="flat/")
    assert [o["Key"] for o in page["Contents"]] == [f"flat/{i:05d}" for i in range(1991, 2000)]
    # botocore asks for encoding-type=url and decodes; the keys must come back exact.
    specials = {"with space/x", "plus+/y", "pct%2F/z", "€uro/1", "emoji-😀/k"}
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=listing_bucket)
    listed = [o["Key"] for page in pages for o in page["Contents"]]
    assert specials <= set(listed)
    assert len(listed) == len(KEYS)


def test_raw_url_encoded_listing(cluster: Cluster, listing_bucket: str) -> None:
    status, _, body = cluster.raw(
        "GET", f"/{listing_bucket}?list-type=2&prefix=plus&encoding-type=url"
    )
    assert status == 200
    assert b"<Key>plus%2B/y</Key>" in body
    assert b"<EncodingType>url</EncodingType>" in body
    status, _, body = cluster.raw("GET", f"/{listing_bucket}?list-type=2&prefix=plus")
    assert b"<Key>plus+/y</Key>" in body


def test_max_keys_errors_and_clamp(cluster: Cluster, listing_bucket: str) -> None:
    status, _, body = cluster.raw("GET", f"/{listing_bucket}?list-type=2&max-keys=abc")
    assert status == 400 and b"<Code>InvalidArgument</Code>" in body
    status, _, body = cluster.raw("GET", f"/{listing_bucket}?list-type=2&max-keys=-1")
    assert status == 400 and b"<Code>InvalidArgument</Code>" in body
    status, _, body = cluster.raw("GET", f"/{listing_bucket}?list-type=2&max-keys=5000")
    assert status == 200 and b"<MaxKeys>1000</MaxKeys>" in body
    assert body.count(b"<Contents>") == 1000
    status, _, body = cluster.raw("GET", f"/{listing_bucket}?list-type=2&continuation-token=%%%")
    assert status == 400
