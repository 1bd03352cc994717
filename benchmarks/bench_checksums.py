"""Checksum throughput in MB/s on 64 MiB, per algorithm. Prints numbers, asserts nothing.

Two shapes: one `update` over the whole buffer (the native code's ceiling) and 64 KiB
updates (what a request body looks like as it arrives). Also the cost of combining one part
into a FULL_OBJECT CRC, which is pure Python but per part, not per byte.

Run: `python benchmarks/bench_checksums.py`
"""

from __future__ import annotations

import os
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

# Runnable from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from awscrt import checksums as crt

from s3compat.core import checksums

SIZE = 64 << 20
PIECE = 64 << 10
REPEATS = 3


def _best_seconds(run: Callable[[], object], repeats: int = REPEATS) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def _mb_s(seconds: float) -> float:
    return SIZE / seconds / 1e6


def main() -> None:
    data = os.urandom(SIZE)
    view = memoryview(data)
    print(f"{'algorithm':<10} {'one update':>12} {'64 KiB updates':>16}")
    for algorithm in checksums.ALGORITHMS:

        def whole(algorithm: str = algorithm) -> None:
            checksums.new(algorithm).update(data)

        def pieces(algorithm: str = algorithm) -> None:
            checksum = checksums.new(algorithm)
            for offset in range(0, SIZE, PIECE):
                checksum.update(view[offset : offset + PIECE])

        print(
            f"{algorithm:<10} {_mb_s(_best_seconds(whole)):>9.0f} MB/s"
            f" {_mb_s(_best_seconds(pieces)):>11.0f} MB/s"
        )

    print("\nreference, one call over 64 MiB:")
    for name, function in (("zlib.crc32", zlib.crc32), ("awscrt crc32", crt.crc32)):
        print(f"  {name:<13} {_mb_s(_best_seconds(lambda f=function: f(data))):>7.0f} MB/s")

    parts = 1000
    digest = b"\x12\x34\x56\x78\x9a\xbc\xde\xf0"
    for algorithm in sorted(checksums.CRC_ALGORITHMS):
        size = checksums.digest_size(algorithm)
        items = [(digest[:size], 8 << 20)] * parts
        seconds = _best_seconds(lambda a=algorithm, i=items: checksums.combine_full_object(a, i))
        print(f"combine_full_object {algorithm:<9} {seconds / parts * 1e6:7.1f} µs per part")


if __name__ == "__main__":
    main()
