"""nodeserver.allocator: applied on glibc, and never over the operator's own choice."""

from __future__ import annotations

import platform

import pytest

from nodeserver.allocator import tune_malloc

ALL = ["mmap_threshold", "trim_threshold", "arena_max"]
VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX")
glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (*VARIABLES, "S3COMPAT_MALLOC_TUNING"):
        monkeypatch.delenv(var, raising=False)


@glibc
def test_applies_on_glibc() -> None:
    assert tune_malloc() == ALL


@glibc
@pytest.mark.parametrize(
    ("var", "value", "applied"),
    [
        ("MALLOC_MMAP_THRESHOLD_", "131072", ["arena_max"]),
        ("MALLOC_TRIM_THRESHOLD_", "131072", ["arena_max"]),
        ("MALLOC_ARENA_MAX", "4", ["mmap_threshold", "trim_threshold"]),
    ],
)
def test_the_operators_variables_win(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, applied: list[str]
) -> None:
    monkeypatch.setenv(var, value)
    assert tune_malloc() == applied


def test_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3COMPAT_MALLOC_TUNING", "0")
    assert tune_malloc() == []
