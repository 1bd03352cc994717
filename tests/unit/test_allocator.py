"""nodeserver.allocator: applied on glibc, and never over the operator's own choice."""

from __future__ import annotations

import platform

import pytest

from nodeserver.allocator import tune_malloc


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt thresholds are glibc's")
def test_applies_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "S3COMPAT_MALLOC_TUNING"):
        monkeypatch.delenv(var, raising=False)
    assert tune_malloc() is True


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("MALLOC_MMAP_THRESHOLD_", "131072"),
        ("MALLOC_TRIM_THRESHOLD_", "131072"),
        ("S3COMPAT_MALLOC_TUNING", "0"),
    ],
)
def test_the_environment_wins(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    assert tune_malloc() is False
