"""The small read-only operations clients probe before real work."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.cluster import Cluster
from tests.conftest import SECOND_USER


def test_get_bucket_versioning_is_unversioned(s3: Any, bucket: str) -> None:
    reply = s3.get_bucket_versioning(Bucket=bucket)
    assert "Status" not in reply and "MFADelete" not in reply


def test_tagging_is_empty(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == []
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object_tagging(Bucket=bucket, Key="missing")


def test_acls_show_the_owner_with_full_control(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    for acl in (s3.get_bucket_acl(Bucket=bucket), s3.get_object_acl(Bucket=bucket, Key="k")):
        assert acl["Owner"]["ID"] == "admin"
        [grant] = acl["Grants"]
        assert grant["Permission"] == "FULL_CONTROL"
        assert grant["Grantee"] == {"ID": "admin", "DisplayName": "admin", "Type": "CanonicalUser"}


def test_probes_respect_ownership(cluster: Cluster, s3: Any, bucket: str) -> None:
    other = cluster.client(access_key=SECOND_USER[0], secret_key=SECOND_USER[1])
    for call in (
        lambda: other.get_bucket_versioning(Bucket=bucket),
        lambda: other.get_bucket_acl(Bucket=bucket),
        lambda: other.get_bucket_tagging(Bucket=bucket),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert exc.value.response["Error"]["Code"] == "AccessDenied"


def test_version_id_null(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"versioned?")
    assert s3.head_object(Bucket=bucket, Key="k", VersionId="null")["ContentLength"] == 10
    got = s3.get_object(Bucket=bucket, Key="k", VersionId="null")
    assert got["Body"].read() == b"versioned?"
    assert "VersionId" not in got  # never x-amz-version-id on an unversioned bucket
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k", VersionId="3HL4kqtJlcpXroDTDmJ")
    assert exc.value.response["Error"]["Code"] == "InvalidArgument"
