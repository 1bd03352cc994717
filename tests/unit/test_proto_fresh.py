"""The committed generated code must match proto/storage.proto."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GENERATED = ("storage_pb2.py", "storage_pb2.pyi", "storage_pb2_grpc.py")

pytest.importorskip("grpc_tools", reason="grpcio-tools (test extra) regenerates the code")


def generate(out: Path) -> None:
    subprocess.run(
        [sys.executable, str(REPO / "proto" / "generate.py"), "--out", str(out)],
        check=True,
        capture_output=True,
    )


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    generate(tmp_path)
    stale = [
        name
        for name in GENERATED
        if (tmp_path / name).read_bytes() != (REPO / "nodeserver" / "proto" / name).read_bytes()
    ]
    assert not stale, (
        f"nodeserver/proto/{', '.join(stale)} out of date with proto/storage.proto: "
        "run `python proto/generate.py`"
    )


def test_generation_is_reproducible(tmp_path: Path) -> None:
    generate(tmp_path / "a")
    generate(tmp_path / "b")
    for name in GENERATED:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_generated_modules_import_as_a_package() -> None:
    from nodeserver.proto import storage_pb2, storage_pb2_grpc

    assert storage_pb2_grpc.storage__pb2 is storage_pb2
    assert storage_pb2.DESCRIPTOR.package == "s3compat.storage.v1"
