"""Bucket operations as boto3 sees them."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.cluster import Cluster
from tests.conftest import SECOND_USER


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def test_create_list_head_delete(s3: Any) -> None:
    name = f"bkt-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] is None
    # Re-creating your own bucket answers as us-east-1 does: success (rclone relies on it).
    s3.create_bucket(Bucket=name)
    s3.delete_bucket(Bucket=name)
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket=name)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_location_constraint_is_kept(s3: Any) -> None:
    name = f"loc-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    try:
        assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] == "eu-west-1"
    finally:
        s3.delete_bucket(Bucket=name)


@pytest.mark.parametrize(
    "name",
    [
        "ab",
        "a" * 64,
        "UpperCase",
        "under_score",
        "-leading",
        "trailing-",
        "two..dots",
        "192.168.1.1",
        "xn--punycode",
        "sthree-x",
        "name-s3alias",
    ],
)
def test_invalid_bucket_names(s3: Any, name: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=name)
    assert _code(exc) == ("InvalidBucketName", 400)


def test_bucket_not_empty(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="x", Body=b"1")
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=bucket)
    assert _code(exc) == ("BucketNotEmpty", 409)


def test_no_such_bucket_everywhere(s3: Any) -> None:
    missing = f"missing-{uuid.uuid4().hex[:12]}"
    calls = [
        lambda: s3.list_objects_v2(Bucket=missing),
        lambda: s3.list_objects(Bucket=missing),
        lambda: s3.put_object(Bucket=missing, Key="k", Body=b"x"),
        lambda: s3.get_object(Bucket=missing, Key="k"),
        lambda: s3.delete_object(Bucket=missing, Key="k"),
        lambda: s3.delete_bucket(Bucket=missing),
        lambda: s3.get_bucket_location(Bucket=missing),
    ]
    for call in calls:
        with pytest.raises(ClientError) as exc:
            call()
        assert _code(exc) == ("NoSuchBucket", 404)


def test_other_users_bucket(cluster: Cluster, s3: Any, bucket: str) -> None:
    other = cluster.client(access_key=SECOND_USER[0], secret_key=SECOND_USER[1])
    with pytest.raises(ClientError) as exc:
        other.create_bucket(Bucket=bucket)
    assert _code(exc) == ("BucketAlreadyExists", 409)
    assert bucket not in [b["Name"] for b in other.list_buckets()["Buckets"]]
    with pytest.raises(ClientError) as exc:
        other.list_objects_v2(Bucket=bucket)
    assert _code(exc) == ("AccessDenied", 403)
    # Reads are refused whether or not the key exists, so they tell nothing about it.
    s3.put_object(Bucket=bucket, Key="k", Body=b"mine")
    for key in ("k", "missing"):
        with pytest.raises(ClientError) as exc:
            other.get_object(Bucket=bucket, Key=key)
        assert _code(exc) == ("AccessDenied", 403)
        with pytest.raises(ClientError) as exc:
            other.head_object(Bucket=bucket, Key=key)
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_recreating_own_bucket_outside_us_east_1(tmp_path: Path) -> None:
    """Only us-east-1 answers 200 to re-creating your own bucket; other regions say
    BucketAlreadyOwnedByYou (409)."""
    regional = Cluster(tmp_path / "data", env={"S3COMPAT_REGION": "eu-west-1"}).start()
    try:
        s3 = regional.client()
        s3.create_bucket(Bucket="mine")
        with pytest.raises(ClientError) as exc:
            s3.create_bucket(Bucket="mine")
        assert _code(exc) == ("BucketAlreadyOwnedByYou", 409)
    finally:
        regional.stop()
