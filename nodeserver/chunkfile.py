"""The on-disk format of one chunk file, and verified reads from it.

Layout (all integers little-endian):

    header   64 bytes  magic "S3CCHUNK", format version u16, flags u16, block size u32,
                       chunk size u64, whole-chunk xxh3_128 (16 bytes), xxh3_64 of the
                       preceding 40 bytes, zero padding
    data     chunk size bytes
    trailer  one xxh3_64 digest (8 bytes) per block of `block size` bytes (last one short)

Why per-block checksums: a ranged read verifies only the blocks it touches, so a 4 KiB
read of a 2 GB chunk hashes 256 KiB, not 2 GB, and still never returns a bad byte.
Why the header has its own checksum: a flipped bit in the size or block size would
otherwise send reads to the wrong offsets. The file length is fully determined by the
header, so truncation is detected before anything is read.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import xxhash

from nodeserver.errors import CorruptChunk

MAGIC = b"S3CCHUNK"
FORMAT_VERSION = 1
HEADER_SIZE = 64
DEFAULT_BLOCK_SIZE = 256 * 1024
DIGEST_SIZE = 8
MIN_BLOCK_SIZE = 4096
MAX_BLOCK_SIZE = 64 << 20

_FIELDS = struct.Struct("<8sHHIQ16s")
_HEADER_CHECK = struct.Struct("<Q")
_PADDING = bytes(HEADER_SIZE - _FIELDS.size - _HEADER_CHECK.size)


@dataclass(frozen=True, slots=True)
class ChunkMeta:
    """What the header says about a chunk."""

    size: int
    checksum: bytes
    block_size: int = DEFAULT_BLOCK_SIZE

    @property
    def block_count(self) -> int:
        return block_count(self.size, self.block_size)

    @property
    def file_size(self) -> int:
        return HEADER_SIZE + self.size + DIGEST_SIZE * self.block_count

    @property
    def trailer_offset(self) -> int:
        return HEADER_SIZE + self.size


def block_count(size: int, block_size: int) -> int:
    return -(-size // block_size)


def pack_header(meta: ChunkMeta) -> bytes:
    fields = _FIELDS.pack(MAGIC, FORMAT_VERSION, 0, meta.block_size, meta.size, meta.checksum)
    check = _HEADER_CHECK.pack(xxhash.xxh3_64_intdigest(fields))
    return fields + check + _PADDING


def unpack_header(raw: bytes) -> ChunkMeta:
    """Parse and validate a header; any inconsistency is corruption."""
    if len(raw) < HEADER_SIZE:
        raise CorruptChunk("chunk file shorter than its header")
    fields = raw[: _FIELDS.size]
    (check,) = _HEADER_CHECK.unpack_from(raw, _FIELDS.size)
    if xxhash.xxh3_64_intdigest(fields) != check:
        raise CorruptChunk("chunk header checksum mismatch")
    magic, version, _flags, block_size, size, checksum = _FIELDS.unpack(fields)
    if magic != MAGIC:
        raise CorruptChunk("not a chunk file")
    if version != FORMAT_VERSION:
        raise CorruptChunk(f"unsupported chunk format version {version}")
    if not MIN_BLOCK_SIZE <= block_size <= MAX_BLOCK_SIZE:
        raise CorruptChunk(f"implausible block size {block_size}")
    return ChunkMeta(size=size, checksum=checksum, block_size=block_size)


def read_meta(fd: int) -> ChunkMeta:
    """Read the header of an open chunk file and check the file length against it."""
    meta = unpack_header(os.pread(fd, HEADER_SIZE, 0))
    actual = os.fstat(fd).st_size
    if actual != meta.file_size:
        raise CorruptChunk(f"chunk file is {actual} bytes, header implies {meta.file_size}")
    return meta


def read_blocks(fd: int, meta: ChunkMeta, first: int, stop: int) -> bytes:
    """Return blocks [first, stop) after verifying each against its trailer digest."""
    if not 0 <= first < stop <= meta.block_count:
        raise ValueError(f"block range [{first}, {stop}) outside 0..{meta.block_count}")
    bs = meta.block_size
    start = first * bs
    length = min(stop * bs, meta.size) - start
    data = os.pread(fd, length, HEADER_SIZE + start)
    n_digests = stop - first
    digests = os.pread(fd, DIGEST_SIZE * n_digests, meta.trailer_offset + DIGEST_SIZE * first)
    if len(data) != length or len(digests) != DIGEST_SIZE * n_digests:
        raise CorruptChunk("chunk file shrank while being read")
    view = memoryview(data)
    for i in range(n_digests):
        block = view[i * bs : (i + 1) * bs]
        expected = digests[i * DIGEST_SIZE : (i + 1) * DIGEST_SIZE]
        if xxhash.xxh3_64_digest(block) != expected:
            raise CorruptChunk(f"block {first + i} checksum mismatch")
    return data


class ChunkHasher:
    """Computes the whole-chunk checksum and the per-block digests as data streams in."""

    def __init__(self, block_size: int = DEFAULT_BLOCK_SIZE) -> None:
        self.block_size = block_size
        self.size = 0
        self._whole = xxhash.xxh3_128()
        self._block = xxhash.xxh3_64()
        self._block_fill = 0
        self._digests = bytearray()

    def update(self, data: memoryview) -> None:
        self._whole.update(data)
        self.size += len(data)
        pos = 0
        while pos < len(data):
            take = min(self.block_size - self._block_fill, len(data) - pos)
            self._block.update(data[pos : pos + take])
            self._block_fill += take
            pos += take
            if self._block_fill == self.block_size:
                self._close_block()

    def _close_block(self) -> None:
        self._digests += self._block.digest()
        self._block.reset()
        self._block_fill = 0

    def finish(self) -> tuple[ChunkMeta, bytes]:
        """Header fields and the trailer; call once, after the last update."""
        if self._block_fill:
            self._close_block()
        meta = ChunkMeta(self.size, self._whole.digest(), self.block_size)
        return meta, bytes(self._digests)
