"""CPU cost of bulk frames: generated protobuf classes vs the hand codec in nodeserver.wire.

Run: `.venv/bin/python benchmarks/bench_wire.py [--gib N]`. Prints CPU-seconds per GiB of
payload for encode+decode of 1 MiB frames, in both directions (StoreChunk requests from
the gateway, RetrieveChunk responses from the node). Asserts nothing.

"Decode" ends where the receiver holds the payload: a memoryview for the hand codec
(what the node writes to disk), `bytes` from the message for protobuf. The "from view"
rows start from a memoryview slice, which is what the gateway has after splitting a
larger buffer; protobuf needs it as bytes first.

System time matters here: with glibc's default malloc tuning, fresh 1 MiB buffers are
often mmap'ed and unmapped per frame, and page faults dominate. Compare with
`MALLOC_MMAP_THRESHOLD_=1000000000 MALLOC_TRIM_THRESHOLD_=1000000000` in the environment.
"""

from __future__ import annotations

import argparse
import os
import resource
from collections.abc import Callable

from nodeserver import wire
from nodeserver.proto import storage_pb2 as pb

FRAME = wire.MAX_FRAME
GIB = 1 << 30


def pb_store(payload: bytes) -> None:
    raw = pb.StoreChunkRequest(data=payload).SerializeToString()
    _ = pb.StoreChunkRequest.FromString(raw).data


def pb_store_from_view(view: memoryview) -> None:
    raw = pb.StoreChunkRequest(data=bytes(view)).SerializeToString()
    _ = pb.StoreChunkRequest.FromString(raw).data


def hand_store(payload: bytes | memoryview) -> None:
    raw = wire.encode_store_request(payload)
    _ = wire.decode_store_request(raw)


def pb_retrieve(payload: bytes) -> None:
    raw = pb.RetrieveChunkResponse(data=payload).SerializeToString()
    _ = pb.RetrieveChunkResponse.FromString(raw).data


def hand_retrieve(payload: bytes | memoryview) -> None:
    raw = wire.encode_retrieve_response(payload)
    _ = wire.decode_retrieve_response(raw)


def hand_retrieve_to_bytes(payload: bytes | memoryview) -> None:
    # What GrpcNodeClient.stream_chunk does: the port yields bytes, one copy per frame.
    raw = wire.encode_retrieve_response(payload)
    _ = bytes(wire.decode_retrieve_response(raw))


def one_copy(payload: bytes | memoryview) -> None:
    _ = bytes(memoryview(payload)[:])  # reference point: a single 1 MiB memcpy


def measure(fn: Callable[..., None], arg: object, gib: float) -> tuple[float, float]:
    """(user, system) CPU seconds per GiB of payload."""
    frames = max(1, int(gib * GIB / FRAME))
    fn(arg)  # warm-up
    before = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(frames):
        fn(arg)
    after = resource.getrusage(resource.RUSAGE_SELF)
    scale = frames * FRAME / GIB
    return (after.ru_utime - before.ru_utime) / scale, (after.ru_stime - before.ru_stime) / scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--gib", type=float, default=2.0, help="payload GiB per measurement")
    args = parser.parse_args()
    payload = os.urandom(FRAME)
    big = os.urandom(4 * FRAME)
    view = memoryview(big)[FRAME : 2 * FRAME]
    cases: list[tuple[str, Callable[..., None], object]] = [
        ("StoreChunk   protobuf            ", pb_store, payload),
        ("StoreChunk   protobuf (from view)", pb_store_from_view, view),
        ("StoreChunk   hand codec          ", hand_store, payload),
        ("StoreChunk   hand codec (view)   ", hand_store, view),
        ("RetrieveChunk protobuf           ", pb_retrieve, payload),
        ("RetrieveChunk hand codec         ", hand_retrieve, payload),
        ("RetrieveChunk hand codec -> bytes", hand_retrieve_to_bytes, payload),
        ("reference: one 1 MiB copy        ", one_copy, payload),
    ]
    print(f"encode+decode of {FRAME // 1024} KiB frames, {args.gib:g} GiB per row")
    print(f"  {'case':35s}  {'CPU s/GiB':>9s}  {'(user':>7s} {'+ sys)':>7s}")
    for name, fn, arg in cases:
        user, system = measure(fn, arg, args.gib)
        print(f"  {name}  {user + system:9.4f}  ({user:6.4f} + {system:6.4f})")


if __name__ == "__main__":
    main()
