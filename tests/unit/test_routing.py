"""Routing table tests: request lines in the style of the AWS S3 API reference examples."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping

import pytest

from s3compat.api.routing import (
    BUCKET_SUBRESOURCES,
    KNOWN_PARAMS,
    OBJECT_SUBRESOURCES,
    UNSUPPORTED_SUBRESOURCES,
    Op,
    Route,
    route,
)
from s3compat.core.errors import (
    InvalidArgument,
    InvalidURI,
    KeyTooLongError,
    MethodNotAllowed,
    NotImplementedError_,
    S3Error,
)

DOMAIN = "s3.localhost"
PATH_HOST = "127.0.0.1:9000"
VHOST = "examplebucket.s3.localhost:9000"
COPY = {"x-amz-copy-source": "/source-bucket/source-key"}
UPLOAD_ID = "VXBsb2FkIElEIGZvciBlbHZpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA"


def _route(
    method: str,
    target: str | bytes,
    *,
    host: str | None = PATH_HOST,
    headers: Mapping[str, str] | None = None,
    domain: str | None = DOMAIN,
) -> Route:
    """`target` is a request-target as on the request line: path, then `?query`."""
    if isinstance(target, bytes):
        path_b, _, query_b = target.partition(b"?")
        return route(method, path_b, query_b, host, virtual_host_domain=domain, headers=headers)
    path, _, query = target.partition("?")
    return route(method, path, query, host, virtual_host_domain=domain, headers=headers)


# --------------------------------------------------------------------------------------
# The table: (method, request-target, headers, op, bucket, key)

Case = tuple[str, str, Mapping[str, str] | None, Op, str | None, str | None]

PATH_STYLE: list[Case] = [
    # service
    ("GET", "/", None, Op.LIST_BUCKETS, None, None),
    ("GET", "/?max-buckets=10&prefix=ex&x-id=ListBuckets", None, Op.LIST_BUCKETS, None, None),
    # bucket
    ("PUT", "/examplebucket", None, Op.CREATE_BUCKET, "examplebucket", None),
    ("PUT", "/examplebucket/", None, Op.CREATE_BUCKET, "examplebucket", None),
    ("HEAD", "/examplebucket", None, Op.HEAD_BUCKET, "examplebucket", None),
    ("DELETE", "/examplebucket", None, Op.DELETE_BUCKET, "examplebucket", None),
    ("GET", "/examplebucket?location", None, Op.GET_BUCKET_LOCATION, "examplebucket", None),
    ("GET", "/examplebucket", None, Op.LIST_OBJECTS, "examplebucket", None),
    (
        "GET",
        "/examplebucket?prefix=N&marker=Ned&max-keys=40",
        None,
        Op.LIST_OBJECTS,
        "examplebucket",
        None,
    ),
    ("GET", "/examplebucket/?delimiter=/", None, Op.LIST_OBJECTS, "examplebucket", None),
    (
        "GET",
        "/examplebucket?list-type=2&prefix=photos",
        None,
        Op.LIST_OBJECTS_V2,
        "examplebucket",
        None,
    ),
    (
        "GET",
        "/examplebucket?list-type=2&max-keys=3&prefix=E&start-after=ExampleGuide.pdf",
        None,
        Op.LIST_OBJECTS_V2,
        "examplebucket",
        None,
    ),
    (
        "GET",
        "/examplebucket?list-type=2&delimiter=%2F&prefix=photos%2F2006%2F&encoding-type=url",
        None,
        Op.LIST_OBJECTS_V2,
        "examplebucket",
        None,
    ),
    (
        "GET",
        "/examplebucket?list-type=2&continuation-token=1ueGcxLPRx1Tr%2FXYExHnhbYLgveDs2J"
        "%2FwZUxRt4Lb6gnBrVg%3D%3D&fetch-owner=true",
        None,
        Op.LIST_OBJECTS_V2,
        "examplebucket",
        None,
    ),
    ("GET", "/examplebucket?versions", None, Op.LIST_OBJECT_VERSIONS, "examplebucket", None),
    (
        "GET",
        "/examplebucket?versions&key-marker=key2&version-id-marker=3%2FL4kq&max-keys=3",
        None,
        Op.LIST_OBJECT_VERSIONS,
        "examplebucket",
        None,
    ),
    ("GET", "/examplebucket?versioning", None, Op.GET_BUCKET_VERSIONING, "examplebucket", None),
    ("PUT", "/examplebucket?versioning", None, Op.PUT_BUCKET_VERSIONING, "examplebucket", None),
    ("GET", "/examplebucket?acl", None, Op.GET_BUCKET_ACL, "examplebucket", None),
    ("PUT", "/examplebucket?acl", None, Op.PUT_BUCKET_ACL, "examplebucket", None),
    ("GET", "/examplebucket?tagging", None, Op.GET_BUCKET_TAGGING, "examplebucket", None),
    ("PUT", "/examplebucket?tagging", None, Op.PUT_BUCKET_TAGGING, "examplebucket", None),
    ("DELETE", "/examplebucket?tagging", None, Op.DELETE_BUCKET_TAGGING, "examplebucket", None),
    (
        "GET",
        "/examplebucket?lifecycle",
        None,
        Op.GET_BUCKET_LIFECYCLE_CONFIGURATION,
        "examplebucket",
        None,
    ),
    (
        "PUT",
        "/examplebucket?lifecycle",
        None,
        Op.PUT_BUCKET_LIFECYCLE_CONFIGURATION,
        "examplebucket",
        None,
    ),
    ("DELETE", "/examplebucket?lifecycle", None, Op.DELETE_BUCKET_LIFECYCLE, "examplebucket", None),
    ("GET", "/examplebucket?uploads", None, Op.LIST_MULTIPART_UPLOADS, "examplebucket", None),
    (
        "GET",
        "/examplebucket?uploads&max-uploads=3&delimiter=/&prefix=photos/2006/",
        None,
        Op.LIST_MULTIPART_UPLOADS,
        "examplebucket",
        None,
    ),
    (
        "GET",
        "/examplebucket?uploads&key-marker=my-movie.m2ts&upload-id-marker=YW55IGlkZWE",
        None,
        Op.LIST_MULTIPART_UPLOADS,
        "examplebucket",
        None,
    ),
    ("POST", "/examplebucket?delete", None, Op.DELETE_OBJECTS, "examplebucket", None),
    ("POST", "/examplebucket/?delete", None, Op.DELETE_OBJECTS, "examplebucket", None),
    # object
    ("PUT", "/examplebucket/my-image.jpg", None, Op.PUT_OBJECT, "examplebucket", "my-image.jpg"),
    (
        "PUT",
        "/examplebucket/my-second-image.jpg",
        COPY,
        Op.COPY_OBJECT,
        "examplebucket",
        "my-second-image.jpg",
    ),
    ("GET", "/examplebucket/my-image.jpg", None, Op.GET_OBJECT, "examplebucket", "my-image.jpg"),
    (
        "GET",
        "/examplebucket/myObject?versionId=3%2FL4kqtJlcpXroDTDmpUMLUo",
        None,
        Op.GET_OBJECT,
        "examplebucket",
        "myObject",
    ),
    (
        "GET",
        "/examplebucket/Junk3.txt?response-cache-control=No-cache"
        "&response-content-disposition=attachment%3B%20filename%3Dtesting.txt"
        "&response-content-encoding=x-gzip&response-content-language=mi%2C%20en"
        "&response-content-type=text%2Fplain"
        "&response-expires=Thu%2C%2001%20Dec%201994%2016%3A00%3A00%20GMT",
        None,
        Op.GET_OBJECT,
        "examplebucket",
        "Junk3.txt",
    ),
    (
        "GET",
        "/examplebucket/big.bin?partNumber=3",
        None,
        Op.GET_OBJECT,
        "examplebucket",
        "big.bin",
    ),
    ("HEAD", "/examplebucket/my-image.jpg", None, Op.HEAD_OBJECT, "examplebucket", "my-image.jpg"),
    (
        "HEAD",
        "/examplebucket/my-image.jpg?versionId=null",
        None,
        Op.HEAD_OBJECT,
        "examplebucket",
        "my-image.jpg",
    ),
    (
        "DELETE",
        "/examplebucket/my-second-image.jpg",
        None,
        Op.DELETE_OBJECT,
        "examplebucket",
        "my-second-image.jpg",
    ),
    (
        "DELETE",
        "/examplebucket/my-third-image.jpg?versionId=UIORUnfndfiufdisojhr398493jfdkjFJjkndnq",
        None,
        Op.DELETE_OBJECT,
        "examplebucket",
        "my-third-image.jpg",
    ),
    (
        "POST",
        "/examplebucket/example-object?uploads",
        None,
        Op.CREATE_MULTIPART_UPLOAD,
        "examplebucket",
        "example-object",
    ),
    (
        "PUT",
        f"/examplebucket/my-movie.m2ts?partNumber=1&uploadId={UPLOAD_ID}",
        None,
        Op.UPLOAD_PART,
        "examplebucket",
        "my-movie.m2ts",
    ),
    (
        "PUT",
        f"/examplebucket/newobject?uploadId={UPLOAD_ID}&partNumber=2",
        COPY,
        Op.UPLOAD_PART_COPY,
        "examplebucket",
        "newobject",
    ),
    (
        "POST",
        f"/examplebucket/example-object?uploadId={UPLOAD_ID}",
        None,
        Op.COMPLETE_MULTIPART_UPLOAD,
        "examplebucket",
        "example-object",
    ),
    (
        "DELETE",
        f"/examplebucket/example-object?uploadId={UPLOAD_ID}",
        None,
        Op.ABORT_MULTIPART_UPLOAD,
        "examplebucket",
        "example-object",
    ),
    (
        "GET",
        f"/examplebucket/example-object?uploadId={UPLOAD_ID}&max-parts=2&part-number-marker=1",
        None,
        Op.LIST_PARTS,
        "examplebucket",
        "example-object",
    ),
    (
        "GET",
        "/examplebucket/example-object?tagging",
        None,
        Op.GET_OBJECT_TAGGING,
        "examplebucket",
        "example-object",
    ),
    (
        "PUT",
        "/examplebucket/object-key?tagging",
        None,
        Op.PUT_OBJECT_TAGGING,
        "examplebucket",
        "object-key",
    ),
    (
        "PUT",
        "/examplebucket/object-key?tagging&versionId=abc",
        COPY,  # a copy source never changes a tagging request into a copy
        Op.PUT_OBJECT_TAGGING,
        "examplebucket",
        "object-key",
    ),
    (
        "DELETE",
        "/examplebucket/exampleobject?tagging",
        None,
        Op.DELETE_OBJECT_TAGGING,
        "examplebucket",
        "exampleobject",
    ),
    (
        "GET",
        "/examplebucket/my-image.jpg?acl",
        None,
        Op.GET_OBJECT_ACL,
        "examplebucket",
        "my-image.jpg",
    ),
    (
        "PUT",
        "/examplebucket/my-image.jpg?acl",
        None,
        Op.PUT_OBJECT_ACL,
        "examplebucket",
        "my-image.jpg",
    ),
    (
        "PUT",
        "/examplebucket/my-image.jpg?acl=",
        None,
        Op.PUT_OBJECT_ACL,
        "examplebucket",
        "my-image.jpg",
    ),
]


def _as_vhost(case: Case) -> Case:
    """The same request addressed virtual-host style: bucket in Host, key as the path."""
    method, target, headers, op, bucket, key = case
    path, sep, query = target.partition("?")
    if bucket is None:
        return case
    rest = path[len("/" + bucket) :]
    return (method, (rest or "/") + sep + query, headers, op, bucket, key)


VIRTUAL_HOST: list[Case] = [_as_vhost(c) for c in PATH_STYLE if c[4] is not None]


def _id(case: Case) -> str:
    return f"{case[0]} {case[1]}{' +copy' if case[2] else ''}"


@pytest.mark.parametrize("case", PATH_STYLE, ids=_id)
def test_path_style(case: Case) -> None:
    method, target, headers, op, bucket, key = case
    r = _route(method, target, headers=headers)
    assert (r.op, r.bucket, r.key) == (op, bucket, key)


@pytest.mark.parametrize("case", VIRTUAL_HOST, ids=_id)
def test_virtual_host_style(case: Case) -> None:
    method, target, headers, op, bucket, key = case
    r = _route(method, target, host=VHOST, headers=headers)
    assert (r.op, r.bucket, r.key) == (op, bucket, key)


def test_every_op_is_covered_by_the_table() -> None:
    assert {c[3] for c in PATH_STYLE} == set(Op)
    assert {c[3] for c in VIRTUAL_HOST} == set(Op) - {Op.LIST_BUCKETS}


def test_op_values_are_aws_action_names() -> None:
    assert Op.LIST_OBJECTS_V2.value == "ListObjectsV2"
    assert Op.COMPLETE_MULTIPART_UPLOAD.value == "CompleteMultipartUpload"
    assert Op.GET_BUCKET_LIFECYCLE_CONFIGURATION.value == "GetBucketLifecycleConfiguration"
    for op in Op:
        words = op.name.split("_")
        assert op.value.lower() == "".join(words).lower(), op


# --------------------------------------------------------------------------------------
# Keys: decoded once from the raw path, never normalised


@pytest.mark.parametrize(
    ("raw_key", "key"),
    [
        ("my%20file.txt", "my file.txt"),
        ("a+b", "a+b"),  # '+' is not a space in a path
        ("a%2Bb", "a+b"),
        ("100%25", "100%"),
        ("100%2525", "100%25"),  # decoded exactly once
        ("price%E2%82%AC", "price€"),
        ("price%e2%82%ac", "price€"),
        ("a//b", "a//b"),
        ("dir/", "dir/"),
        ("dir//", "dir//"),
        ("/leading", "/leading"),
        ("a$b", "a$b"),
        ("key_%24folder%24", "key_$folder$"),
        ("a%2Fb", "a/b"),
        ("../x", "../x"),
        ("a/./b/../c", "a/./b/../c"),
        ("%2E%2E/x", "../x"),
        (".", "."),
        ("a%3Fb%23c", "a?b#c"),
        ("%00", "\x00"),
        ("sp ace", "sp ace"),  # a raw space (lenient servers pass it through)
        ("€uro", "€uro"),  # a str path with raw non-ASCII is UTF-8
    ],
)
def test_key_decoding(raw_key: str, key: str) -> None:
    for method in ("GET", "PUT", "HEAD", "DELETE"):
        r = _route(method, f"/bucket/{raw_key}")
        assert (r.bucket, r.key) == ("bucket", key)
        v = _route(method, f"/{raw_key}", host="bucket.s3.localhost")
        assert (v.bucket, v.key) == ("bucket", key)


def test_bytes_path_is_taken_as_is() -> None:
    r = _route("GET", b"/bucket/\xe2\x82\xac%20x?prefix=%E2%82%AC")
    assert (r.bucket, r.key, r.query["prefix"]) == ("bucket", "€ x", "€")


def test_encoded_slash_in_first_segment_stays_in_the_bucket_name() -> None:
    # Split happens on the raw '/', so %2F cannot move a key segment into the bucket.
    r = _route("GET", "/buck%2Fet/key")
    assert (r.bucket, r.key) == ("buck/et", "key")


def test_empty_key_means_bucket_operation() -> None:
    assert _route("GET", "/bucket/").key is None
    assert _route("GET", "/bucket/").op is Op.LIST_OBJECTS
    assert _route("GET", "/", host="bucket.s3.localhost").op is Op.LIST_OBJECTS


def test_odd_first_segments_are_still_buckets() -> None:
    # The handler validates bucket names; routing only reports what it saw.
    assert _route("GET", "//key").bucket == ""
    assert (_route("GET", "//key").key, _route("GET", "//").key) == ("key", None)
    assert _route("GET", "/UPPER..case/k").bucket == "UPPER..case"


@pytest.mark.parametrize(
    "target",
    [
        "/bucket/%FF",
        "/bucket/%C3%28",
        "/bucket/ok/%ED%A0%80",  # an encoded UTF-16 surrogate is not UTF-8
        b"/bucket/\xff",
        "/%FF/key",
        "/bucket/a%2",  # truncated escape
        "/bucket/a%zz",
        "/bucket/a%",
        "/bucket/key?prefix=%FF",
        "/bucket/key?%FF=1",
        "/bucket?prefix=100%",
        "bucket/key",  # not origin-form
        "",
    ],
)
def test_invalid_uri(target: str | bytes) -> None:
    with pytest.raises(InvalidURI):
        _route("GET", target)


def test_invalid_utf8_in_virtual_host_key() -> None:
    with pytest.raises(InvalidURI):
        _route("PUT", "/%FF", host="bucket.s3.localhost")


def test_key_length_limit_is_1024_utf8_bytes() -> None:
    assert _route("PUT", "/b/" + "a" * 1024).key == "a" * 1024
    assert _route("PUT", "/b/" + "%61" * 1024).key == "a" * 1024  # counted after decoding
    euro = "%E2%82%AC"
    assert _route("PUT", "/b/" + euro * 341 + "a").key == "€" * 341 + "a"  # 1024 bytes
    for too_long in ("a" * 1025, euro * 342, "%61" * 1025):
        with pytest.raises(KeyTooLongError):
            _route("PUT", "/b/" + too_long)
    with pytest.raises(KeyTooLongError):
        _route("GET", "/" + "a" * 1025, host="b.s3.localhost")


# --------------------------------------------------------------------------------------
# Query parsing


def test_query_decoding() -> None:
    r = _route("GET", "/b?prefix=a+b%20c%2Bd&delimiter=%2F&uploads-ignored=&max-keys")
    assert dict(r.query) == {
        "prefix": "a+b c+d",  # no plus-as-space
        "delimiter": "/",
        "uploads-ignored": "",
        "max-keys": "",
    }
    assert dict(_route("POST", "/b/k?uploads").query) == {"uploads": ""}
    assert dict(_route("GET", "/b/k?x-id=a=b").query) == {"x-id": "a=b"}  # first '=' splits
    assert dict(_route("GET", "/b?&&prefix=p&").query) == {"prefix": "p"}
    assert dict(_route("GET", "/b").query) == {}


def test_query_is_read_only() -> None:
    r = _route("GET", "/b?prefix=p")
    with pytest.raises(TypeError):
        r.query["prefix"] = "other"  # type: ignore[index]


@pytest.mark.parametrize(
    "target",
    [
        "/b?prefix=a&prefix=b",
        "/b?prefix=a&prefix=a",
        "/b?acl&acl",
        "/b/k?uploadId=1&uploadId=2",
        "/b/k?tagging&tagging=",
        "/b/k?versionId=1&versionId=1",
        "/b/k?pre%66ix=a&prefix=b",  # duplicate after decoding
    ],
)
def test_duplicate_parameters(target: str) -> None:
    for method in ("GET", "PUT", "POST", "DELETE"):
        with pytest.raises(InvalidArgument):
            _route(method, target)


# --------------------------------------------------------------------------------------
# Subresources: unknown ones never fall through


@pytest.mark.parametrize("name", sorted(UNSUPPORTED_SUBRESOURCES))
@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "POST", "DELETE"])
def test_unsupported_subresource_is_not_implemented(name: str, method: str) -> None:
    for target, host in [
        (f"/b?{name}", PATH_HOST),
        (f"/b/?{name}=", PATH_HOST),
        (f"/b/k?{name}", PATH_HOST),
        (f"/b/k?versionId=1&{name}=x", PATH_HOST),
        (f"/k?{name}", "b.s3.localhost"),
        (f"/?{name}", "b.s3.localhost"),
    ]:
        with pytest.raises(NotImplementedError_) as info:
            _route(method, target, host=host)
        assert info.value.status == 501
        assert info.value.code == "NotImplemented"


@pytest.mark.parametrize("name", sorted(BUCKET_SUBRESOURCES - OBJECT_SUBRESOURCES))
@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "POST", "DELETE"])
def test_bucket_subresource_on_an_object_is_not_implemented(name: str, method: str) -> None:
    # e.g. PUT /b/k?versioning must never become PutObject.
    with pytest.raises(NotImplementedError_):
        _route(method, f"/b/k?{name}")


@pytest.mark.parametrize("name", sorted(OBJECT_SUBRESOURCES - BUCKET_SUBRESOURCES))
@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "POST", "DELETE"])
def test_object_subresource_on_a_bucket_is_not_implemented(name: str, method: str) -> None:
    # e.g. DELETE /b?uploadId=x must never become DeleteBucket.
    with pytest.raises(NotImplementedError_):
        _route(method, f"/b?{name}=x")


@pytest.mark.parametrize("name", sorted(BUCKET_SUBRESOURCES | OBJECT_SUBRESOURCES))
def test_subresources_on_the_service_are_not_implemented(name: str) -> None:
    with pytest.raises(NotImplementedError_):
        _route("GET", f"/?{name}")


def test_put_object_acl_is_not_put_object() -> None:
    assert _route("PUT", "/b/k?acl").op is Op.PUT_OBJECT_ACL
    assert _route("PUT", "/b/k?acl", headers=COPY).op is Op.PUT_OBJECT_ACL
    assert _route("PUT", "/b/k?versionId=v1&acl").op is Op.PUT_OBJECT_ACL


@pytest.mark.parametrize("method", ["PUT", "POST", "DELETE"])
@pytest.mark.parametrize("target", ["/b/k?foo", "/b/k?foo=bar", "/b?foo", "/b/k?ACL", "/?foo"])
def test_unknown_parameter_on_a_write_is_not_implemented(method: str, target: str) -> None:
    with pytest.raises(NotImplementedError_):
        _route(method, target)


@pytest.mark.parametrize(
    ("target", "op"),
    [
        ("/b/k?foo", Op.GET_OBJECT),
        ("/b/k?foo=bar&versionId=1", Op.GET_OBJECT),
        ("/b?foo", Op.LIST_OBJECTS),
        ("/b?list-type=2&foo", Op.LIST_OBJECTS_V2),
        ("/b/k?uploadId=1&foo", Op.LIST_PARTS),
        ("/?foo", Op.LIST_BUCKETS),
    ],
)
def test_unknown_parameter_on_a_read_is_ignored(target: str, op: Op) -> None:
    assert _route("GET", target).op is op


@pytest.mark.parametrize("name", sorted(KNOWN_PARAMS - {"partNumber", "list-type"}))
def test_known_parameters_are_accepted_on_every_plain_operation(name: str) -> None:
    q = f"{name}=v"
    assert _route("GET", f"/b/k?{q}").op is Op.GET_OBJECT
    assert _route("HEAD", f"/b/k?{q}").op is Op.HEAD_OBJECT
    assert _route("PUT", f"/b/k?{q}").op is Op.PUT_OBJECT
    assert _route("PUT", f"/b/k?{q}", headers=COPY).op is Op.COPY_OBJECT
    assert _route("DELETE", f"/b/k?{q}").op is Op.DELETE_OBJECT
    assert _route("GET", f"/b?{q}").op is Op.LIST_OBJECTS
    assert _route("POST", f"/b?delete&{q}").op is Op.DELETE_OBJECTS


def test_parameter_sets_are_disjoint() -> None:
    subresources = BUCKET_SUBRESOURCES | OBJECT_SUBRESOURCES
    assert not subresources & UNSUPPORTED_SUBRESOURCES
    assert not KNOWN_PARAMS & (subresources | UNSUPPORTED_SUBRESOURCES)
    assert {"acl", "tagging"} <= BUCKET_SUBRESOURCES & OBJECT_SUBRESOURCES


def test_presigned_urls() -> None:
    sigv4 = (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )
    sigv2 = "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Expires=1141889120&Signature=vjbyPxybd%2FZ%2B"
    hoisted = "&content-type=text%2Fplain&content-md5=1B2M2Y8AsgTpgAmY7PhCfg%3D%3D&x-amz-acl=a"
    for query in (
        sigv4,
        sigv2,
        sigv4 + "&x-amz-acl=private&x-amz-meta-mtime=1&x-id=PutObject",
        sigv2 + hoisted,
    ):
        assert _route("GET", f"/b/k?{query}").op is Op.GET_OBJECT
        assert _route("PUT", f"/b/k?{query}").op is Op.PUT_OBJECT
        assert _route("DELETE", f"/b/k?{query}").op is Op.DELETE_OBJECT
        assert _route("PUT", f"/b/k?partNumber=1&uploadId=u&{query}").op is Op.UPLOAD_PART
        assert _route("POST", f"/b/k?uploadId=u&{query}").op is Op.COMPLETE_MULTIPART_UPLOAD
    assert _route("GET", "/b/k?" + sigv2).query["Signature"] == "vjbyPxybd/Z+"


# --------------------------------------------------------------------------------------
# Methods and conflicting subresources


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("PUT", "/"),
        ("POST", "/"),
        ("DELETE", "/"),
        ("HEAD", "/"),
        ("DELETE", "/b?versioning"),
        ("POST", "/b?acl"),
        ("DELETE", "/b?acl"),
        ("PUT", "/b?location"),
        ("PUT", "/b?versions"),
        ("PUT", "/b?uploads"),  # must not become CreateBucket
        ("DELETE", "/b?delete"),  # must not become DeleteBucket
        ("GET", "/b?delete"),
        ("HEAD", "/b?acl"),
        ("GET", "/b/k?uploads"),
        ("PUT", "/b/k?uploads"),  # must not become PutObject
        ("DELETE", "/b/k?uploads"),
        ("HEAD", "/b/k?uploadId=u"),
        ("DELETE", "/b/k?acl"),
        ("POST", "/b/k?tagging"),
        ("POST", "/b/k"),
    ],
)
def test_method_not_allowed_on_resource(method: str, target: str) -> None:
    with pytest.raises(MethodNotAllowed) as info:
        _route(method, target)
    assert info.value.status == 405


@pytest.mark.parametrize("method", ["PATCH", "OPTIONS", "TRACE", "CONNECT", "get", "PROPFIND"])
@pytest.mark.parametrize("target", ["/", "/b", "/b/k", "/b/k?acl"])
def test_unknown_methods(method: str, target: str) -> None:
    with pytest.raises(MethodNotAllowed):
        _route(method, target)


def test_browser_post_upload_is_not_implemented() -> None:
    with pytest.raises(NotImplementedError_):
        _route("POST", "/b")
    with pytest.raises(NotImplementedError_):
        _route("POST", "/", host="b.s3.localhost")


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "/b?acl&tagging"),
        ("GET", "/b?versions&uploads"),
        ("PUT", "/b?versioning&lifecycle"),
        ("POST", "/b/k?uploads&uploadId=u"),
        ("PUT", "/b/k?acl&tagging"),
        ("PUT", "/b/k?partNumber=1&uploadId=u&acl"),
    ],
)
def test_conflicting_subresources(method: str, target: str) -> None:
    with pytest.raises(InvalidArgument):
        _route(method, target)


@pytest.mark.parametrize(
    ("method", "target", "headers"),
    [
        ("GET", "/b?list-type=1", None),
        ("GET", "/b?list-type=", None),
        ("GET", "/b?list-type=3", None),
        ("PUT", "/b/k?uploadId=u", None),  # UploadPart without partNumber
        ("PUT", "/b/k?uploadId=u", COPY),
        ("PUT", "/b/k?partNumber=1", None),  # partNumber without uploadId
        ("PUT", "/b/k?partNumber=1", COPY),
        ("POST", "/b/k?uploadId=u&partNumber=1", None),
        ("DELETE", "/b/k?partNumber=1", None),
    ],
)
def test_invalid_arguments(method: str, target: str, headers: Mapping[str, str] | None) -> None:
    with pytest.raises(InvalidArgument):
        _route(method, target, headers=headers)


def test_copy_source_header() -> None:
    assert _route("PUT", "/b/k", headers={}).op is Op.PUT_OBJECT
    assert _route("PUT", "/b/k", headers={"content-type": "x"}).op is Op.PUT_OBJECT
    assert _route("PUT", "/b/k", headers={"x-amz-copy-source": ""}).op is Op.COPY_OBJECT
    assert _route("PUT", "/b/k?partNumber=1&uploadId=u", headers=COPY).op is Op.UPLOAD_PART_COPY
    # Only PUT object requests are affected.
    assert _route("GET", "/b/k", headers=COPY).op is Op.GET_OBJECT
    assert _route("PUT", "/b", headers=COPY).op is Op.CREATE_BUCKET
    assert _route("POST", "/b/k?uploads", headers=COPY).op is Op.CREATE_MULTIPART_UPLOAD


# --------------------------------------------------------------------------------------
# Host handling


@pytest.mark.parametrize(
    ("host", "domain", "bucket", "key"),
    [
        ("examplebucket.s3.localhost", DOMAIN, "examplebucket", "photo.jpg"),
        ("examplebucket.s3.localhost:9000", DOMAIN, "examplebucket", "photo.jpg"),
        ("ExampleBucket.S3.LocalHost:9000", DOMAIN, "examplebucket", "photo.jpg"),
        ("examplebucket.s3.localhost.", DOMAIN, "examplebucket", "photo.jpg"),
        ("examplebucket.s3.localhost", "S3.LOCALHOST", "examplebucket", "photo.jpg"),
        ("examplebucket.s3.localhost", ".s3.localhost", "examplebucket", "photo.jpg"),
        ("my.dotted.bucket.s3.localhost", DOMAIN, "my.dotted.bucket", "photo.jpg"),
        # path-style hosts: the bucket comes from the path
        ("s3.localhost", DOMAIN, "pathbucket", "photo.jpg"),
        ("s3.localhost:9000", DOMAIN, "pathbucket", "photo.jpg"),
        (".s3.localhost", DOMAIN, "pathbucket", "photo.jpg"),
        ("127.0.0.1:9000", DOMAIN, "pathbucket", "photo.jpg"),
        ("[::1]:9000", DOMAIN, "pathbucket", "photo.jpg"),
        ("localhost", DOMAIN, "pathbucket", "photo.jpg"),
        ("examplebucket.other.example", DOMAIN, "pathbucket", "photo.jpg"),
        ("examples3.localhost", DOMAIN, "pathbucket", "photo.jpg"),  # not a subdomain
        (None, DOMAIN, "pathbucket", "photo.jpg"),
        ("", DOMAIN, "pathbucket", "photo.jpg"),
        ("examplebucket.s3.localhost", None, "pathbucket", "photo.jpg"),
        ("examplebucket.s3.localhost", "", "pathbucket", "photo.jpg"),
    ],
)
def test_host_styles(host: str | None, domain: str | None, bucket: str, key: str) -> None:
    target = "/pathbucket/photo.jpg" if bucket == "pathbucket" else "/photo.jpg"
    r = _route("GET", target, host=host, domain=domain)
    assert (r.op, r.bucket, r.key) == (Op.GET_OBJECT, bucket, key)


def test_virtual_host_takes_the_whole_path_as_key() -> None:
    r = _route("GET", "/pathlike/photo.jpg", host="examplebucket.s3.localhost")
    assert (r.bucket, r.key) == ("examplebucket", "pathlike/photo.jpg")
    r = _route("PUT", "//a//b/", host="examplebucket.s3.localhost")
    assert (r.op, r.key) == (Op.PUT_OBJECT, "/a//b/")


# --------------------------------------------------------------------------------------
# Errors are S3 errors; the module stays pure


def test_errors_are_s3_errors() -> None:
    for exc in (
        InvalidURI,
        KeyTooLongError,
        InvalidArgument,
        NotImplementedError_,
        MethodNotAllowed,
    ):
        assert issubclass(exc, S3Error)


def test_routing_imports_no_io_frameworks() -> None:
    code = (
        "import sys, s3compat.api.routing\n"
        "bad = [m for m in ('starlette', 'asyncpg', 'grpc') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
