"""ListObjects paging over MemoryMetadata, against a brute-force model of S3 listing."""

from __future__ import annotations

import asyncio
import hashlib
import random
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import TypeVar

import pytest

from s3compat.core.layout import Codec
from s3compat.core.models import ListEntry, ListPage, NewObject
from s3compat.core.ports import MetadataStore
from s3compat.service import listing
from s3compat.service.listing import list_objects
from tests.unit.memory_metadata import MemoryMetadata

T = TypeVar("T")
BUCKET = "listing"
NODES = [f"node-{i}" for i in range(6)]

# Item kinds in a listing: a key (Contents) or a common prefix (CommonPrefixes).
KEY, PREFIX = "key", "prefix"
Item = tuple[str, str]

PIECES = [
    "a",
    "a/",
    "a/b",
    "a//b",
    "//",
    "/",
    "b c",
    "b+c",
    "b%2Fc",
    "$x",
    "%",
    "+",
    " ",
    "é",
    "日本/語",
    "😀",
    "\ue000",
    "\uffff",
    "\U00010000",
    "\U0010ffff",
    "z",
    "aa",
    "a-b",
    "a.b",
    "0",
    "~",
]
MUST_HAVE = [
    "a",
    "a/",
    "a/b",
    "a/b/",
    "a/b/c",
    "a//",
    "a//b",
    "a///c",
    "//",
    "/",
    "/lead",
    "trailing/",
    "b c",
    "b+c",
    "b%20c",
    "$",
    "%",
    "+",
    " ",
    "é",
    "e\u0301",
    "日本/語/",
    "😀/x",
    "\U0010ffff",
    "\U0010ffff/",
    "\ue000",
    "\uffff",
    "\U00010000",
    "\ud7ff",
    "photos/2024/01/a.jpg",
    "photos/2024/01/b.jpg",
    "photos/2024/02/c.jpg",
    "photos/2025/x.jpg",
    "photos/index.html",
]

PREFIXES = ["", "a", "a/", "a/b", "a//", "photos/", "photos/2024/", "b", "日本", "\U0010ffff"]
PREFIXES += ["nothing-here", "\U00010000"]
DELIMITERS: list[str | None] = [None, "/", "a", "//", "\U0010ffff", "é"]
MAX_KEYS = [1, 2, 3, 7, 1000]


def run(fn: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await fn()

    return asyncio.run(main())


def utf8(value: str) -> bytes:
    return value.encode("utf-8")


def build_keys() -> list[str]:
    rng = random.Random(7)
    combos = {p + q for p in PIECES for q in PIECES} | {p + "/" + q for p in PIECES for q in PIECES}
    keys = set(MUST_HAVE) | set(rng.sample(sorted(combos), 270))
    return sorted(keys)


KEYS = build_keys()


def etag_of(key: str) -> str:
    return '"' + hashlib.md5(utf8(key)).hexdigest() + '"'


async def fill(meta: MemoryMetadata, keys: list[str]) -> None:
    for node in NODES:
        await meta.upsert_node(node, f"{node}:9000")
    await meta.create_bucket(BUCKET, "owner", "us-east-1")
    await meta.create_bucket("other", "owner", "us-east-1")  # must never leak into listings
    for i, key in enumerate(keys):
        for bucket in (BUCKET, "other"):
            blob_id = uuid.uuid4()
            await meta.begin_blob(blob_id, Codec(6, 0), NODES)
            obj = NewObject(
                bucket=bucket,
                key=key,
                size=i,
                etag=etag_of(key),
                content_type=None,
                headers={},
                user_meta={},
                part_blobs=[blob_id],
                part_sizes=[i],
            )
            await meta.commit_object(obj, blob_id, b"\0" * 16, [])


def make_store(keys: list[str] = KEYS) -> MemoryMetadata:
    meta = MemoryMetadata(clock=lambda: datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    run(lambda: fill(meta, keys))
    return meta


@pytest.fixture(scope="module")
def store() -> MemoryMetadata:
    return make_store()


# --- the model --------------------------------------------------------------------------


def reference(keys: list[str], prefix: str, delimiter: str | None) -> list[Item]:
    """S3 listing by definition: sort by UTF-8 bytes, filter by prefix, and roll every key
    whose remainder after the prefix contains the delimiter into prefix + remainder up to
    and including the delimiter's first occurrence."""
    items: list[Item] = []
    seen: set[str] = set()
    for key in sorted(keys, key=utf8):
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :]
        if delimiter and delimiter in rest:
            common = prefix + rest[: rest.index(delimiter) + len(delimiter)]
            if common not in seen:
                seen.add(common)
                items.append((PREFIX, common))
        else:
            items.append((KEY, key))
    return items


def after_marker(items: list[Item], marker: str) -> list[Item]:
    """The items a listing resumes with after `marker`: those sorting after it. A common
    prefix that contains the marker sorts before it, so it is not repeated."""
    return [item for item in items if utf8(item[1]) > utf8(marker)]


def page_items(page: ListPage) -> list[Item]:
    """Contents and CommonPrefixes merged back into one listing order."""
    items = [(KEY, e.key) for e in page.entries] + [(PREFIX, p) for p in page.common_prefixes]
    items.sort(key=lambda item: utf8(item[1]))
    return items


async def page_through(
    meta: MetadataStore, prefix: str, delimiter: str | None, max_keys: int, expected: list[Item]
) -> list[Item]:
    got: list[Item] = []
    after: str | None = None
    for _ in range(len(expected) + 2):
        page = await list_objects(
            meta, BUCKET, prefix=prefix, delimiter=delimiter, after=after, max_keys=max_keys
        )
        items = page_items(page)
        assert page.count == len(items) <= max_keys
        got += items
        assert got == expected[: len(got)], "pages must follow the reference, no repeats"
        assert page.is_truncated == (len(got) < len(expected))
        assert page.next_marker == (items[-1][1] if items else None)
        if not page.is_truncated:
            return got
        assert page.count == max_keys  # a truncated page is a full page
        after = page.next_marker
    raise AssertionError("paging did not end")


# --- tests ------------------------------------------------------------------------------


def test_fixture_has_the_awkward_keys() -> None:
    assert len(KEYS) >= 280
    for key in ("a", "a/b", "a/", "a//b", "trailing/", "b c", "b+c", "%", "$", "😀/x"):
        assert key in KEYS
    # Astral characters sort after U+FFFF in UTF-8 (they would sort before U+E000 in UTF-16).
    order = [k for k in sorted(KEYS, key=utf8) if k in ("\ue000", "\uffff", "\U00010000")]
    assert order == ["\ue000", "\uffff", "\U00010000"]


@pytest.mark.parametrize("max_keys", MAX_KEYS)
@pytest.mark.parametrize("delimiter", DELIMITERS, ids=repr)
@pytest.mark.parametrize("prefix", PREFIXES, ids=repr)
def test_paging_enumerates_exactly_the_reference(
    store: MemoryMetadata, prefix: str, delimiter: str | None, max_keys: int
) -> None:
    expected = reference(KEYS, prefix, delimiter)
    got = run(lambda: page_through(store, prefix, delimiter, max_keys, expected))
    assert got == expected
    assert len(set(got)) == len(got)


@pytest.mark.parametrize("max_batch", [1, 2, 3, 10])
@pytest.mark.parametrize("max_keys", [1, 3, 1000])
@pytest.mark.parametrize("delimiter", DELIMITERS, ids=repr)
@pytest.mark.parametrize("prefix", ["", "a", "a/", "photos/"], ids=repr)
def test_paging_with_small_database_batches(
    store: MemoryMetadata,
    monkeypatch: pytest.MonkeyPatch,
    prefix: str,
    delimiter: str | None,
    max_keys: int,
    max_batch: int,
) -> None:
    """Tiny batches make every page cross batch boundaries and seek past common prefixes."""
    monkeypatch.setattr(listing, "MAX_BATCH", max_batch)
    expected = reference(KEYS, prefix, delimiter)
    assert run(lambda: page_through(store, prefix, delimiter, max_keys, expected)) == expected


def test_entries_carry_the_stored_fields(store: MemoryMetadata) -> None:
    page = run(lambda: list_objects(store, BUCKET, max_keys=1000))
    assert not page.is_truncated and not page.common_prefixes
    assert [e.key for e in page.entries] == sorted(KEYS, key=utf8)
    for entry in page.entries:
        assert entry.size == KEYS.index(entry.key)
        assert entry.etag == etag_of(entry.key)
        assert entry.last_modified == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_markers_anywhere_resume_after_the_marker(store: MemoryMetadata) -> None:
    """Markers that are keys, common prefixes, keys inside a common prefix, or no key."""
    rng = random.Random(11)
    candidates = ["", " ", "a", "a/", "a/b", "a/b/zzz", "a0", "photos/2024/01/", "\U0010ffff"]
    candidates += ["\U0010ffff\U0010ffff", "zzz", *rng.sample(KEYS, 12)]
    candidates += [k + "\x01" for k in rng.sample(KEYS, 4)]

    async def check() -> int:
        checked = 0
        for prefix in PREFIXES:
            for delimiter in DELIMITERS:
                full = reference(KEYS, prefix, delimiter)
                markers = candidates + [item[1] for item in full[:: max(1, len(full) // 8)]]
                for marker in markers:
                    rest = after_marker(full, marker)
                    for max_keys in (1, 5, 1000):
                        page = await list_objects(
                            store,
                            BUCKET,
                            prefix=prefix,
                            delimiter=delimiter,
                            after=marker,
                            max_keys=max_keys,
                        )
                        assert page_items(page) == rest[:max_keys], (prefix, delimiter, marker)
                        assert page.is_truncated == (len(rest) > max_keys)
                        checked += 1
        return checked

    assert run(check) > 1000


@pytest.mark.parametrize("delimiter", DELIMITERS, ids=repr)
@pytest.mark.parametrize("prefix", ["", "a/"], ids=repr)
def test_max_keys_zero_is_an_empty_untruncated_page(
    store: MemoryMetadata, prefix: str, delimiter: str | None
) -> None:
    page = run(lambda: list_objects(store, BUCKET, prefix=prefix, delimiter=delimiter, max_keys=0))
    assert page.entries == [] and page.common_prefixes == []
    assert not page.is_truncated
    assert page.next_marker is None


def test_empty_and_missing_buckets_list_nothing() -> None:
    meta = make_store([])
    page = run(lambda: list_objects(meta, BUCKET, delimiter="/"))
    assert page.count == 0 and not page.is_truncated
    page = run(lambda: list_objects(meta, "no-such-bucket"))
    assert page.count == 0 and not page.is_truncated


class CountingMetadata(MemoryMetadata):
    """Counts the rows listing fetches from the key index."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        super().__init__(clock=clock)
        self.rows_fetched = 0
        self.keys_fetched: list[str] = []

    async def list_keys(
        self,
        bucket: str,
        *,
        after: str | None,
        at_least: str | None,
        below: str | None,
        limit: int,
    ) -> list[ListEntry]:
        rows = await super().list_keys(
            bucket, after=after, at_least=at_least, below=below, limit=limit
        )
        self.rows_fetched += len(rows)
        self.keys_fetched += [r.key for r in rows]
        return rows


def test_common_prefixes_are_skipped_in_the_index_not_fetched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A page costs about what it returns: keys under a reported prefix are seeked past."""
    monkeypatch.setattr(listing, "MAX_BATCH", 10)
    keys = [f"dir{d}/{i:04d}" for d in range(3) for i in range(300)] + ["file"]
    meta = CountingMetadata(clock=lambda: datetime(2025, 1, 1, tzinfo=UTC))
    run(lambda: fill(meta, keys))
    page = run(lambda: list_objects(meta, BUCKET, delimiter="/", max_keys=1000))
    assert page.common_prefixes == ["dir0/", "dir1/", "dir2/"]
    assert [e.key for e in page.entries] == ["file"]
    assert not page.is_truncated
    assert meta.rows_fetched <= 4 * 10  # one batch per prefix and one for the rest, not 901


def test_resuming_after_a_common_prefix_fetches_none_of_its_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(listing, "MAX_BATCH", 10)
    keys = [f"dir{d}/{i:04d}" for d in range(3) for i in range(300)] + ["file"]
    meta = CountingMetadata(clock=lambda: datetime(2025, 1, 1, tzinfo=UTC))
    run(lambda: fill(meta, keys))
    for marker in ("dir0/", "dir0/0007"):
        meta.keys_fetched = []
        page = run(partial(list_objects, meta, BUCKET, delimiter="/", after=marker))
        assert page.common_prefixes == ["dir1/", "dir2/"]
        assert [e.key for e in page.entries] == ["file"]
        assert not [k for k in meta.keys_fetched if k.startswith("dir0/")]
