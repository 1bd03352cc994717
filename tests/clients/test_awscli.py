"""aws-cli against the cluster: `aws s3 cp` of a 200 MiB file up (multipart, 8 MiB parts)
and back down (parallel ranged GETs), compared by SHA-256."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import Cluster

MiB = 1 << 20
SIZE = 200 * MiB
PART = 8 * MiB  # aws-cli's default multipart_chunksize (and threshold)


def _aws_command() -> list[str]:
    """aws-cli from the venv if it is installed there, else the one on PATH."""
    if importlib.util.find_spec("awscli") is not None:
        return [sys.executable, "-m", "awscli"]
    found = shutil.which("aws")
    if found is None:
        pytest.skip("aws-cli is not installed (pip install awscli)")
    return [found]


def _aws_env(cluster: Cluster, home: Path) -> dict[str, str]:
    """Only the cluster's credentials: no user config, profile or endpoint leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        {
            "AWS_ACCESS_KEY_ID": cluster.access_key,
            "AWS_SECRET_ACCESS_KEY": cluster.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_PAGER": "",
            "HOME": str(home),
        }
    )
    return env


def _aws(cluster: Cluster, home: Path, *args: str) -> str:
    cmd = [*_aws_command(), "--endpoint-url", cluster.endpoint, *args]
    proc = subprocess.run(
        cmd,
        env=_aws_env(cluster, home),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=home,
    )
    assert proc.returncode == 0, f"{cmd}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc.stdout


def _write_file(path: Path, size: int) -> str:
    """Pseudo-random content written 1 MiB at a time; returns its SHA-256."""
    digest = hashlib.sha256()
    seed = hashlib.sha256(b"awscli").digest()
    with open(path, "wb") as f:
        for i in range(size // MiB):
            block = hashlib.sha256(seed + i.to_bytes(4, "big")).digest() * (MiB // 32)
            digest.update(block)
            f.write(block)
    return digest.hexdigest()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(MiB):
            digest.update(piece)
    return digest.hexdigest()


def test_aws_s3_cp_200_mib_up_and_down(
    cluster: Cluster, s3: Any, bucket: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    src, dst = tmp_path / "up.bin", tmp_path / "down.bin"
    expected = _write_file(src, SIZE)

    start = time.monotonic()
    _aws(cluster, home, "s3", "cp", str(src), f"s3://{bucket}/dir/big file.bin", "--no-progress")
    up = time.monotonic() - start

    head = s3.head_object(Bucket=bucket, Key="dir/big file.bin")
    assert head["ContentLength"] == SIZE
    parts = SIZE // PART
    assert head["ETag"].endswith(f'-{parts}"'), head["ETag"]
    # The ETag is S3's multipart ETag over 8 MiB parts, computed here independently.
    md5s = b""
    with open(src, "rb") as f:
        while piece := f.read(PART):
            md5s += hashlib.md5(piece).digest()
    assert head["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-{parts}"'
    # Nothing left behind: the upload was completed.
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)

    listing = _aws(cluster, home, "s3", "ls", f"s3://{bucket}/dir/")
    assert "big file.bin" in listing and str(SIZE) in listing

    start = time.monotonic()
    _aws(cluster, home, "s3", "cp", f"s3://{bucket}/dir/big file.bin", str(dst), "--no-progress")
    down = time.monotonic() - start

    assert dst.stat().st_size == SIZE
    assert _sha256_file(dst) == expected
    print(
        f"aws s3 cp 200 MiB: up {up:.1f} s ({SIZE / MiB / up:.0f} MiB/s), "
        f"down {down:.1f} s ({SIZE / MiB / down:.0f} MiB/s)"
    )
