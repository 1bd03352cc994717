"""Consistent-hash ring: determinism, distinctness, balance and movement.

Balance figures are printed; run `pytest -s tests/unit/test_ring.py` to see them.
The bounds asserted are loose on purpose: they catch a broken hash or walk, not a
slightly unlucky distribution.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Sequence

import pytest

from s3compat.core.ring import DEFAULT_VNODES, NotEnoughNodes, Ring, hash_key

KEY_COUNT = 100_000


def _node_ids(count: int) -> list[str]:
    return [f"node-{i}" for i in range(1, count + 1)]


@pytest.fixture(scope="module")
def keys() -> list[str]:
    """Blob-id-like keys (UUIDs), reproducible from a fixed seed."""
    rng = random.Random(20240601)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(KEY_COUNT)]


def _placements(ring: Ring, keys: Sequence[str], n: int) -> list[list[str]]:
    return [ring.nodes_for(k, n) for k in keys]


def _max_over_mean(counts: Counter[str], nodes: Sequence[str]) -> tuple[float, float, int, int]:
    values = [counts.get(node, 0) for node in nodes]
    mean = sum(values) / len(values)
    return max(values) / mean, min(values) / mean, max(values), min(values)


# --------------------------------------------------------------------------------------
# Construction, immutability, hashing


def test_hash_function_is_pinned() -> None:
    # Hard-coded XXH3-64 values: changing the hash function (or its input encoding)
    # would move every blob, so it must never happen silently.
    assert hash_key("a") == 16629034431890738719
    assert hash_key("node-1#0") == 3770303527775087743
    assert hash_key("") == 3244421341483603138


def test_placement_is_pinned() -> None:
    ring = Ring(_node_ids(12))
    assert ring.nodes_for("photos/2006/January/sample.jpg", 6) == [
        "node-7",
        "node-1",
        "node-6",
        "node-9",
        "node-10",
        "node-2",
    ]
    assert ring.nodes_for("0b1e5c1e-7c52-4e0e-9a3c-3f0f4b6c2a11", 6) == [
        "node-10",
        "node-3",
        "node-6",
        "node-11",
        "node-2",
        "node-1",
    ]
    assert Ring(_node_ids(6)).nodes_for("photos/2006/January/sample.jpg", 6) == [
        "node-1",
        "node-6",
        "node-2",
        "node-5",
        "node-3",
        "node-4",
    ]


def test_same_ring_built_twice_agrees(keys: list[str]) -> None:
    nodes = _node_ids(12)
    a = Ring(nodes)
    b = Ring(reversed(nodes))  # input order must not matter
    assert a == b
    sample = keys[:2000]
    assert _placements(a, sample, 6) == _placements(b, sample, 6)


def test_deterministic_across_processes(keys: list[str]) -> None:
    """Another interpreter with a different str-hash salt computes the same placements."""
    sample = keys[:200]
    script = (
        "import json, sys\n"
        "from s3compat.core.ring import Ring\n"
        "keys = json.loads(sys.stdin.read())\n"
        "ring = Ring(['node-%d' % i for i in range(12, 0, -1)])\n"
        "print(json.dumps([ring.nodes_for(k, 6) for k in keys]))\n"
    )
    expected = _placements(Ring(_node_ids(12)), sample, 6)
    for seed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", script],
            input=json.dumps(sample),
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        assert json.loads(out.stdout) == expected


def test_ring_is_immutable() -> None:
    ring = Ring(_node_ids(3))
    with pytest.raises(AttributeError):
        ring._points = ()
    with pytest.raises(AttributeError):
        ring.foo = 1
    with pytest.raises(AttributeError):
        del ring._owners


def test_membership_changes_build_new_rings() -> None:
    ring = Ring(_node_ids(3))
    bigger = ring.with_node("node-4")
    smaller = ring.without_node("node-2")
    assert ring.nodes == ("node-1", "node-2", "node-3")  # original untouched
    assert bigger.nodes == ("node-1", "node-2", "node-3", "node-4")
    assert smaller.nodes == ("node-1", "node-3")
    assert bigger == Ring(_node_ids(4))
    assert "node-4" in bigger and "node-4" not in ring
    assert len(bigger) == 4
    assert bigger.vnodes == ring.vnodes == DEFAULT_VNODES
    with pytest.raises(ValueError):
        ring.with_node("node-1")
    with pytest.raises(ValueError):
        ring.without_node("node-9")


def test_vnodes_parameter() -> None:
    ring = Ring(_node_ids(4), vnodes=10)
    assert ring.vnodes == 10
    assert len(ring._points) == 40
    assert list(ring._points) == sorted(ring._points)
    assert Counter(ring._owners[: len(ring._points)]) == {n: 10 for n in _node_ids(4)}
    assert Ring(_node_ids(4))._points != ring._points
    with pytest.raises(ValueError):
        Ring(_node_ids(4), vnodes=0)


def test_bad_inputs() -> None:
    with pytest.raises(TypeError):
        Ring("node-1")
    with pytest.raises(ValueError):
        Ring(["node-1", ""])
    with pytest.raises(ValueError):
        Ring(_node_ids(3)).nodes_for("k", -1)
    assert Ring(_node_ids(3)).nodes_for("k", 0) == []


def test_duplicate_node_ids_collapse() -> None:
    assert Ring(["a", "b", "a"]) == Ring(["a", "b"])


# --------------------------------------------------------------------------------------
# Lookups


def test_nodes_are_distinct(keys: list[str]) -> None:
    ring = Ring(_node_ids(12))
    for key in keys[:5000]:
        for n in (1, 3, 6, 12):
            placed = ring.nodes_for(key, n)
            assert len(placed) == n
            assert len(set(placed)) == n
            assert set(placed) <= set(ring.nodes)


def test_smaller_n_is_a_prefix_of_larger_n(keys: list[str]) -> None:
    ring = Ring(_node_ids(12))
    for key in keys[:2000]:
        assert ring.nodes_for(key, 6)[:1] == ring.nodes_for(key, 1)
        assert ring.nodes_for(key, 12)[:6] == ring.nodes_for(key, 6)


def test_exclude_skips_nodes_and_keeps_the_rest_in_order(keys: list[str]) -> None:
    ring = Ring(_node_ids(12))
    down = {"node-3", "node-8"}
    for key in keys[:5000]:
        placed = ring.nodes_for(key, 6, exclude=down)
        assert len(set(placed)) == 6
        assert not down & set(placed)
        # Skipping is the same as walking the full order and dropping excluded nodes.
        full = [n for n in ring.nodes_for(key, 12) if n not in down]
        assert placed == full[:6]


def test_exclude_accepts_any_container() -> None:
    ring = Ring(_node_ids(7))
    for exclude in ({"node-1"}, frozenset({"node-1"}), ["node-1"], ("node-1",)):
        placed = ring.nodes_for("some-key", 6, exclude=exclude)
        assert sorted(placed) == _node_ids(7)[1:]


def test_not_enough_nodes() -> None:
    ring = Ring(_node_ids(5))
    with pytest.raises(NotEnoughNodes) as info:
        ring.nodes_for("k", 6)
    assert (info.value.wanted, info.value.available) == (6, 5)
    with pytest.raises(NotEnoughNodes) as info:
        Ring(_node_ids(7)).nodes_for("k", 6, exclude={"node-1", "node-2"})
    assert info.value.available == 5
    with pytest.raises(NotEnoughNodes):
        Ring([]).nodes_for("k", 1)
    assert "6" in str(info.value)


# --------------------------------------------------------------------------------------
# Balance


@pytest.mark.parametrize("node_count", [6, 12])
def test_balance(keys: list[str], node_count: int) -> None:
    nodes = _node_ids(node_count)
    ring = Ring(nodes)
    n = 6
    primary: Counter[str] = Counter()
    all_n: Counter[str] = Counter()
    for key in keys:
        placed = ring.nodes_for(key, n)
        primary[placed[0]] += 1
        all_n.update(placed)

    p_ratio, p_min, p_max_count, p_min_count = _max_over_mean(primary, nodes)
    a_ratio, a_min, a_max_count, a_min_count = _max_over_mean(all_n, nodes)
    print(
        f"\n[ring balance] {node_count} nodes, {DEFAULT_VNODES} vnodes, {len(keys)} keys\n"
        f"  primary:    max/mean={p_ratio:.3f} min/mean={p_min:.3f} "
        f"(max={p_max_count}, min={p_min_count}, mean={len(keys) / node_count:.0f})\n"
        f"  all n={n}:    max/mean={a_ratio:.3f} min/mean={a_min:.3f} "
        f"(max={a_max_count}, min={a_min_count}, mean={n * len(keys) / node_count:.0f})"
    )
    assert sum(primary.values()) == len(keys)
    assert sum(all_n.values()) == n * len(keys)
    assert p_ratio < 1.5
    assert p_min > 0.5
    assert a_ratio < 1.5
    if node_count == n:
        # Every node holds exactly one chunk of every blob.
        assert all_n == {node: len(keys) for node in nodes}


# --------------------------------------------------------------------------------------
# Movement on membership change


@pytest.mark.parametrize("old_count", [6, 12])
def test_adding_a_node_moves_about_1_over_n_primaries_onto_it(
    keys: list[str], old_count: int
) -> None:
    old = Ring(_node_ids(old_count))
    new = old.with_node("node-new")
    moved = 0
    for key in keys:
        before = old.nodes_for(key, 1)[0]
        after = new.nodes_for(key, 1)[0]
        if before != after:
            assert after == "node-new", key
            moved += 1
    new_count = old_count + 1
    fraction = moved / len(keys)
    print(
        f"\n[ring movement] add 1 to {old_count} nodes: {fraction:.4f} of primaries moved "
        f"(1/N = {1 / new_count:.4f})"
    )
    assert 0.5 / new_count < fraction < 1.5 / new_count


def test_adding_a_node_changes_sets_only_by_it_replacing_one(keys: list[str]) -> None:
    n = 6
    old = Ring(_node_ids(12))
    new = old.with_node("node-new")
    changed_sets = 0
    for key in keys:
        before = old.nodes_for(key, n)
        after = new.nodes_for(key, n)
        if before == after:
            continue
        changed_sets += 1
        assert "node-new" in after, key
        assert len(set(before) - set(after)) == 1, key
        # The survivors keep their relative order; the new node is inserted among them
        # and pushes the last one out.
        assert [x for x in after if x != "node-new"] == before[:-1], key
    fraction = changed_sets / len(keys)
    chunk_fraction = changed_sets / (n * len(keys))
    print(
        f"\n[ring movement] add 1 to 12 nodes, n={n}: {fraction:.4f} of sets changed "
        f"(expected ~{n / 13:.4f}); {chunk_fraction:.4f} of chunks moved (1/N = {1 / 13:.4f})"
    )
    assert 0.5 * n / 13 < fraction < 1.5 * n / 13


@pytest.mark.parametrize("old_count", [7, 12])
def test_removing_a_node_moves_only_its_primaries(keys: list[str], old_count: int) -> None:
    old = Ring(_node_ids(old_count))
    gone = "node-3"
    new = old.without_node(gone)
    moved = 0
    for key in keys:
        before = old.nodes_for(key, 1)[0]
        after = new.nodes_for(key, 1)[0]
        if before != gone:
            assert after == before, key
        else:
            moved += 1
    fraction = moved / len(keys)
    print(
        f"\n[ring movement] remove 1 of {old_count} nodes: {fraction:.4f} of primaries moved "
        f"(1/N = {1 / old_count:.4f})"
    )
    assert 0.5 / old_count < fraction < 1.5 / old_count


def test_removing_a_node_changes_only_sets_that_held_it(keys: list[str]) -> None:
    n = 6
    old = Ring(_node_ids(12))
    gone = "node-3"
    new = old.without_node(gone)
    changed_sets = 0
    for key in keys:
        before = old.nodes_for(key, n)
        after = new.nodes_for(key, n)
        if gone not in before:
            assert after == before, key
            continue
        changed_sets += 1
        # The removed node's slot closes up and the next node along fills the end.
        assert [x for x in before if x != gone] == after[:-1], key
        assert after[-1] not in before, key
    fraction = changed_sets / len(keys)
    print(
        f"\n[ring movement] remove 1 of 12 nodes, n={n}: {fraction:.4f} of sets changed "
        f"(expected ~{n / 12:.4f})"
    )
    assert 0.5 * n / 12 < fraction < 1.5 * n / 12


def test_excluding_a_node_equals_removing_it(keys: list[str]) -> None:
    """Marking a node down reroutes exactly as removing it would, but keeps the ring."""
    ring = Ring(_node_ids(12))
    without = ring.without_node("node-5")
    for key in keys[:5000]:
        assert ring.nodes_for(key, 6, exclude={"node-5"}) == without.nodes_for(key, 6)
