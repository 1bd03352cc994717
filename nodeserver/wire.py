"""The node contract on the wire: method paths, limits, and a hand codec for bulk frames.

Why a hand codec: with the generated classes, every 1 MiB data frame is copied into a
message, serialized (another copy), parsed into a message on the other side (a copy) and
read out as `bytes` (one more). The two bulk frames have a trivial encoding (one tag byte,
a varint length, the payload), so we write it directly: encoding costs one copy (the
join that builds the bytes gRPC sends) and decoding none (a memoryview over the received
message). Anything else (headers, trailers, or bytes another protobuf implementation laid
out differently) goes through the generated classes, so any protobuf client interoperates.
`tests/unit/test_wire.py` proves byte equality with protobuf; `benchmarks/bench_wire.py`
measures the gain.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeAlias

import xxhash
from google.protobuf.message import DecodeError

from nodeserver.proto import storage_pb2 as pb

SERVICE = "s3compat.storage.v1.Storage"
STORE_CHUNK = f"/{SERVICE}/StoreChunk"
RETRIEVE_CHUNK = f"/{SERVICE}/RetrieveChunk"
DELETE_CHUNK = f"/{SERVICE}/DeleteChunk"
STAT = f"/{SERVICE}/Stat"
HEALTH = f"/{SERVICE}/Health"

MAX_FRAME = 1 << 20
"""Largest data payload in one bulk frame, both directions."""

MAX_MESSAGE_BYTES = 4 << 20
"""gRPC message limit on both sides: comfortably above 2 MiB frames plus framing."""

CHECKSUM_SIZE = 16
"""Chunk checksums are xxh3_128 digests of the whole chunk content."""

HEADER_ACCEPTED = ("s3compat-chunk", "accepted")
"""Initial metadata a node sends once it accepted a StoreChunk header (and has a temp file).

Clients send no data before it, so a refusal reaches them as a clean status. A refusal's
own (empty) initial metadata lacks this entry, which is how the two are told apart.
"""

Buffer: TypeAlias = bytes | bytearray | memoryview

StoreFrame: TypeAlias = memoryview | pb.ChunkHeader | pb.ChunkTrailer | None
"""A decoded StoreChunkRequest: data, header, trailer, or None (empty or malformed)."""

StoreRequest: TypeAlias = Buffer | pb.StoreChunkRequest
"""What a client writes on the StoreChunk stream: raw data, or a header/trailer message."""

# Tag byte = field number << 3 | wire type 2 (length-delimited).
_STORE_DATA_TAG = (2 << 3) | 2  # StoreChunkRequest.data (oneof member: always present)
_RETRIEVE_DATA_TAG = (1 << 3) | 2  # RetrieveChunkResponse.data (proto3: omitted when empty)
_MAX_VARINT_BYTES = 10


def chunk_hasher() -> xxhash.xxh3_128:
    """A fresh incremental hasher for the whole-chunk checksum."""
    return xxhash.xxh3_128()


def encode_varint(value: int) -> bytes:
    """Protobuf base-128 varint (least significant group first)."""
    if value < 0:
        raise ValueError("varints here are unsigned")
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _decode_varint(buf: bytes, pos: int) -> tuple[int, int] | None:
    """Return (value, position after it), or None if truncated or too long."""
    value = 0
    shift = 0
    end = min(len(buf), pos + _MAX_VARINT_BYTES)
    while pos < end:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    return None


def _encode_bytes_field(tag: int, payload: Buffer) -> bytes:
    # One copy: join writes the prefix and the payload straight into the result.
    size = payload.nbytes if isinstance(payload, memoryview) else len(payload)
    return b"".join((bytes((tag,)), encode_varint(size), payload))


def _only_field(buf: bytes, tag: int) -> memoryview | None:
    """Payload view if `buf` is exactly one length-delimited field with `tag`, else None."""
    if len(buf) < 2 or buf[0] != tag:
        return None
    parsed = _decode_varint(buf, 1)
    if parsed is None:
        return None
    length, start = parsed
    if start + length != len(buf):
        return None
    return memoryview(buf)[start:]


def encode_store_request(frame: StoreRequest) -> bytes:
    """Serializer for StoreChunk requests (client side)."""
    if isinstance(frame, pb.StoreChunkRequest):
        return frame.SerializeToString()
    return _encode_bytes_field(_STORE_DATA_TAG, frame)


def decode_store_request(buf: bytes) -> StoreFrame:
    """Deserializer for StoreChunk requests (server side); data comes back uncopied.

    Returns None instead of raising for an empty or malformed message, so the servicer can
    answer INVALID_ARGUMENT rather than gRPC's generic deserialization failure.
    """
    data = _only_field(buf, _STORE_DATA_TAG)
    if data is not None:
        return data
    try:
        message = pb.StoreChunkRequest.FromString(buf)
    except DecodeError:
        return None
    kind = message.WhichOneof("frame")
    if kind == "data":
        return memoryview(message.data)
    if kind == "header":
        return message.header
    if kind == "trailer":
        return message.trailer
    return None


def store_data_frames(data: Buffer) -> Iterator[memoryview]:
    """Split a buffer into views of at most MAX_FRAME bytes (nothing for empty input)."""
    view = memoryview(data).cast("B")
    for start in range(0, len(view), MAX_FRAME):
        yield view[start : start + MAX_FRAME]


def encode_retrieve_response(data: Buffer) -> bytes:
    """Serializer for RetrieveChunk responses (server side)."""
    if (data.nbytes if isinstance(data, memoryview) else len(data)) == 0:
        # proto3 leaves a scalar field at its default value off the wire.
        return b""
    return _encode_bytes_field(_RETRIEVE_DATA_TAG, data)


def decode_retrieve_response(buf: bytes) -> memoryview:
    """Deserializer for RetrieveChunk responses (client side); data comes back uncopied."""
    if not buf:
        return memoryview(b"")
    data = _only_field(buf, _RETRIEVE_DATA_TAG)
    if data is not None:
        return data
    return memoryview(pb.RetrieveChunkResponse.FromString(buf).data)
