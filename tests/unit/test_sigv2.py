"""AWS Signature Version 2 verification (s3compat.api.sigv2).

Known answers are the examples of the S3 developer guide's "Signing and authenticating REST
requests"; the client half signs real requests with botocore (HmacV1Auth through a boto3
client with signature_version='s3', and its V2 presigned URLs, boto3's default) and checks
that we accept them, and that tampering with any signed part is caught.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config

from s3compat.api import sigv2, sigv4
from s3compat.core.errors import (
    AccessDenied,
    InvalidAccessKeyId,
    InvalidArgument,
    RequestTimeTooSkewed,
    S3Error,
    SignatureDoesNotMatch,
)

Headers = list[tuple[str, str]]

AK = "AKIAIOSFODNN7EXAMPLE"
SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def lookup(access_key: str) -> str | None:
    return SK if access_key == AK else None


def raises_without_leak(error: type[S3Error], call: Callable[[], object]) -> S3Error:
    with pytest.raises(error) as info:
        call()
    exc = info.value
    for text in (str(exc), exc.message, repr(exc), *exc.extra.values()):
        assert SK not in text
    return exc


def http_date(moment: datetime) -> str:
    return moment.strftime("%a, %d %b %Y %H:%M:%S +0000")


# ------------------------------------------------------------ AWS published examples


@dataclass(frozen=True)
class Example:
    name: str
    method: str
    path: str
    query: str
    headers: Headers
    bucket: str | None  # from the Host header (virtual-host or CNAME style)
    string_to_sign: str
    signature: str

    @property
    def now(self) -> datetime:
        date = dict(self.headers).get("x-amz-date") or dict(self.headers)["date"]
        return datetime.strptime(date, "%a, %d %b %Y %H:%M:%S +0000").replace(tzinfo=UTC)

    def request_headers(self, signature: str | None = None) -> Headers:
        return [*self.headers, ("authorization", f"AWS {AK}:{signature or self.signature}")]


EXAMPLES = [
    Example(
        "object-get",
        "GET",
        "/photos/puppy.jpg",
        "",
        [
            ("host", "awsexamplebucket1.us-west-1.s3.amazonaws.com"),
            ("date", "Tue, 27 Mar 2007 19:36:42 +0000"),
        ],
        "awsexamplebucket1",
        "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/awsexamplebucket1/photos/puppy.jpg",
        "qgk2+6Sv9/oM7G3qLEjTH1a1l1g=",
    ),
    Example(
        "object-put",
        "PUT",
        "/photos/puppy.jpg",
        "",
        [
            ("content-type", "image/jpeg"),
            ("content-length", "94328"),
            ("host", "awsexamplebucket1.s3.us-west-1.amazonaws.com"),
            ("date", "Tue, 27 Mar 2007 21:15:45 +0000"),
        ],
        "awsexamplebucket1",
        "PUT\n\nimage/jpeg\nTue, 27 Mar 2007 21:15:45 +0000\n/awsexamplebucket1/photos/puppy.jpg",
        "iqRzw+ileNPu1fhspnRs8nOjjIA=",
    ),
    Example(
        "list",
        "GET",
        "/",
        "prefix=photos&max-keys=50&marker=puppy",
        [
            ("user-agent", "Mozilla/5.0"),
            ("host", "awsexamplebucket1.s3.us-west-1.amazonaws.com"),
            ("date", "Tue, 27 Mar 2007 19:42:41 +0000"),
        ],
        "awsexamplebucket1",
        "GET\n\n\nTue, 27 Mar 2007 19:42:41 +0000\n/awsexamplebucket1/",
        "m0WP8eCtspQl5Ahe6L1SozdX9YA=",
    ),
    Example(
        "fetch-acl",
        "GET",
        "/",
        "acl",
        [
            ("host", "awsexamplebucket1.s3.us-west-1.amazonaws.com"),
            ("date", "Tue, 27 Mar 2007 19:44:46 +0000"),
        ],
        "awsexamplebucket1",
        "GET\n\n\nTue, 27 Mar 2007 19:44:46 +0000\n/awsexamplebucket1/?acl",
        "82ZHiFIjc+WbcwFKGUVEQspPn+0=",
    ),
    Example(
        # Path style, and x-amz-date given because "the client library prevented us from
        # setting the date": its value is on the Date line and it is not an amz header.
        "delete-x-amz-date",
        "DELETE",
        "/awsexamplebucket1/photos/puppy.jpg",
        "",
        [
            ("user-agent", "dotnet"),
            ("host", "s3.us-west-1.amazonaws.com"),
            ("date", "Tue, 27 Mar 2007 21:20:27 +0000"),
            ("x-amz-date", "Tue, 27 Mar 2007 21:20:26 +0000"),
        ],
        None,
        "DELETE\n\n\nTue, 27 Mar 2007 21:20:26 +0000\n/awsexamplebucket1/photos/puppy.jpg",
        "XbyTlbQdu9Xw5o8P4iMwPktxQd8=",
    ),
    Example(
        # CNAME-style bucket, repeated and mixed-case x-amz-meta headers, Content-MD5.
        "upload",
        "PUT",
        "/db-backup.dat.gz",
        "",
        [
            ("user-agent", "curl/7.15.5"),
            ("host", "static.example.com:8080"),
            ("date", "Tue, 27 Mar 2007 21:06:08 +0000"),
            ("x-amz-acl", "public-read"),
            ("content-type", "application/x-download"),
            ("content-md5", "4gJE4saaMU4BqNR0kLY+lw=="),
            ("X-Amz-Meta-ReviewedBy", "joe@example.com"),
            ("X-Amz-Meta-ReviewedBy", "jane@example.com"),
            ("X-Amz-Meta-FileChecksum", "0x02661779"),
            ("X-Amz-Meta-ChecksumAlgorithm", "crc32"),
            ("content-disposition", "attachment; filename=database.dat"),
            ("content-encoding", "gzip"),
            ("content-length", "5913339"),
        ],
        "static.example.com",
        "PUT\n4gJE4saaMU4BqNR0kLY+lw==\napplication/x-download\nTue, 27 Mar 2007 21:06:08 +0000\n"
        "x-amz-acl:public-read\nx-amz-meta-checksumalgorithm:crc32\n"
        "x-amz-meta-filechecksum:0x02661779\n"
        "x-amz-meta-reviewedby:joe@example.com,jane@example.com\n"
        "/static.example.com/db-backup.dat.gz",
        "jtBQa0Aq+DkULFI8qrpwIjGEx0E=",
    ),
    Example(
        "list-all-buckets",
        "GET",
        "/",
        "",
        [("host", "s3.us-west-1.amazonaws.com"), ("date", "Wed, 28 Mar 2007 01:29:59 +0000")],
        None,
        "GET\n\n\nWed, 28 Mar 2007 01:29:59 +0000\n/",
        "qGdzdERIC03wnaRNKh6OqZehG9s=",
    ),
    Example(
        # The path is signed exactly as sent, mixed-case percent-escapes included.
        "unicode-keys",
        "GET",
        "/dictionary/fran%C3%A7ais/pr%c3%a9f%c3%a8re",
        "",
        [("host", "s3.us-west-1.amazonaws.com"), ("date", "Wed, 28 Mar 2007 01:49:49 +0000")],
        None,
        "GET\n\n\nWed, 28 Mar 2007 01:49:49 +0000\n/dictionary/fran%C3%A7ais/pr%c3%a9f%c3%a8re",
        "DNEZGsoieTZ92F3bUfSPQcbGmlM=",
    ),
]


def authenticate_example(
    example: Example,
    *,
    signature: str | None = None,
    secret_lookup: Callable[[str], str | None] = lookup,
    now: datetime | None = None,
    **changes: Any,
) -> sigv4.AuthContext:
    fields = {
        "method": example.method,
        "raw_path": example.path,
        "raw_query": example.query,
        "headers": example.request_headers(signature),
        "bucket": example.bucket,
    }
    fields.update(changes)
    return sigv2.authenticate(
        fields["method"],
        fields["raw_path"],
        fields["raw_query"],
        fields["headers"],
        secret_lookup,
        now or example.now,
        bucket=fields["bucket"],
    )


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
def test_aws_example_signature(example: Example) -> None:
    assert sigv2.sign(SK, example.string_to_sign) == example.signature


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
def test_aws_example_is_accepted(example: Example) -> None:
    ctx = authenticate_example(example)
    assert ctx.access_key == AK
    assert ctx.presigned is False
    assert ctx.payload_hash == "UNSIGNED-PAYLOAD"
    assert ctx.signing_key == b""
    assert ctx.seed_signature == ""
    assert ctx.scope == ""
    assert ctx.amz_date == example.now.strftime("%Y%m%dT%H%M%SZ")


@pytest.mark.parametrize(
    "example", [e for e in EXAMPLES if e.name != "delete-x-amz-date"], ids=lambda e: e.name
)
def test_aws_example_wrong_secret_reports_documented_string_to_sign(example: Example) -> None:
    exc = raises_without_leak(
        SignatureDoesNotMatch,
        lambda: authenticate_example(example, secret_lookup=lambda _: "another secret"),
    )
    assert exc.status == 403
    assert exc.extra["StringToSign"] == example.string_to_sign
    assert exc.extra["SignatureProvided"] == example.signature
    assert exc.extra["AWSAccessKeyId"] == AK
    assert exc.extra["StringToSignBytes"] == example.string_to_sign.encode().hex(" ")


def test_x_amz_date_documented_rule_is_accepted_too() -> None:
    """The rule as the guide states it (and s3cmd/boto2 sign): empty Date line."""
    headers: Headers = [("x-amz-date", "Tue, 27 Mar 2007 21:20:26 +0000"), ("date", "garbage")]
    to_sign = (
        "DELETE\n\n\n\nx-amz-date:Tue, 27 Mar 2007 21:20:26 +0000\n"
        "/awsexamplebucket1/photos/puppy.jpg"
    )
    signature = sigv2.sign(SK, to_sign)
    headers.append(("authorization", f"AWS {AK}:{signature}"))
    now = datetime(2007, 3, 27, 21, 20, 26, tzinfo=UTC)
    ctx = sigv2.authenticate(
        "DELETE", "/awsexamplebucket1/photos/puppy.jpg", "", headers, lookup, now
    )
    assert ctx.amz_date == "20070327T212026Z"
    # The reported string to sign is the documented rule's.
    headers[-1] = ("authorization", f"AWS {AK}:{sigv2.sign('x', to_sign)}")
    exc = raises_without_leak(
        SignatureDoesNotMatch,
        lambda: sigv2.authenticate(
            "DELETE", "/awsexamplebucket1/photos/puppy.jpg", "", headers, lookup, now
        ),
    )
    assert exc.extra["StringToSign"] == to_sign


def test_x_amz_date_wins_over_date_for_the_clock() -> None:
    example = EXAMPLES[4]
    # Date is a day off, x-amz-date is right: fine. The other way round: too skewed.
    assert authenticate_example(example, now=example.now).access_key == AK
    shifted = [
        (n, "Wed, 28 Mar 2007 21:20:27 +0000" if n == "date" else v) for n, v in example.headers
    ]
    headers = [*shifted, ("authorization", f"AWS {AK}:{example.signature}")]
    assert authenticate_example(example, headers=headers).access_key == AK
    raises_without_leak(
        RequestTimeTooSkewed,
        lambda: authenticate_example(example, now=example.now + timedelta(days=1)),
    )


# ------------------------------------------------------------- AWS presigned example

QUERY_EXAMPLE = f"AWSAccessKeyId={AK}&Expires=1175139620&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D"
QUERY_EXPIRES = datetime.fromtimestamp(1175139620, UTC)


def presigned_example(
    query: str = QUERY_EXAMPLE, now: datetime | None = None
) -> Callable[[], sigv4.AuthContext]:
    return lambda: sigv2.authenticate(
        "GET",
        "/photos/puppy.jpg",
        query,
        [("host", "johnsmith.s3.amazonaws.com")],
        lookup,
        now or QUERY_EXPIRES - timedelta(hours=1),
        bucket="johnsmith",
    )


def test_aws_presigned_example() -> None:
    assert sigv2.sign(SK, "GET\n\n\n1175139620\n/johnsmith/photos/puppy.jpg") == (
        "NpgCjnDzrM+WFzoENXmpNDUsSn8="
    )
    ctx = presigned_example()()
    assert ctx.presigned is True
    assert ctx.access_key == AK
    assert ctx.payload_hash == "UNSIGNED-PAYLOAD"
    assert ctx.signing_key == b"" and ctx.scope == "" and ctx.amz_date == ""


def test_aws_presigned_example_expiry_boundary() -> None:
    presigned_example(now=QUERY_EXPIRES)()
    # Presigned URLs are not subject to the clock-skew window: a year early is fine.
    presigned_example(now=QUERY_EXPIRES - timedelta(days=365))()
    exc = raises_without_leak(
        AccessDenied, presigned_example(now=QUERY_EXPIRES + timedelta(seconds=1))
    )
    assert exc.message == "Request has expired"
    assert exc.extra["Expires"] == "2007-03-29T03:40:20Z"
    assert exc.extra["ServerTime"] == "2007-03-29T03:40:21Z"


@pytest.mark.parametrize(
    "query",
    [
        QUERY_EXAMPLE.replace("1175139620", "1175139621"),
        QUERY_EXAMPLE.replace("Npg", "Npf"),
        QUERY_EXAMPLE + "&acl",
        QUERY_EXAMPLE + "&versionId=1",
        QUERY_EXAMPLE + "&response-content-type=text/html",
        QUERY_EXAMPLE + "&x-amz-acl=public-read",
        QUERY_EXAMPLE + "&content-type=text/plain",
    ],
)
def test_aws_presigned_example_tampered(query: str) -> None:
    raises_without_leak(SignatureDoesNotMatch, presigned_example(query))


def test_presigned_signature_with_raw_plus_and_equals() -> None:
    # '+' is never read as a space (a base64 signature has none), so an unencoded one works.
    presigned_example(QUERY_EXAMPLE.replace("%2B", "+").replace("%3D", "="))()
    raises_without_leak(
        SignatureDoesNotMatch, presigned_example(QUERY_EXAMPLE.replace("%2B", "%20"))
    )


def test_presigned_unsigned_query_parameters_are_free() -> None:
    # Anything that is neither a sub-resource nor a header stand-in is not signed.
    presigned_example(QUERY_EXAMPLE + "&foo=bar&prefix=x&list-type=2")()


# ---------------------------------------------------------------- resource and headers


@pytest.mark.parametrize(
    ("path", "query", "bucket", "expected"),
    [
        ("/b/k", "", None, "/b/k"),
        ("", "", None, "/"),
        ("/", "", "b", "/b/"),
        ("/k%20x", "", "b", "/b/k%20x"),
        ("/b", "uploads", None, "/b?uploads"),
        ("/b", "uploads=", None, "/b?uploads="),
        ("/b/k", "uploadId=u%2F1&partNumber=3", None, "/b/k?partNumber=3&uploadId=u/1"),
        ("/b/k", "versionId=v+1", None, "/b/k?versionId=v+1"),
        (
            "/b/k",
            "response-content-disposition=attachment%3B%20filename%3D%22a%20b%22&x=1",
            None,
            '/b/k?response-content-disposition=attachment; filename="a b"',
        ),
        ("/b", "prefix=a&delimiter=%2F&max-keys=5&list-type=2", None, "/b"),
        ("/b", "tagging&acl&cors", None, "/b?acl&cors&tagging"),
        ("/b", "ACL", None, "/b"),  # names are case-sensitive
        ("/b", "delete", None, "/b?delete"),
    ],
)
def test_canonical_resource(path: str, query: str, bucket: str | None, expected: str) -> None:
    assert sigv2.canonical_resource(path, query, bucket) == expected


def test_canonical_amz_headers() -> None:
    headers = [
        ("X-Amz-Meta-B", "  2 "),
        ("x-amz-meta-a", "1"),
        ("x-amz-meta-b", "3"),
        ("content-type", "text/plain"),
        ("x-amz-meta-folded", "one\r\n  two"),
        ("x-amz-meta-inner", "a  b"),
    ]
    assert sigv2.canonical_amz_headers(headers) == (
        "x-amz-meta-a:1\nx-amz-meta-b:2,3\nx-amz-meta-folded:one two\nx-amz-meta-inner:a  b\n"
    )
    assert sigv2.canonical_amz_headers([]) == ""


def test_string_to_sign_layout() -> None:
    assert sigv2.string_to_sign(
        "PUT", "md5", "text/plain", "DATE", [("x-amz-acl", "private")], "/b/k?acl"
    ) == ("PUT\nmd5\ntext/plain\nDATE\nx-amz-acl:private\n/b/k?acl")


# ------------------------------------------------------------------ botocore clients


class _Raw:
    # An XML body every operation's parser accepts (GetBucketLocation insists on one).
    def stream(self, **_: Any) -> Iterator[bytes]:
        return iter([b"<LocationConstraint/>"])


class CapturingClient:
    """A boto3 client whose requests are captured instead of sent."""

    def __init__(self, *, addressing: str = "path", secret: str = SK) -> None:
        endpoint = "http://s3.localhost:9000"
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=AK,
            aws_secret_access_key=secret,
            region_name="us-east-1",
            config=Config(signature_version="s3", s3={"addressing_style": addressing}),
        )
        self.sent: list[Any] = []
        self.client.meta.events.register("before-send.s3", self._capture)

    def _capture(self, request: Any, **_: Any) -> AWSResponse:
        self.sent.append(request)
        return AWSResponse(request.url, 200, {}, _Raw())

    def last(self) -> tuple[str, str, str, Headers, str | None]:
        """(method, raw path, raw query, headers as the gateway sees them, host bucket)."""
        request = self.sent[-1]
        url = urlsplit(request.url)
        headers = [
            (k.lower(), v.decode("latin-1") if isinstance(v, bytes) else v)
            for k, v in request.headers.items()
        ]
        host = url.hostname or ""
        bucket = host.removesuffix(".s3.localhost") if host != "s3.localhost" else None
        return request.method, url.path, url.query, headers, bucket


KEYS = ["plain.txt", "dir/with space/é ü.txt", "a+b=c&d?e#f", "%41 percent", "~!$'()*,;:@"]

OPERATIONS: list[tuple[str, Callable[[Any, str], object]]] = [
    (
        "put_object",
        lambda c, k: c.put_object(
            Bucket="bkt",
            Key=k,
            Body=b"data",
            ContentType="text/plain",
            Metadata={"mtime": "1700000000", "name": "x y"},
            ACL="public-read",
        ),
    ),
    ("get_object", lambda c, k: c.get_object(Bucket="bkt", Key=k, Range="bytes=0-1")),
    ("get_object_version", lambda c, k: c.get_object(Bucket="bkt", Key=k, VersionId="v 1/+")),
    (
        "get_object_overrides",
        lambda c, k: c.get_object(
            Bucket="bkt",
            Key=k,
            ResponseContentType="text/html; charset=utf-8",
            ResponseContentDisposition='attachment; filename="ü.txt"',
            ResponseCacheControl="no-cache",
        ),
    ),
    ("head_object", lambda c, k: c.head_object(Bucket="bkt", Key=k)),
    ("put_object_acl", lambda c, k: c.put_object_acl(Bucket="bkt", Key=k, ACL="private")),
    ("get_object_tagging", lambda c, k: c.get_object_tagging(Bucket="bkt", Key=k)),
    ("create_multipart_upload", lambda c, k: c.create_multipart_upload(Bucket="bkt", Key=k)),
    (
        "upload_part",
        lambda c, k: c.upload_part(
            Bucket="bkt", Key=k, UploadId="up/load+id=", PartNumber=7, Body=b"x"
        ),
    ),
    (
        "copy_object",
        lambda c, k: c.copy_object(
            Bucket="bkt",
            Key=k,
            CopySource={"Bucket": "src", "Key": "s k"},
            MetadataDirective="REPLACE",
        ),
    ),
    ("delete_object", lambda c, k: c.delete_object(Bucket="bkt", Key=k)),
]
BUCKET_OPERATIONS: list[tuple[str, Callable[[Any], object]]] = [
    ("list_objects", lambda c: c.list_objects(Bucket="bkt", Prefix="a b/", Delimiter="/")),
    ("list_objects_v2", lambda c: c.list_objects_v2(Bucket="bkt", StartAfter="é")),
    ("list_object_versions", lambda c: c.list_object_versions(Bucket="bkt")),
    ("list_multipart_uploads", lambda c: c.list_multipart_uploads(Bucket="bkt")),
    ("get_bucket_location", lambda c: c.get_bucket_location(Bucket="bkt")),
    ("get_bucket_versioning", lambda c: c.get_bucket_versioning(Bucket="bkt")),
    ("get_bucket_lifecycle", lambda c: c.get_bucket_lifecycle_configuration(Bucket="bkt")),
    ("get_bucket_cors", lambda c: c.get_bucket_cors(Bucket="bkt")),
    ("get_bucket_policy", lambda c: c.get_bucket_policy(Bucket="bkt")),
    (
        "delete_objects",
        lambda c: c.delete_objects(
            Bucket="bkt", Delete={"Objects": [{"Key": "a"}, {"Key": "b c"}]}
        ),
    ),
    ("create_bucket", lambda c: c.create_bucket(Bucket="bkt")),
    ("list_buckets", lambda c: c.list_buckets()),
]


def _accept_last(client: CapturingClient) -> sigv4.AuthContext:
    method, path, query, headers, bucket = client.last()
    assert any(name == "authorization" and value.startswith("AWS ") for name, value in headers)
    return sigv2.authenticate(
        method, path, query, headers, lookup, datetime.now(UTC), bucket=bucket
    )


@pytest.mark.parametrize("addressing", ["path", "virtual"])
@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize(("name", "operation"), OPERATIONS, ids=[n for n, _ in OPERATIONS])
def test_botocore_hmacv1_object_requests(
    addressing: str, key: str, name: str, operation: Callable[[Any, str], object]
) -> None:
    client = CapturingClient(addressing=addressing)
    operation(client.client, key)
    ctx = _accept_last(client)
    assert ctx.access_key == AK and not ctx.presigned


@pytest.mark.parametrize("addressing", ["path", "virtual"])
@pytest.mark.parametrize(
    ("name", "operation"), BUCKET_OPERATIONS, ids=[n for n, _ in BUCKET_OPERATIONS]
)
def test_botocore_hmacv1_bucket_requests(
    addressing: str, name: str, operation: Callable[[Any], object]
) -> None:
    client = CapturingClient(addressing=addressing)
    operation(client.client)
    _accept_last(client)


def test_botocore_virtual_host_request_needs_the_bucket() -> None:
    client = CapturingClient(addressing="virtual")
    client.client.get_object(Bucket="bkt", Key="k")
    method, path, query, headers, bucket = client.last()
    assert bucket == "bkt" and path == "/k"
    raises_without_leak(
        SignatureDoesNotMatch,
        lambda: sigv2.authenticate(method, path, query, headers, lookup, datetime.now(UTC)),
    )


def test_botocore_wrong_secret() -> None:
    client = CapturingClient(secret="not the secret")
    client.client.get_object(Bucket="bkt", Key="k")
    raises_without_leak(SignatureDoesNotMatch, lambda: _accept_last(client))


def _tampered(
    change: Callable[[str, str, str, Headers], tuple[str, str, str, Headers]],
) -> Callable[[], object]:
    client = CapturingClient()
    client.client.put_object(
        Bucket="bkt",
        Key="dir/k",
        Body=b"data",
        ContentType="text/plain",
        ContentMD5="jXd/OF09/siBXSD3SWAm3A==",
        Metadata={"a": "1"},
    )
    method, path, query, headers, _ = client.last()
    method, path, query, headers = change(method, path, query, headers)
    return lambda: sigv2.authenticate(method, path, query, headers, lookup, datetime.now(UTC))


def _set(headers: Headers, name: str, value: str) -> Headers:
    return [(n, value if n == name else v) for n, v in headers]


TAMPERING: dict[str, Callable[[str, str, str, Headers], tuple[str, str, str, Headers]]] = {
    "method": lambda m, p, q, h: ("POST", p, q, h),
    "path": lambda m, p, q, h: (m, p + "x", q, h),
    "path-case": lambda m, p, q, h: (m, p.upper(), q, h),
    "path-encoding": lambda m, p, q, h: (m, p.replace("/k", "/%6B"), q, h),
    "subresource-added": lambda m, p, q, h: (m, p, "acl", h),
    "content-type": lambda m, p, q, h: (m, p, q, _set(h, "content-type", "text/html")),
    "content-type-removed": lambda m, p, q, h: (m, p, q, [x for x in h if x[0] != "content-type"]),
    "content-md5": lambda m, p, q, h: (m, p, q, _set(h, "content-md5", "1B2M2Y8AsgTpgAmY7PhCfg==")),
    "metadata-changed": lambda m, p, q, h: (m, p, q, _set(h, "x-amz-meta-a", "2")),
    "metadata-added": lambda m, p, q, h: (m, p, q, [*h, ("x-amz-meta-b", "1")]),
    "copy-source-added": lambda m, p, q, h: (m, p, q, [*h, ("x-amz-copy-source", "/o/k")]),
    "date-changed": lambda m, p, q, h: (
        m,
        p,
        q,
        _set(h, "date", http_date(datetime.now(UTC) - timedelta(minutes=1))),
    ),
    "signature": lambda m, p, q, h: (
        m,
        p,
        q,
        [
            (n, v[:-3] + ("A==" if v[-3] != "A" else "B==")) if n == "authorization" else (n, v)
            for n, v in h
        ],
    ),
}


@pytest.mark.parametrize("what", sorted(TAMPERING))
def test_tampering_is_detected(what: str) -> None:
    raises_without_leak(SignatureDoesNotMatch, _tampered(TAMPERING[what]))


def test_untampered_reference_is_accepted() -> None:
    _tampered(lambda m, p, q, h: (m, p, q, h))()


def test_unsigned_headers_and_parameters_do_not_matter() -> None:
    def change(m: str, p: str, q: str, h: Headers) -> tuple[str, str, str, Headers]:
        return m, p, "foo=bar", [*h, ("user-agent", "other"), ("range", "bytes=1-2")]

    _tampered(change)()


# --------------------------------------------------------------- presigned by boto3


def presign(
    operation: str, params: dict[str, Any], *, addressing: str = "path", expires: int = 3600
) -> tuple[str, str, str | None]:
    client = CapturingClient(addressing=addressing)
    url = urlsplit(
        client.client.generate_presigned_url(operation, Params=params, ExpiresIn=expires)
    )
    host = url.hostname or ""
    bucket = host.removesuffix(".s3.localhost") if host != "s3.localhost" else None
    return url.path, url.query, bucket


PRESIGNED: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "get_object", {"Bucket": "bkt", "Key": "dir/é ü+x.txt"}),
    ("GET", "get_object", {"Bucket": "bkt", "Key": "k", "VersionId": "3/L4kqtJl+cr=="}),
    (
        "GET",
        "get_object",
        {
            "Bucket": "bkt",
            "Key": "k",
            "ResponseContentDisposition": 'attachment; filename="a b&c.txt"',
            "ResponseContentType": "application/octet-stream",
            "ResponseExpires": datetime(2030, 1, 1, tzinfo=UTC),
        },
    ),
    ("HEAD", "head_object", {"Bucket": "bkt", "Key": "a key"}),
    ("DELETE", "delete_object", {"Bucket": "bkt", "Key": "k"}),
    ("PUT", "put_object", {"Bucket": "bkt", "Key": "up/load.bin"}),
    (
        "PUT",
        "upload_part",
        {"Bucket": "bkt", "Key": "k", "UploadId": "id+/=", "PartNumber": 2},
    ),
]


@pytest.mark.parametrize("addressing", ["path", "virtual"])
@pytest.mark.parametrize(("method", "operation", "params"), PRESIGNED)
def test_boto3_presigned_urls(
    addressing: str, method: str, operation: str, params: dict[str, Any]
) -> None:
    path, query, bucket = presign(operation, params, addressing=addressing)
    assert "AWSAccessKeyId=" in query and "Signature=" in query and "Expires=" in query
    headers = [("host", "whatever")]
    ctx = sigv2.authenticate(method, path, query, headers, lookup, datetime.now(UTC), bucket=bucket)
    assert ctx.presigned is True and ctx.access_key == AK
    # The same URL with another method is refused.
    other = "POST" if method != "POST" else "GET"
    raises_without_leak(
        SignatureDoesNotMatch,
        lambda: sigv2.authenticate(
            other, path, query, headers, lookup, datetime.now(UTC), bucket=bucket
        ),
    )


def test_boto3_presigned_put_with_signed_headers_in_the_query() -> None:
    params = {
        "Bucket": "bkt",
        "Key": "k",
        "ContentType": "text/plain",
        "ACL": "public-read",
        "Metadata": {"owner": "a b"},
    }
    path, query, _ = presign("put_object", params)
    assert "content-type=" in query and "x-amz-acl=" in query and "x-amz-meta-owner=" in query
    now = datetime.now(UTC)
    # The uploader may send no headers at all, or the same ones as real headers.
    for headers in (
        [],
        [("content-type", "text/plain")],
        [("content-type", "text/plain"), ("x-amz-acl", "public-read")],
    ):
        sigv2.authenticate("PUT", path, query, headers, lookup, now)
    # A different Content-Type header is what S3 signs, so it no longer matches.
    raises_without_leak(
        SignatureDoesNotMatch,
        lambda: sigv2.authenticate(
            "PUT", path, query, [("content-type", "text/html")], lookup, now
        ),
    )
    # Dropping a signed stand-in from the query is caught too.
    stripped = "&".join(p for p in query.split("&") if not p.startswith("x-amz-acl="))
    raises_without_leak(
        SignatureDoesNotMatch,
        lambda: sigv2.authenticate("PUT", path, stripped, [], lookup, now),
    )
    # An extra x-amz-* header the URL did not sign is caught.
    raises_without_leak(
        SignatureDoesNotMatch,
        lambda: sigv2.authenticate(
            "PUT", path, query, [("x-amz-server-side-encryption", "AES256")], lookup, now
        ),
    )


def test_boto3_presigned_url_expires() -> None:
    path, query, _ = presign("get_object", {"Bucket": "bkt", "Key": "k"}, expires=60)
    expires = int(dict(p.split("=", 1) for p in query.split("&"))["Expires"])
    at = datetime.fromtimestamp(expires, UTC)
    sigv2.authenticate("GET", path, query, [], lookup, at)
    exc = raises_without_leak(
        AccessDenied,
        lambda: sigv2.authenticate("GET", path, query, [], lookup, at + timedelta(seconds=1)),
    )
    assert exc.message == "Request has expired"


# ------------------------------------------------------------------------ error cases


def _header_request(
    authorization: str | None = None,
    date: str | None = "Tue, 27 Mar 2007 19:36:42 +0000",
    **kw: Any,
) -> Callable[[], object]:
    headers: Headers = [("host", "awsexamplebucket1.s3.amazonaws.com")]
    if date is not None:
        headers.append(("date", date))
    if authorization is not None:
        headers.append(("authorization", authorization))
    headers.extend(kw.pop("extra", []))
    now = kw.pop("now", EXAMPLES[0].now)
    return lambda: sigv2.authenticate(
        "GET", "/photos/puppy.jpg", "", headers, lookup, now, bucket="awsexamplebucket1", **kw
    )


GOOD = f"AWS {AK}:qgk2+6Sv9/oM7G3qLEjTH1a1l1g="


@pytest.mark.parametrize(
    "value",
    [
        "AWS",
        "AWS ",
        f"AWS {AK}",
        f"AWS {AK}:",
        "AWS :sig",
        f"AWS4 {AK}:sig",
        f"aws {AK}:sig",
        "Basic x",
    ],
)
def test_malformed_authorization_header(value: str) -> None:
    exc = raises_without_leak(InvalidArgument, _header_request(value))
    assert exc.status == 400
    assert exc.extra["ArgumentName"] == "Authorization"


def test_two_authorization_headers() -> None:
    raises_without_leak(InvalidArgument, _header_request(GOOD, extra=[("authorization", GOOD)]))


def test_good_header_request_and_extra_spaces() -> None:
    _header_request(GOOD)()
    _header_request(f"AWS   {AK}:qgk2+6Sv9/oM7G3qLEjTH1a1l1g=  ")()


@pytest.mark.parametrize("date", [None, "", "yesterday", "Tue, 32 Mar 2007 19:36:42 +0000"])
def test_missing_or_bad_date(date: str | None) -> None:
    exc = raises_without_leak(AccessDenied, _header_request(GOOD, date=date))
    assert "Date" in exc.message


def test_two_date_headers() -> None:
    raises_without_leak(
        AccessDenied, _header_request(GOOD, extra=[("date", "Tue, 27 Mar 2007 19:36:42 +0000")])
    )


@pytest.mark.parametrize("minutes", [-16, 16, 60 * 24 * 365])
def test_request_time_too_skewed(minutes: int) -> None:
    now = EXAMPLES[0].now + timedelta(minutes=minutes)
    exc = raises_without_leak(RequestTimeTooSkewed, _header_request(GOOD, now=now))
    assert exc.status == 403
    assert exc.extra["RequestTime"] == "Tue, 27 Mar 2007 19:36:42 +0000"
    assert exc.extra["MaxAllowedSkewMilliseconds"] == "900000"


@pytest.mark.parametrize("minutes", [-15, 15])
def test_skew_within_window(minutes: int) -> None:
    _header_request(GOOD, now=EXAMPLES[0].now + timedelta(minutes=minutes))()


def test_custom_max_skew_and_naive_now() -> None:
    now = EXAMPLES[0].now + timedelta(minutes=2)
    raises_without_leak(
        RequestTimeTooSkewed, _header_request(GOOD, now=now, max_skew=timedelta(minutes=1))
    )
    _header_request(GOOD, now=now.replace(tzinfo=None))()


def test_unknown_access_key() -> None:
    exc = raises_without_leak(
        InvalidAccessKeyId, _header_request("AWS AKIDUNKNOWN:qgk2+6Sv9/oM7G3qLEjTH1a1l1g=")
    )
    assert exc.extra["AWSAccessKeyId"] == "AKIDUNKNOWN"
    query = QUERY_EXAMPLE.replace(AK, "AKIDUNKNOWN")
    raises_without_leak(InvalidAccessKeyId, presigned_example(query))


@pytest.mark.parametrize(
    "signature",
    [
        "qgk2+6Sv9/oM7G3qLEjTH1a1l1g",
        "QGK2+6Sv9/oM7G3qLEjTH1a1l1g=",
        "é" * 28,
        "x",
        "qgk2+6Sv9/oM7G3qLEjTH1a1l1g==",
    ],
)
def test_wrong_signature_forms(signature: str) -> None:
    raises_without_leak(SignatureDoesNotMatch, _header_request(f"AWS {AK}:{signature}"))


@pytest.mark.parametrize(
    "query",
    [
        "",
        f"AWSAccessKeyId={AK}",
        f"AWSAccessKeyId={AK}&Expires=1175139620",
        "Expires=1175139620&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D",
        f"AWSAccessKeyId={AK}&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D",
        QUERY_EXAMPLE.replace("Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D", "Signature="),
        QUERY_EXAMPLE.replace(f"AWSAccessKeyId={AK}", "AWSAccessKeyId"),
        QUERY_EXAMPLE + "&Expires=1175139620",
        QUERY_EXAMPLE + f"&AWSAccessKeyId={AK}",
    ],
)
def test_presigned_missing_or_repeated_parameters(query: str) -> None:
    exc = raises_without_leak(AccessDenied, presigned_example(query))
    assert "AWSAccessKeyId" in exc.message


@pytest.mark.parametrize(
    "expires", ["abc", "-1", "1e9", "", " 1175139620", "1175139620.0", "9" * 13]
)
def test_presigned_bad_expires(expires: str) -> None:
    query = QUERY_EXAMPLE.replace("Expires=1175139620", f"Expires={expires}")
    raises_without_leak(AccessDenied, presigned_example(query))


def test_header_auth_wins_over_query_in_direct_calls() -> None:
    # sigv4.authenticate rejects requests that carry both; called directly, the header counts.
    example = EXAMPLES[0]
    ctx = authenticate_example(example, raw_query=QUERY_EXAMPLE)
    assert ctx.presigned is False


def test_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(sigv2.hmac, "compare_digest", spy)
    authenticate_example(EXAMPLES[0])
    assert calls == [(b"qgk2+6Sv9/oM7G3qLEjTH1a1l1g=", b"qgk2+6Sv9/oM7G3qLEjTH1a1l1g=")]
    calls.clear()
    # With x-amz-date both arrangements are always compared, whichever matches.
    authenticate_example(EXAMPLES[4])
    assert len(calls) == 2


def test_sign_is_hmac_sha1_base64() -> None:
    expected = hmac.new(b"key", b"text", hashlib.sha1).digest()
    assert sigv2.sign("key", "text") == base64.b64encode(expected).decode()
