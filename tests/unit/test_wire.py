"""The hand codec for bulk frames must be byte-for-byte protobuf."""

from __future__ import annotations

import array
import os

import pytest

from nodeserver import wire
from nodeserver.proto import storage_pb2 as pb

# Payload sizes around the varint length boundaries (1, 2, 3 and 4 byte lengths).
SIZES = [0, 1, 2, 127, 128, 129, 16383, 16384, 16385, 2097151, 2097152, 2097153]
SIZES += [wire.MAX_FRAME - 1, wire.MAX_FRAME, wire.MAX_FRAME + 1]


def payload(size: int) -> bytes:
    return os.urandom(size)


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16383, 16384, 2**21, 2**32, 2**64 - 1])
def test_varint_matches_protobuf(value: int) -> None:
    # ChunkTrailer.size is field 1, varint: one tag byte (0x08) then the varint.
    expected = pb.ChunkTrailer(size=value).SerializeToString()
    if value:
        assert expected[0] == 0x08
        assert wire.encode_varint(value) == expected[1:]
    else:
        assert wire.encode_varint(0) == b"\x00"


def test_varint_refuses_negative() -> None:
    with pytest.raises(ValueError):
        wire.encode_varint(-1)


@pytest.mark.parametrize("size", SIZES)
def test_store_data_frame_encodes_like_protobuf(size: int) -> None:
    data = payload(size)
    expected = pb.StoreChunkRequest(data=data).SerializeToString()
    assert wire.encode_store_request(data) == expected
    assert wire.encode_store_request(bytearray(data)) == expected
    assert wire.encode_store_request(memoryview(data)) == expected


def test_empty_store_data_frame_is_on_the_wire() -> None:
    # A oneof member is present even when empty: two bytes, tag and zero length.
    assert wire.encode_store_request(b"") == b"\x12\x00"
    assert wire.encode_store_request(b"") == pb.StoreChunkRequest(data=b"").SerializeToString()


@pytest.mark.parametrize("size", SIZES)
def test_store_data_frame_decodes_protobuf_without_copy(size: int) -> None:
    data = payload(size)
    raw = pb.StoreChunkRequest(data=data).SerializeToString()
    frame = wire.decode_store_request(raw)
    assert isinstance(frame, memoryview)
    assert frame == data
    assert frame.obj is raw  # a view into the received message, not a copy


@pytest.mark.parametrize("size", SIZES)
def test_retrieve_frame_encodes_like_protobuf(size: int) -> None:
    data = payload(size)
    expected = pb.RetrieveChunkResponse(data=data).SerializeToString()
    assert wire.encode_retrieve_response(data) == expected
    assert wire.encode_retrieve_response(memoryview(data)) == expected


def test_empty_retrieve_frame_is_an_empty_message() -> None:
    # proto3 omits a scalar at its default value.
    assert wire.encode_retrieve_response(b"") == b""
    assert pb.RetrieveChunkResponse(data=b"").SerializeToString() == b""
    assert bytes(wire.decode_retrieve_response(b"")) == b""


@pytest.mark.parametrize("size", SIZES)
def test_retrieve_frame_decodes_protobuf_without_copy(size: int) -> None:
    data = payload(size)
    raw = pb.RetrieveChunkResponse(data=data).SerializeToString()
    frame = wire.decode_retrieve_response(raw)
    assert frame == data
    if size:
        assert frame.obj is raw


def test_non_byte_memoryview_is_measured_in_bytes() -> None:
    words = array.array("I", range(1000))
    view = memoryview(words)
    assert len(view) != view.nbytes
    expected = pb.StoreChunkRequest(data=words.tobytes()).SerializeToString()
    assert wire.encode_store_request(view) == expected
    frames = list(wire.store_data_frames(view))
    assert b"".join(frames) == words.tobytes()


@pytest.mark.parametrize(
    "header",
    [
        pb.ChunkHeader(chunk_id="0" * 32 + "-0"),
        pb.ChunkHeader(chunk_id="0" * 32 + "-0", size=0),
        pb.ChunkHeader(chunk_id="f" * 32 + "-5", size=123456789, checksum=bytes(range(16))),
    ],
)
def test_header_frames_round_trip_through_protobuf(header: pb.ChunkHeader) -> None:
    request = pb.StoreChunkRequest(header=header)
    raw = wire.encode_store_request(request)
    assert raw == request.SerializeToString()
    decoded = wire.decode_store_request(raw)
    assert isinstance(decoded, pb.ChunkHeader)
    assert decoded == header
    assert decoded.HasField("size") == header.HasField("size")
    assert decoded.HasField("checksum") == header.HasField("checksum")


def test_trailer_frames_round_trip_through_protobuf() -> None:
    trailer = pb.ChunkTrailer(size=2**40 + 3, checksum=b"\xff" * 16)
    raw = wire.encode_store_request(pb.StoreChunkRequest(trailer=trailer))
    decoded = wire.decode_store_request(raw)
    assert isinstance(decoded, pb.ChunkTrailer)
    assert decoded == trailer


def _data(data: bytes) -> bytes:
    return pb.StoreChunkRequest(data=data).SerializeToString()


@pytest.mark.parametrize(
    "raw",
    [
        # Concatenated messages merge, and the last member of a oneof wins.
        pb.StoreChunkRequest(header=pb.ChunkHeader(chunk_id="x")).SerializeToString()
        + _data(b"abc"),
        _data(b"first") + _data(b"second"),
        # Unknown fields are skipped.
        _data(b"abc") + b"\x28\x01",
        # A non-minimal length varint is still valid protobuf.
        b"\x12\x83\x00abc",
    ],
)
def test_unusual_encodings_decode_like_protobuf(raw: bytes) -> None:
    expected = pb.StoreChunkRequest.FromString(raw)
    assert expected.WhichOneof("frame") == "data"
    decoded = wire.decode_store_request(raw)
    assert isinstance(decoded, memoryview)
    assert decoded == expected.data


@pytest.mark.parametrize("raw", [b"", b"\x12\x05ab", b"\x12", b"\x12\xff\xff", b"\xff\xff\xff"])
def test_empty_or_malformed_store_frames_decode_to_none(raw: bytes) -> None:
    assert wire.decode_store_request(raw) is None


def test_store_data_frames_split_at_max_frame() -> None:
    data = payload(2 * wire.MAX_FRAME + 5)
    frames = list(wire.store_data_frames(data))
    assert [len(f) for f in frames] == [wire.MAX_FRAME, wire.MAX_FRAME, 5]
    assert b"".join(frames) == data
    assert all(f.obj is data for f in frames)
    assert list(wire.store_data_frames(b"")) == []


def test_checksum_is_xxh3_128() -> None:
    import xxhash

    hasher = wire.chunk_hasher()
    hasher.update(b"hello ")
    hasher.update(b"world")
    assert hasher.digest() == xxhash.xxh3_128(b"hello world").digest()
    assert len(hasher.digest()) == wire.CHECKSUM_SIZE
