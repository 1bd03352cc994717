"""Session fixtures: one real cluster shared by the integration and protocol suites."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import Cluster

SECOND_USER = ("AKIDSECONDUSER000001", "second-user-secret-key-0123456789")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """`s3compat dev` in a temp dir, with a second user from a credentials file."""
    data = tmp_path_factory.mktemp("cluster")
    creds = data.parent / "users.toml"
    creds.write_text(
        "[[users]]\n"
        'name = "second"\n'
        f'access_key = "{SECOND_USER[0]}"\n'
        f'secret_key = "{SECOND_USER[1]}"\n'
    )
    c = Cluster(
        data,
        env={"S3COMPAT_CREDENTIALS_FILE": str(creds), "S3COMPAT_DOMAIN": "s3.localhost"},
    ).start()
    yield c
    c.stop()


@pytest.fixture(scope="session")
def s3(cluster: Cluster) -> Any:
    return cluster.client()


@pytest.fixture
def bucket(s3: Any) -> Iterator[str]:
    """A fresh, empty bucket per test, emptied and removed afterwards."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    yield name
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=name):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=obj["Key"])
    s3.delete_bucket(Bucket=name)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path
