"""Fixtures for the real-client suites: the tools themselves, and a cluster over HTTP or
HTTPS for each test (`scheme_cluster`), with a fresh bucket on it (`client_bucket`)."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from s3compat.settings import Settings
from tests.cluster import Cluster

INSTALLER = Path(__file__).with_name("install-tools.sh")
TOOLS = ("rclone", "s3fs", "s3cmd", "curl")


@pytest.fixture(scope="session")
def client_tools() -> None:
    """Installs the Debian clients if any is missing (apt-get; needs root or sudo)."""
    if all(shutil.which(t) for t in TOOLS) and Path("/usr/bin/aws").exists():
        return
    proc = subprocess.run(["sh", str(INSTALLER)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"could not install the client tools:\n{proc.stdout}\n{proc.stderr}")


@pytest.fixture(scope="session")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A second cluster serving HTTPS under its own private CA. It keeps small bodies inline
    (the product default; the tests' HTTP cluster sends every body to the nodes), so every
    client runs against both stores."""
    c = Cluster(
        tmp_path_factory.mktemp("tls-clients"),
        env={"S3COMPAT_DOMAIN": "s3.localhost", "S3COMPAT_INLINE_MAX": str(Settings().inline_max)},
        tls=True,
    ).start()
    yield c
    c.stop()


@pytest.fixture(params=["http", "https"])
def scheme_cluster(request: pytest.FixtureRequest) -> Cluster:
    """The HTTP cluster, then the HTTPS one: tests that take this run over both."""
    name = "cluster" if request.param == "http" else "tls_cluster"
    found: Cluster = request.getfixturevalue(name)
    return found


def empty_bucket(s3: Any, name: str) -> None:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=obj["Key"])
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=name):
        for up in page.get("Uploads", []):
            s3.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])


@pytest.fixture
def client_bucket(scheme_cluster: Cluster) -> Iterator[tuple[Cluster, Any, str]]:
    """(cluster, boto3 client, fresh bucket name) over HTTP, then over HTTPS."""
    s3 = scheme_cluster.client()
    name = f"cli-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    yield scheme_cluster, s3, name
    try:
        empty_bucket(s3, name)
        s3.delete_bucket(Bucket=name)
    except s3.exceptions.NoSuchBucket:
        pass  # the test removed it (rb, purge)
