"""Striped blob layout: simulate writes with `split_segment` and read ranges back.

Small fragment sizes keep every segment tiny, so exhaustive range checks stay fast while
still crossing segment and fragment boundaries many times.
"""

from __future__ import annotations

import random
import re
import uuid
from dataclasses import replace

import pytest

from s3compat.core.layout import (
    CHUNKS_PER_BLOB,
    DEFAULT_FRAGMENT_SIZE,
    PLAIN_SPLIT,
    RS_4_2,
    BlobLayout,
    Codec,
    FragmentRead,
    chunk_id,
    split_segment,
)

MiB = 1 << 20
NODE_CHUNK_ID = re.compile(r"^[0-9a-f]{32}-[0-9]{1,3}$")
PARITY_FILL = 0xEE  # stand-in parity bytes: layout math only cares about their length
HEADER_FILL = 0xAB  # stand-in fragment headers (parity codecs only)

CODECS = [
    Codec(k=6, m=0, fragment_size=4),
    Codec(k=6, m=0, fragment_size=16),
    Codec(k=6, m=0, fragment_size=1),
    Codec(k=4, m=2, fragment_size=4),
    Codec(k=4, m=2, fragment_size=5),
]
EXHAUSTIVE_UP_TO = 70
RANDOM_RANGES = 400


def _sizes(codec: Codec) -> list[int]:
    seg = codec.segment_size
    fixed = [0, 1, 2, 3, 4, 5, 6, 7, 11, 12, 13, seg - 1, seg, seg + 1, 2 * seg, 3 * seg + 5]
    rng = random.Random(f"sizes-{codec}")
    rand = [rng.randrange(0, 6 * seg) for _ in range(3)]
    return sorted({s for s in fixed + rand if s >= 0})


def _cases() -> list[tuple[Codec, int]]:
    return [(codec, size) for codec in CODECS for size in _sizes(codec)]


def _blob(size: int) -> bytes:
    # Non-zero, position-dependent bytes: misplaced or padding bytes cannot go unnoticed.
    return bytes((i * 7 + 1) % 251 + 1 for i in range(size))


def _write(codec: Codec, blob: bytes) -> list[bytes]:
    """What the write path stores: fragment i of every segment appended to chunk i."""
    chunks = [bytearray() for _ in range(codec.width)]
    for start in range(0, len(blob), codec.segment_size):
        segment = blob[start : start + codec.segment_size]
        data = split_segment(codec, segment)
        assert len(data) == codec.k
        flen = codec.fragment_len(len(segment))
        assert [len(f) for f in data] == [flen] * codec.k
        joined = b"".join(bytes(f) for f in data)
        assert joined[: len(segment)] == segment
        assert joined[len(segment) :] == bytes(len(joined) - len(segment))  # zero padding
        parity = [bytes([PARITY_FILL]) * flen for _ in range(codec.m)]
        fragments: list[bytes | memoryview] = [*data, *parity]
        header = bytes([HEADER_FILL]) * codec.header_size  # the coder's, with parity
        for i, fragment in enumerate(fragments):
            chunks[i] += header
            chunks[i] += fragment
    return [bytes(c) for c in chunks]


def _assemble(layout: BlobLayout, chunks: list[bytes], first: int, last: int) -> bytes:
    out = bytearray()
    for reads in layout.reads_for_range(first, last):
        for r in reads:
            stored = chunks[r.index][r.chunk_offset : r.chunk_offset + r.fragment_len]
            assert len(stored) == r.fragment_len
            out += stored[r.start : r.stop]
    return bytes(out)


def _overlapping(layout: BlobLayout, first: int, last: int) -> list[tuple[int, int]]:
    """Brute force: (segment, data fragment) pairs holding real bytes inside first..last."""
    codec = layout.codec
    hits = []
    for segment in range(layout.segment_count):
        base = segment * codec.segment_size
        end = base + layout.segment_len(segment)  # exclusive
        flen = layout.payload_len(segment)
        for index in range(codec.k):
            lo = base + index * flen
            hi = min(lo + flen, end)  # real bytes only, never the padding
            if lo < hi and lo <= last and hi - 1 >= first:
                hits.append((segment, index))
    return hits


def _ranges(size: int, codec: Codec) -> list[tuple[int, int]]:
    if size == 0:
        return []
    if size <= EXHAUSTIVE_UP_TO:
        return [(f, la) for f in range(size) for la in range(f, size)]
    rng = random.Random(f"ranges-{codec}-{size}")
    out = {(0, size - 1), (0, 0), (size - 1, size - 1)}
    seg, frag = codec.segment_size, codec.fragment_size
    for edge in range(0, size, frag):  # around every fragment and segment boundary
        for f in (edge - 1, edge, edge + 1):
            for la in (f, f + 1, f + frag, f + seg, size - 1):
                if 0 <= f <= la < size:
                    out.add((f, la))
    for _ in range(RANDOM_RANGES):
        a, b = rng.randrange(size), rng.randrange(size)
        out.add((min(a, b), max(a, b)))
    return sorted(out)


def _case_id(case: tuple[Codec, int]) -> str:
    codec, size = case
    return f"k{codec.k}m{codec.m}F{codec.fragment_size}-size{size}"


@pytest.fixture(params=_cases(), ids=_case_id)
def written(request: pytest.FixtureRequest) -> tuple[BlobLayout, bytes, list[bytes]]:
    codec, size = request.param
    blob = _blob(size)
    return BlobLayout(codec, size), blob, _write(codec, blob)


def test_every_chunk_has_the_layout_chunk_size(
    written: tuple[BlobLayout, bytes, list[bytes]],
) -> None:
    layout, blob, chunks = written
    assert len(chunks) == layout.codec.width
    assert [len(c) for c in chunks] == [layout.chunk_size] * layout.codec.width
    assert layout.segment_count == -(-len(blob) // layout.codec.segment_size)
    assert sum(layout.segment_len(s) for s in range(layout.segment_count)) == len(blob)


def test_data_fragments_concatenate_to_the_blob(
    written: tuple[BlobLayout, bytes, list[bytes]],
) -> None:
    layout, blob, chunks = written
    out = bytearray()
    for segment in range(layout.segment_count):
        offset = layout.chunk_offset(segment) + layout.codec.header_size
        flen = layout.payload_len(segment)
        data = b"".join(chunks[i][offset : offset + flen] for i in range(layout.codec.k))
        out += data[: layout.segment_len(segment)]
    assert bytes(out) == blob


def test_parity_chunks_hold_only_parity(written: tuple[BlobLayout, bytes, list[bytes]]) -> None:
    layout, _, chunks = written
    codec = layout.codec
    expected = b"".join(
        bytes([HEADER_FILL]) * codec.header_size
        + bytes([PARITY_FILL]) * layout.payload_len(segment)
        for segment in range(layout.segment_count)
    )
    for chunk in chunks[codec.k :]:
        assert chunk == expected
        assert len(chunk) == layout.chunk_size


def test_reads_for_range_returns_exactly_the_range(
    written: tuple[BlobLayout, bytes, list[bytes]],
) -> None:
    layout, blob, chunks = written
    for first, last in _ranges(len(blob), layout.codec):
        got = _assemble(layout, chunks, first, last)
        assert got == blob[first : last + 1], (first, last)


def test_reads_for_range_touches_only_overlapping_fragments(
    written: tuple[BlobLayout, bytes, list[bytes]],
) -> None:
    layout, blob, _ = written
    codec = layout.codec
    for first, last in _ranges(len(blob), codec):
        groups = list(layout.reads_for_range(first, last))
        touched = []
        for reads in groups:
            assert reads, "an empty group means a segment was visited for nothing"
            assert len({r.segment for r in reads}) == 1
            for r in reads:
                assert 0 <= r.index < codec.k  # data fragments only: no decode on healthy reads
                assert r.chunk_offset == layout.chunk_offset(r.segment)
                assert r.fragment_len == layout.fragment_len(r.segment)
                assert 0 <= r.start < r.stop <= r.fragment_len
                touched.append((r.segment, r.index))
        assert touched == _overlapping(layout, first, last), (first, last)
        segments = [reads[0].segment for reads in groups]
        assert segments == sorted(set(segments))


@pytest.mark.parametrize("codec", CODECS, ids=str)
@pytest.mark.parametrize("size", [0, 1, 13])
def test_reads_for_range_refuses_ranges_outside_the_blob(codec: Codec, size: int) -> None:
    layout = BlobLayout(codec, size)
    for first, last in [(0, size), (-1, 0), (size, size), (1, 0), (size + 5, size + 9)]:
        if 0 <= first <= last < size:
            continue
        with pytest.raises(ValueError):
            list(layout.reads_for_range(first, last))


def test_tiny_blobs_in_the_plain_split() -> None:
    """Objects under six bytes still fill six equal chunks (padding), and read back."""
    for size in range(6):
        blob = bytes(range(1, size + 1))
        layout = BlobLayout(PLAIN_SPLIT, size)
        chunks = _write(PLAIN_SPLIT, blob)
        assert [len(c) for c in chunks] == [layout.chunk_size] * 6
        assert layout.chunk_size == (1 if size else 0)
        assert b"".join(chunks)[:size] == blob
        for first in range(size):
            for last in range(first, size):
                assert _assemble(layout, chunks, first, last) == blob[first : last + 1]


def test_rs_4_2_fragment_math() -> None:
    """k=4, m=2 with 1 MiB fragments: numbers worked out by hand. Every stored fragment is
    an 80-byte coder header (H) and its payload."""
    codec = replace(RS_4_2, fragment_size=MiB)
    H = 80
    assert codec.header_size == H
    assert codec.width == CHUNKS_PER_BLOB
    assert codec.segment_size == 4 * MiB
    layout = BlobLayout(codec, 10 * MiB)  # segments of 4, 4 and 2 MiB
    assert layout.segment_count == 3
    assert [layout.segment_len(s) for s in range(3)] == [4 * MiB, 4 * MiB, 2 * MiB]
    assert [layout.payload_len(s) for s in range(3)] == [MiB, MiB, MiB // 2]
    assert [layout.fragment_len(s) for s in range(3)] == [H + MiB, H + MiB, H + MiB // 2]
    assert [layout.chunk_offset(s) for s in range(3)] == [0, H + MiB, 2 * (H + MiB)]
    assert layout.chunk_size == 3 * H + 2 * MiB + MiB // 2

    # One byte in the middle of segment 1's second data fragment.
    at = 4 * MiB + MiB + 123
    assert list(layout.reads_for_range(at, at)) == [
        [FragmentRead(1, 1, H + MiB, H + MiB, H + 123, H + 124)],
    ]
    # Last 10 bytes of segment 0 through the first 10 of segment 2's first fragment.
    groups = list(layout.reads_for_range(4 * MiB - 10, 8 * MiB + 9))
    assert [[(r.segment, r.index) for r in g] for g in groups] == [
        [(0, 3)],
        [(1, 0), (1, 1), (1, 2), (1, 3)],
        [(2, 0)],
    ]
    assert groups[0][0].start == H + MiB - 10 and groups[0][0].stop == H + MiB
    assert groups[2][0] == FragmentRead(2, 0, 2 * (H + MiB), H + MiB // 2, H, H + 10)

    # A short last segment: 4 MiB + 6 bytes leaves a 6-byte segment of 2-byte fragments.
    short = BlobLayout(codec, 4 * MiB + 6)
    assert short.payload_len(1) == 2
    assert short.chunk_size == 2 * H + MiB + 2
    assert list(short.reads_for_range(4 * MiB + 5, 4 * MiB + 5)) == [
        [FragmentRead(1, 2, H + MiB, H + 2, H + 1, H + 2)],
    ]


def test_plain_split_defaults() -> None:
    assert (PLAIN_SPLIT.k, PLAIN_SPLIT.m) == (6, 0)
    assert PLAIN_SPLIT.fragment_size == DEFAULT_FRAGMENT_SIZE
    assert PLAIN_SPLIT.width == CHUNKS_PER_BLOB
    assert BlobLayout(PLAIN_SPLIT, 0).chunk_size == 0
    assert BlobLayout(PLAIN_SPLIT, 6 * MiB + 1).chunk_size == MiB + 1


@pytest.mark.parametrize(
    "k, m, fragment_size", [(0, 6, 4), (-1, 0, 4), (6, -1, 4), (6, 0, 0), (4, 2, -5)]
)
def test_codec_rejects_nonsense(k: int, m: int, fragment_size: int) -> None:
    with pytest.raises(ValueError):
        Codec(k=k, m=m, fragment_size=fragment_size)


def test_split_segment_of_a_full_segment_does_not_copy() -> None:
    codec = Codec(k=6, m=0, fragment_size=4)
    segment = bytearray(_blob(codec.segment_size))
    fragments = split_segment(codec, segment)
    segment[5] ^= 0xFF  # byte 1 of fragment 1: a view sees the change, a copy would not
    assert fragments[1][1] == segment[5]


def test_chunk_id_matches_the_node_id_pattern() -> None:
    for _ in range(20):
        blob_hex = uuid.uuid4().hex
        for index in range(CHUNKS_PER_BLOB):
            cid = chunk_id(blob_hex, index)
            assert NODE_CHUNK_ID.fullmatch(cid), cid
            assert cid == f"{blob_hex}-{index}"
    # Distinct per index and per blob: chunks of one blob never collide on a node.
    a, b = uuid.uuid4().hex, uuid.uuid4().hex
    ids = {chunk_id(x, i) for x in (a, b) for i in range(CHUNKS_PER_BLOB)}
    assert len(ids) == 2 * CHUNKS_PER_BLOB
