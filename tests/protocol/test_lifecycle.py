"""Bucket lifecycle: AbortIncompleteMultipartUpload rules for the whole bucket, and every
refusal (NotImplemented, MalformedXML, InvalidArgument, AccessDenied, NoSuchBucket …)."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from lxml import etree

from tests.cluster import Cluster
from tests.conftest import SECOND_USER

NS = "http://s3.amazonaws.com/doc/2006-03-01/"


def _abort_rule(days: int = 7, rule_id: str = "abort", **extra: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "ID": rule_id,
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": days},
    }
    rule.update(extra)
    return rule


def _put(s3: Any, bucket: str, *rules: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = s3.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": list(rules)}
    )
    return response


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = exc.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def _upload_ttl(cluster: Cluster, bucket: str) -> timedelta | None:
    [row] = cluster.sql("SELECT upload_ttl FROM buckets WHERE name = $1", bucket)
    ttl: timedelta | None = row["upload_ttl"]
    return ttl


def _raw_put(cluster: Cluster, bucket: str, body: bytes, **headers: str) -> tuple[int, str]:
    status, _, out = cluster.raw("PUT", f"/{bucket}?lifecycle", body=body, headers=headers)
    code = etree.fromstring(out).findtext("Code") if out else ""
    return status, code or ""


def _doc(*rules: str) -> bytes:
    return (
        f'<LifecycleConfiguration xmlns="{NS}">{"".join(rules)}</LifecycleConfiguration>'.encode()
    )


def _rule(days: str = "7", *, status: str = "Enabled", inner: str = "") -> str:
    return (
        f"<Rule><ID>r</ID><Filter><Prefix></Prefix></Filter><Status>{status}</Status>{inner}"
        "<AbortIncompleteMultipartUpload>"
        f"<DaysAfterInitiation>{days}</DaysAfterInitiation>"
        "</AbortIncompleteMultipartUpload></Rule>"
    )


# --- what works -----------------------------------------------------------------------


def test_get_without_a_configuration_is_no_such_lifecycle_configuration(
    s3: Any, bucket: str
) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert _code(exc) == ("NoSuchLifecycleConfiguration", 404)


def test_put_get_delete(cluster: Cluster, s3: Any, bucket: str) -> None:
    assert _upload_ttl(cluster, bucket) is None
    response = _put(s3, bucket, _abort_rule(3))
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"] == [_abort_rule(3)]
    assert _upload_ttl(cluster, bucket) == timedelta(days=3)

    response = s3.delete_bucket_lifecycle(Bucket=bucket)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert _code(exc) == ("NoSuchLifecycleConfiguration", 404)
    assert _upload_ttl(cluster, bucket) is None


def test_delete_without_a_configuration_succeeds(s3: Any, bucket: str) -> None:
    response = s3.delete_bucket_lifecycle(Bucket=bucket)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_put_replaces_the_previous_configuration(cluster: Cluster, s3: Any, bucket: str) -> None:
    _put(s3, bucket, _abort_rule(3, "first"), _abort_rule(9, "second"))
    _put(s3, bucket, _abort_rule(12, "only"))
    assert s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"] == [
        _abort_rule(12, "only")
    ]
    assert _upload_ttl(cluster, bucket) == timedelta(days=12)


def test_every_whole_bucket_form_round_trips(cluster: Cluster, s3: Any, bucket: str) -> None:
    empty_filter = {
        "ID": "empty-filter",
        "Status": "Enabled",
        "Filter": {},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 30},
    }
    legacy_prefix = {
        "ID": "legacy-prefix",
        "Status": "Enabled",
        "Prefix": "",
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 20},
    }
    no_filter = {
        "ID": "no-filter",
        "Status": "Enabled",
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 10},
    }
    disabled = _abort_rule(1, "disabled", Status="Disabled")
    rules = [_abort_rule(5, "prefix-filter"), empty_filter, legacy_prefix, no_filter, disabled]
    _put(s3, bucket, *rules)
    assert s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"] == rules
    # The shortest enabled rule sets the bucket's TTL; a disabled rule sets nothing.
    assert _upload_ttl(cluster, bucket) == timedelta(days=5)


def test_only_disabled_rules_leave_the_default_ttl(cluster: Cluster, s3: Any, bucket: str) -> None:
    _put(s3, bucket, _abort_rule(2, Status="Disabled"))
    assert s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"][0]["Status"] == "Disabled"
    assert _upload_ttl(cluster, bucket) is None


def test_a_rule_without_an_id_is_given_one(s3: Any, bucket: str) -> None:
    rule = _abort_rule(4)
    del rule["ID"]
    _put(s3, bucket, rule)
    [got] = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert got["ID"]
    assert {k: v for k, v in got.items() if k != "ID"} == rule


def test_a_matching_content_md5_is_accepted(cluster: Cluster, bucket: str) -> None:
    body = _doc(_rule("6"))
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    assert _raw_put(cluster, bucket, body, **{"Content-MD5": md5}) == (200, "")
    assert _upload_ttl(cluster, bucket) == timedelta(days=6)


# --- NotImplemented: other actions and narrower filters -------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {"Expiration": {"Days": 30}},
        {"Transitions": [{"Days": 30, "StorageClass": "GLACIER"}]},
        {"NoncurrentVersionExpiration": {"NoncurrentDays": 30}},
        {"NoncurrentVersionTransitions": [{"NoncurrentDays": 30, "StorageClass": "GLACIER"}]},
    ],
    ids=["Expiration", "Transition", "NoncurrentVersionExpiration", "NoncurrentVersionTransition"],
)
@pytest.mark.parametrize("with_abort", [True, False], ids=["with-abort", "alone"])
def test_other_actions_are_not_implemented(
    cluster: Cluster, s3: Any, bucket: str, extra: dict[str, Any], with_abort: bool
) -> None:
    _put(s3, bucket, _abort_rule(3, "kept"))
    rule = {**_abort_rule(1), **extra}
    if not with_abort:
        del rule["AbortIncompleteMultipartUpload"]
    with pytest.raises(ClientError) as exc:
        _put(s3, bucket, rule)
    assert _code(exc) == ("NotImplemented", 501)
    # A refused configuration changes nothing.
    assert s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"] == [_abort_rule(3, "kept")]
    assert _upload_ttl(cluster, bucket) == timedelta(days=3)


@pytest.mark.parametrize(
    "scope",
    [
        {"Filter": {"Prefix": "logs/"}},
        {"Prefix": "logs/"},
        {"Filter": {"Tag": {"Key": "k", "Value": "v"}}},
        {"Filter": {"And": {"Prefix": "", "Tags": [{"Key": "k", "Value": "v"}]}}},
        {"Filter": {"ObjectSizeGreaterThan": 1024}},
        {"Filter": {"ObjectSizeLessThan": 1024}},
    ],
    ids=["filter-prefix", "legacy-prefix", "tag", "and", "size-greater", "size-less"],
)
def test_filters_narrower_than_the_bucket_are_not_implemented(
    cluster: Cluster, s3: Any, bucket: str, scope: dict[str, Any]
) -> None:
    rule = _abort_rule(2)
    del rule["Filter"]
    rule.update(scope)
    with pytest.raises(ClientError) as exc:
        _put(s3, bucket, rule)
    assert _code(exc) == ("NotImplemented", 501)
    assert _upload_ttl(cluster, bucket) is None


# --- MalformedXML and InvalidArgument -------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not xml at all",
        b"<LifecycleConfiguration><Rule>",
        f'<CORSConfiguration xmlns="{NS}"/>'.encode(),
        _doc(),  # no rule
        _doc(_rule() + "<Other/>"),
        _doc(_rule(status="enabled")),
        _doc(_rule(status="")),
        _doc(_rule(inner="<Unknown>1</Unknown>")),
        _doc(_rule(inner="<Status>Enabled</Status>")),  # Status twice
        _doc(_rule(inner="<Prefix></Prefix>")),  # Prefix beside Filter
        _doc(
            "<Rule><ID>no-status</ID><Filter/><AbortIncompleteMultipartUpload>"
            "<DaysAfterInitiation>1</DaysAfterInitiation></AbortIncompleteMultipartUpload></Rule>"
        ),
        _doc("<Rule><ID>no-action</ID><Filter/><Status>Enabled</Status></Rule>"),
        _doc(
            "<Rule><ID>no-days</ID><Status>Enabled</Status><AbortIncompleteMultipartUpload/></Rule>"
        ),
        _doc(
            "<Rule><ID>two-conditions</ID><Filter><Prefix></Prefix><Tag><Key>k</Key>"
            "<Value>v</Value></Tag></Filter><Status>Enabled</Status>"
            "<AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation>"
            "</AbortIncompleteMultipartUpload></Rule>"
        ),
        _doc(_rule("<N>1</N>")),  # an element where the number should be
        # XXE: entities are never resolved, a DTD is refused outright.
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        + _doc(_rule("&e;")),
    ],
    ids=[
        "empty",
        "not-xml",
        "truncated",
        "wrong-root",
        "no-rule",
        "unknown-top-level",
        "bad-status",
        "empty-status",
        "unknown-rule-element",
        "duplicate-status",
        "filter-and-prefix",
        "no-status",
        "no-action",
        "no-days",
        "two-filter-conditions",
        "days-not-text",
        "xxe",
    ],
)
def test_malformed_documents(cluster: Cluster, bucket: str, body: bytes) -> None:
    assert _raw_put(cluster, bucket, body) == (400, "MalformedXML")
    assert _upload_ttl(cluster, bucket) is None


@pytest.mark.parametrize("days", ["0", "-1", "abc", "1.5", "", "+3", "2147483648"])
def test_days_must_be_a_positive_integer(cluster: Cluster, bucket: str, days: str) -> None:
    assert _raw_put(cluster, bucket, _doc(_rule(days))) == (400, "InvalidArgument")
    assert _upload_ttl(cluster, bucket) is None


def test_huge_days_are_accepted_and_shown_as_given(cluster: Cluster, s3: Any, bucket: str) -> None:
    _put(s3, bucket, _abort_rule(2147483647))
    assert s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"] == [
        _abort_rule(2147483647)
    ]
    # Clamped in the database to an age PostgreSQL can subtract from now().
    ttl = _upload_ttl(cluster, bucket)
    assert ttl is not None and ttl >= timedelta(days=365 * 1000)


def test_rule_ids_must_be_unique(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        _put(s3, bucket, _abort_rule(1, "same"), _abort_rule(2, "same"))
    assert _code(exc) == ("InvalidArgument", 400)


def test_rule_ids_are_at_most_255_characters(s3: Any, bucket: str) -> None:
    _put(s3, bucket, _abort_rule(1, "x" * 255))
    with pytest.raises(ClientError) as exc:
        _put(s3, bucket, _abort_rule(1, "x" * 256))
    assert _code(exc) == ("InvalidArgument", 400)


def test_a_wrong_content_md5_is_bad_digest(cluster: Cluster, bucket: str) -> None:
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    assert _raw_put(cluster, bucket, _doc(_rule()), **{"Content-MD5": wrong}) == (
        400,
        "BadDigest",
    )
    assert _upload_ttl(cluster, bucket) is None


# --- who may -------------------------------------------------------------------------


def test_only_the_owner_may_read_or_change_the_lifecycle(
    cluster: Cluster, s3: Any, bucket: str
) -> None:
    _put(s3, bucket, _abort_rule(3))
    other = cluster.client(access_key=SECOND_USER[0], secret_key=SECOND_USER[1])
    for call in (
        lambda: other.get_bucket_lifecycle_configuration(Bucket=bucket),
        lambda: _put(other, bucket, _abort_rule(1)),
        lambda: other.delete_bucket_lifecycle(Bucket=bucket),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert _code(exc) == ("AccessDenied", 403)
    assert s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"] == [_abort_rule(3)]
    assert _upload_ttl(cluster, bucket) == timedelta(days=3)


def test_missing_bucket(s3: Any) -> None:
    for call in (
        lambda: s3.get_bucket_lifecycle_configuration(Bucket="no-such-bucket-lc"),
        lambda: _put(s3, "no-such-bucket-lc", _abort_rule(3)),
        lambda: s3.delete_bucket_lifecycle(Bucket="no-such-bucket-lc"),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert _code(exc) == ("NoSuchBucket", 404)
