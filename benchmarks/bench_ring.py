"""Ring lookup cost: ns per `nodes_for` call. Prints numbers, asserts nothing.

Run: `python benchmarks/bench_ring.py`
"""

from __future__ import annotations

import random
import sys
import time
import uuid
from pathlib import Path

# Runnable from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from s3compat.core.ring import DEFAULT_VNODES, Ring

KEYS = 100_000
REPEATS = 5


def _keys() -> list[str]:
    rng = random.Random(7)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(KEYS)]


def _ns_per_op(ring: Ring, keys: list[str], n: int, exclude: frozenset[str]) -> float:
    """Best of REPEATS passes over all keys: the least disturbed by other processes."""
    lookup = ring.nodes_for
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter_ns()
        for key in keys:
            lookup(key, n, exclude=exclude)
        best = min(best, (time.perf_counter_ns() - start) / len(keys))
    return best


def main() -> None:
    keys = _keys()
    print(f"Ring.nodes_for, {DEFAULT_VNODES} vnodes/node, {KEYS} UUID keys, best of {REPEATS}")
    print(f"{'nodes':>5}  {'n':>2}  {'exclude':>8}  {'ns/op':>8}")
    none: frozenset[str] = frozenset()
    for node_count in (6, 12):
        ring = Ring(f"node-{i}" for i in range(1, node_count + 1))
        cases = [(1, none), (6, none)]
        if node_count > 6:
            cases.append((6, frozenset({"node-1", "node-2"})))
        for n, exclude in cases:
            ns = _ns_per_op(ring, keys, n, exclude)
            print(f"{node_count:>5}  {n:>2}  {len(exclude):>8}  {ns:>8.0f}")
    start = time.perf_counter_ns()
    Ring(f"node-{i}" for i in range(1, 13))
    build_us = (time.perf_counter_ns() - start) / 1000
    print(f"building a 12-node ring: {build_us:.0f} µs")


if __name__ == "__main__":
    main()
