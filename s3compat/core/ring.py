"""Consistent-hash ring: which storage nodes hold the chunks of a blob.

Each server owns `vnodes` points on a 64-bit circle. A key hashes to a point and its
placement is the first `n` *distinct* servers met walking clockwise from there. Many
points per server keep the load even; consistent hashing means a membership change only
moves the placements that involve the server that came or went.

The hash is XXH3-64 (`xxhash.xxh3_64_intdigest`):
- it is a fixed, documented algorithm whose output is frozen (xxHash ≥ 0.8), so
  placements agree across processes, hosts and Python versions — unlike `hash()`,
  which is salted per process;
- it is the fastest xxhash variant on short inputs (blob ids, `node#i` labels);
- the project already uses the XXH3 family for chunk checksums.

Rings are immutable: build a new one when membership changes (`with_node`,
`without_node`) and swap the reference atomically. Readers never see a half-built ring,
and no lock is needed. Nodes that are merely down or draining stay in the ring and are
skipped per lookup with `exclude`, so a short outage does not reshuffle placements.

Standard library and xxhash only.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Container, Iterable
from typing import Any, Final, NoReturn

import xxhash

DEFAULT_VNODES: Final = 150

_xxh3_64 = xxhash.xxh3_64_intdigest


class NotEnoughNodes(Exception):
    """Fewer eligible nodes than the placement needs (ring too small, too many excluded)."""

    def __init__(self, wanted: int, available: int) -> None:
        self.wanted = wanted
        self.available = available
        super().__init__(
            f"placement needs {wanted} distinct nodes but only {available} are eligible"
        )


def hash_key(key: str) -> int:
    """The ring position of `key` (unsigned 64-bit). Public so tests can pin the function."""
    return _xxh3_64(key.encode("utf-8"))


def _vnode_points(node_id: str, vnodes: int) -> list[tuple[int, str]]:
    # The label is f"{node_id}#{i}": the integer after the last '#' makes labels of
    # different (node, i) pairs distinct even when node ids contain '#'.
    return [(hash_key(f"{node_id}#{i}"), node_id) for i in range(vnodes)]


class Ring:
    """An immutable consistent-hash ring over node ids.

    `points` is sorted and `owners[i]` owns `points[i]`; two parallel tuples keep the
    `bisect` on plain ints (fast) instead of on tuples. `owners` is stored twice over
    (`owners + owners`) so a walk that wraps past the end needs no modulo.
    """

    __slots__ = ("_nodes", "_owners", "_points", "_vnodes")

    _nodes: tuple[str, ...]
    _owners: tuple[str, ...]  # owners of points, twice over
    _points: tuple[int, ...]
    _vnodes: int

    def __init__(self, nodes: Iterable[str], vnodes: int = DEFAULT_VNODES) -> None:
        if isinstance(nodes, str):
            # A lone string would silently become one node per character.
            raise TypeError("nodes must be an iterable of node ids, not a str")
        if vnodes < 1:
            raise ValueError("vnodes must be at least 1")
        unique = sorted(set(nodes))
        for node_id in unique:
            if not isinstance(node_id, str) or not node_id:
                raise ValueError(f"node ids must be non-empty strings, got {node_id!r}")
        pairs: list[tuple[int, str]] = []
        for node_id in unique:
            pairs.extend(_vnode_points(node_id, vnodes))
        # Sorting (point, node_id) also breaks the (astronomically rare) tie of two
        # servers hashing to the same point the same way in every process.
        pairs.sort()
        object.__setattr__(self, "_nodes", tuple(unique))
        object.__setattr__(self, "_points", tuple(p for p, _ in pairs))
        owners = tuple(o for _, o in pairs)
        object.__setattr__(self, "_owners", owners + owners)
        object.__setattr__(self, "_vnodes", vnodes)

    # -- immutability -------------------------------------------------------------

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError(f"{type(self).__name__} is immutable; build a new ring")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"{type(self).__name__} is immutable; build a new ring")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ring):
            return NotImplemented
        return self._nodes == other._nodes and self._vnodes == other._vnodes

    def __hash__(self) -> int:
        return hash((self._nodes, self._vnodes))

    def __repr__(self) -> str:
        return f"Ring(nodes={list(self._nodes)!r}, vnodes={self._vnodes})"

    # -- membership ---------------------------------------------------------------

    @property
    def nodes(self) -> tuple[str, ...]:
        """Member node ids, sorted."""
        return self._nodes

    @property
    def vnodes(self) -> int:
        return self._vnodes

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._nodes

    def with_node(self, node_id: str) -> Ring:
        """A new ring with `node_id` added. Adding a member twice is a caller bug."""
        if node_id in self._nodes:
            raise ValueError(f"node {node_id!r} is already in the ring")
        return Ring((*self._nodes, node_id), self._vnodes)

    def without_node(self, node_id: str) -> Ring:
        """A new ring with `node_id` removed. Removing a non-member is a caller bug."""
        if node_id not in self._nodes:
            raise ValueError(f"node {node_id!r} is not in the ring")
        return Ring((n for n in self._nodes if n != node_id), self._vnodes)

    # -- lookup -------------------------------------------------------------------

    def nodes_for(self, key: str, n: int, *, exclude: Container[str] = ()) -> list[str]:
        """The first `n` distinct eligible nodes clockwise from `key`'s position.

        The order matters: callers put chunk i on the i-th node. Excluded (down or
        draining) nodes are skipped, so the next node along takes their place without
        disturbing the others. Raises NotEnoughNodes when fewer than `n` are eligible.
        """
        if n <= 0:
            if n == 0:
                return []
            raise ValueError("n must be non-negative")
        points = self._points
        if not points:
            raise NotEnoughNodes(n, 0)
        owners = self._owners
        # hash_key() inlined: a Python call is a sizeable share of a lookup.
        start = bisect_left(points, _xxh3_64(key.encode("utf-8")))
        found: list[str] = []
        # At most one lap of the circle; usually a handful of steps suffice.
        for i in range(start, start + len(points)):
            owner = owners[i]
            if owner not in found and owner not in exclude:
                found.append(owner)
                if len(found) == n:
                    return found
        raise NotEnoughNodes(n, len(found))
