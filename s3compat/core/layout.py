"""Striped blob layout: where each byte of a blob lives among its six chunks.

A blob is read in segments of `k × F` bytes. A segment of `L` bytes becomes `k` data
fragments of `ceil(L / k)` bytes each (the last one zero-padded) plus `m` parity fragments
of the same length. Fragment `i` of every segment is appended to chunk `i`, so all chunks
of a blob have the same length and a write needs only one segment in memory.

With parity (m > 0) every stored fragment is the erasure coder's: a fixed
`PARITY_HEADER_SIZE`-byte header, then the payload. The code is systematic, so the payload
of data fragment i is exactly the i-th slice of the segment and a healthy read needs no
decoding; any k fragments of a segment rebuild it. The plain split (m = 0) stores bare
payloads, as blobs written before parity existed do.

Every number here is derived from `(k, m, F)` and the blob size, which is why the codec is
recorded with every blob: layouts can change later without rewriting old blobs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

CHUNKS_PER_BLOB = 6
DEFAULT_FRAGMENT_SIZE = 512 << 10
FRAGMENT_SUM_SIZE = 8  # xxh3_64 digest of one stored fragment
# liberasurecode's fragment header (pyeclib), in front of every fragment of a parity codec.
PARITY_HEADER_SIZE = 80


@dataclass(frozen=True, slots=True)
class Codec:
    """Erasure-code parameters: k data + m parity fragments of up to F bytes per segment."""

    k: int
    m: int
    fragment_size: int = DEFAULT_FRAGMENT_SIZE

    def __post_init__(self) -> None:
        if self.k < 1 or self.m < 0 or self.fragment_size < 1:
            raise ValueError(f"invalid codec {self}")

    @property
    def width(self) -> int:
        """Fragments per segment, which is also the number of chunks per blob."""
        return self.k + self.m

    @property
    def segment_size(self) -> int:
        return self.k * self.fragment_size

    @property
    def header_size(self) -> int:
        """Bytes in front of each stored fragment's payload (the coder's header)."""
        return PARITY_HEADER_SIZE if self.m else 0

    def fragment_len(self, segment_len: int) -> int:
        """Payload length of every fragment of a segment holding `segment_len` bytes."""
        return -(-segment_len // self.k)

    def stored_len(self, segment_len: int) -> int:
        """Stored length (header and payload) of every fragment of such a segment."""
        return self.header_size + self.fragment_len(segment_len)


PLAIN_SPLIT = Codec(k=CHUNKS_PER_BLOB, m=0)
# The default: any two of the six chunks can be lost, at 1.5× storage.
RS_4_2 = Codec(k=4, m=2)


@dataclass(frozen=True, slots=True)
class FragmentRead:
    """Which stored fragment to fetch, and which of its bytes the caller wants."""

    segment: int
    index: int  # data fragment index = chunk index
    chunk_offset: int  # where the stored fragment starts inside its chunk
    fragment_len: int  # stored length of the fragment (read it whole to verify its checksum)
    start: int  # first wanted byte inside the stored fragment (after any header)
    stop: int  # one past the last wanted byte inside the stored fragment


@dataclass(frozen=True, slots=True)
class BlobLayout:
    codec: Codec
    size: int

    @property
    def segment_count(self) -> int:
        return -(-self.size // self.codec.segment_size)

    def segment_len(self, segment: int) -> int:
        seg = self.codec.segment_size
        return min(seg, self.size - segment * seg)

    def payload_len(self, segment: int) -> int:
        return self.codec.fragment_len(self.segment_len(segment))

    def fragment_len(self, segment: int) -> int:
        """Stored length of each fragment of `segment` (header included)."""
        return self.codec.stored_len(self.segment_len(segment))

    def chunk_offset(self, segment: int) -> int:
        """Offset of segment `segment`'s fragment in every chunk: earlier segments are full."""
        return segment * (self.codec.header_size + self.codec.fragment_size)

    @property
    def chunk_size(self) -> int:
        n = self.segment_count
        if n == 0:
            return 0
        return self.chunk_offset(n - 1) + self.fragment_len(n - 1)

    def reads_for_range(self, first: int, last: int) -> Iterator[list[FragmentRead]]:
        """Per overlapping segment, the data fragments that hold bytes `first..last`.

        Only the segments that overlap the range are visited, and in each only the data
        fragments it touches, so a ranged GET reads no more than it must.
        """
        if not 0 <= first <= last < self.size:
            raise ValueError(f"range {first}-{last} outside blob of {self.size} bytes")
        seg_size = self.codec.segment_size
        for segment in range(first // seg_size, last // seg_size + 1):
            base = segment * seg_size
            flen = self.payload_len(segment)
            header = self.codec.header_size
            lo = max(first, base) - base
            hi = min(last, base + self.segment_len(segment) - 1) - base
            reads = []
            for index in range(lo // flen, hi // flen + 1):
                fbase = index * flen
                reads.append(
                    FragmentRead(
                        segment=segment,
                        index=index,
                        chunk_offset=self.chunk_offset(segment),
                        fragment_len=header + flen,
                        start=header + max(lo, fbase) - fbase,
                        stop=header + min(hi, fbase + flen - 1) - fbase + 1,
                    )
                )
            yield reads


def split_segment(codec: Codec, segment: bytes | bytearray | memoryview) -> list[memoryview]:
    """Cut one segment into its k data fragments, zero-padding the last ones.

    Parity fragments are the codec's business (none for the plain split). Full segments are
    sliced without copying.
    """
    view = memoryview(segment)
    flen = codec.fragment_len(len(view))
    out = []
    for i in range(codec.k):
        piece = view[i * flen : (i + 1) * flen]
        if len(piece) < flen:
            piece = memoryview(bytes(piece) + bytes(flen - len(piece)))
        out.append(piece)
    return out


def chunk_id(blob_id_hex: str, index: int) -> str:
    """Chunk ids name files on the nodes: derived from the blob id only, never from a key."""
    return f"{blob_id_hex}-{index}"
