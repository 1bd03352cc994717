"""AWS Signature Version 4 verification (s3compat.api.sigv4) and the credential store.

Known answers come from AWS's published S3 examples and the generic SigV4 test suite; the
client-compatibility half signs real requests with botocore and checks we accept them, and
that tampering with any signed part is caught.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import boto3
import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from s3compat.api import sigv4
from s3compat.api.credentials import CredentialsError, CredentialStore
from s3compat.core.errors import (
    AccessDenied,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    InvalidAccessKeyId,
    InvalidArgument,
    InvalidRequest,
    RequestTimeTooSkewed,
    S3Error,
    SignatureDoesNotMatch,
)

Headers = list[tuple[str, str]]

# ------------------------------------------------------------------------------ helpers

EX_AK = "AKIAIOSFODNN7EXAMPLE"
EX_SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
EX_NOW = datetime(2013, 5, 24, tzinfo=UTC)
EX_DATE = "20130524T000000Z"
EX_HOST = "examplebucket.s3.amazonaws.com"
EX_SCOPE = "20130524/us-east-1/s3/aws4_request"
EMPTY = sigv4.EMPTY_SHA256


def ex_lookup(access_key: str) -> str | None:
    return EX_SK if access_key == EX_AK else None


def authorization(
    signed_headers: str, signature: str, *, credential: str = f"{EX_AK}/{EX_SCOPE}"
) -> str:
    return (
        f"AWS4-HMAC-SHA256 Credential={credential},SignedHeaders={signed_headers},"
        f"Signature={signature}"
    )


def raises_without_leak(error: type[S3Error], call: Callable[[], object], *secrets: str) -> S3Error:
    """Assert `call` raises `error`, and that no secret shows in its message or extra."""
    with pytest.raises(error) as info:
        call()
    exc = info.value
    texts = [str(exc), exc.message, repr(exc), *exc.extra.values()]
    for secret in (EX_SK, *secrets):
        for text in texts:
            assert secret not in text
    return exc


# ------------------------------------------------------------- AWS S3 published examples


@dataclass(frozen=True)
class S3Example:
    name: str
    method: str
    path: str
    query: str
    headers: Headers
    signed_headers: str
    canonical_request: str
    canonical_request_sha256: str
    signature: str


def _creq(*lines: str) -> str:
    return "\n".join(lines)


S3_EXAMPLES = [
    S3Example(
        name="get-object-range",
        method="GET",
        path="/test.txt",
        query="",
        headers=[
            ("host", EX_HOST),
            ("range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY),
            ("x-amz-date", EX_DATE),
        ],
        signed_headers="host;range;x-amz-content-sha256;x-amz-date",
        canonical_request=_creq(
            "GET",
            "/test.txt",
            "",
            f"host:{EX_HOST}",
            "range:bytes=0-9",
            f"x-amz-content-sha256:{EMPTY}",
            f"x-amz-date:{EX_DATE}",
            "",
            "host;range;x-amz-content-sha256;x-amz-date",
            EMPTY,
        ),
        canonical_request_sha256="7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972",
        signature="f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
    ),
    S3Example(
        name="put-object",
        method="PUT",
        path="/test%24file.text",
        query="",
        headers=[
            ("host", EX_HOST),
            ("date", "Fri, 24 May 2013 00:00:00 GMT"),
            ("x-amz-date", EX_DATE),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("x-amz-content-sha256", hashlib.sha256(b"Welcome to Amazon S3.").hexdigest()),
        ],
        signed_headers="date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
        canonical_request=_creq(
            "PUT",
            "/test%24file.text",
            "",
            "date:Fri, 24 May 2013 00:00:00 GMT",
            f"host:{EX_HOST}",
            "x-amz-content-sha256:44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
            f"x-amz-date:{EX_DATE}",
            "x-amz-storage-class:REDUCED_REDUNDANCY",
            "",
            "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
        ),
        canonical_request_sha256="9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d",
        signature="98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
    ),
    S3Example(
        name="get-bucket-lifecycle",
        method="GET",
        path="/",
        query="lifecycle",
        headers=[("host", EX_HOST), ("x-amz-date", EX_DATE), ("x-amz-content-sha256", EMPTY)],
        signed_headers="host;x-amz-content-sha256;x-amz-date",
        canonical_request=_creq(
            "GET",
            "/",
            "lifecycle=",
            f"host:{EX_HOST}",
            f"x-amz-content-sha256:{EMPTY}",
            f"x-amz-date:{EX_DATE}",
            "",
            "host;x-amz-content-sha256;x-amz-date",
            EMPTY,
        ),
        canonical_request_sha256="9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf79c77395ca",
        signature="fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
    ),
    S3Example(
        name="get-bucket-list-objects",
        method="GET",
        path="/",
        # Sent out of order on purpose: the canonical form sorts.
        query="prefix=J&max-keys=2",
        headers=[("host", EX_HOST), ("x-amz-date", EX_DATE), ("x-amz-content-sha256", EMPTY)],
        signed_headers="host;x-amz-content-sha256;x-amz-date",
        canonical_request=_creq(
            "GET",
            "/",
            "max-keys=2&prefix=J",
            f"host:{EX_HOST}",
            f"x-amz-content-sha256:{EMPTY}",
            f"x-amz-date:{EX_DATE}",
            "",
            "host;x-amz-content-sha256;x-amz-date",
            EMPTY,
        ),
        canonical_request_sha256="df57d21db20da04d7fa30298dd4488ba3a2b47ca3a489c74750e0f1e7df1b9b7",
        signature="34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
    ),
]


def example_headers(example: S3Example, signature: str | None = None) -> Headers:
    sig = signature or example.signature
    return [*example.headers, ("authorization", authorization(example.signed_headers, sig))]


def example_string_to_sign(example: S3Example) -> str:
    return f"AWS4-HMAC-SHA256\n{EX_DATE}\n{EX_SCOPE}\n{example.canonical_request_sha256}"


@pytest.mark.parametrize("example", S3_EXAMPLES, ids=lambda e: e.name)
def test_aws_example_canonical_request_and_signature(example: S3Example) -> None:
    signed = example.signed_headers.split(";")
    creq = sigv4.canonical_request(
        example.method,
        example.path,
        sigv4.canonical_query_string(example.query),
        sigv4.canonical_headers(example.headers, signed),
        signed,
        dict(example.headers)["x-amz-content-sha256"],
    )
    assert creq == example.canonical_request
    assert hashlib.sha256(creq.encode()).hexdigest() == example.canonical_request_sha256
    to_sign = sigv4.string_to_sign(EX_DATE, EX_SCOPE, creq)
    assert to_sign == example_string_to_sign(example)
    key = sigv4.derive_signing_key(EX_SK, "20130524", "us-east-1", "s3")
    assert sigv4.sign(key, to_sign) == example.signature


@pytest.mark.parametrize("example", S3_EXAMPLES, ids=lambda e: e.name)
def test_aws_example_is_accepted(example: S3Example) -> None:
    ctx = sigv4.authenticate(
        example.method, example.path, example.query, example_headers(example), ex_lookup, EX_NOW
    )
    assert ctx.access_key == EX_AK
    assert ctx.presigned is False
    assert ctx.payload_hash == dict(example.headers)["x-amz-content-sha256"]
    assert ctx.seed_signature == example.signature
    assert ctx.amz_date == EX_DATE
    assert ctx.scope == EX_SCOPE
    assert ctx.signing_key == sigv4.derive_signing_key(EX_SK, "20130524", "us-east-1", "s3")


@pytest.mark.parametrize("example", S3_EXAMPLES, ids=lambda e: e.name)
def test_aws_example_wrong_secret_reports_documented_string_to_sign(example: S3Example) -> None:
    other_secret = "not-the-right-secret/at+all"
    exc = raises_without_leak(
        SignatureDoesNotMatch,
        lambda: sigv4.authenticate(
            example.method,
            example.path,
            example.query,
            example_headers(example),
            lambda _: other_secret,
            EX_NOW,
        ),
        other_secret,
    )
    to_sign = example_string_to_sign(example)
    assert exc.status == 403
    assert exc.extra["AWSAccessKeyId"] == EX_AK
    assert exc.extra["SignatureProvided"] == example.signature
    assert exc.extra["StringToSign"] == to_sign
    assert exc.extra["StringToSignBytes"] == " ".join(f"{b:02x}" for b in to_sign.encode())
    assert exc.extra["CanonicalRequest"] == example.canonical_request


def test_aws_presigned_url_example() -> None:
    query = (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )
    creq = _creq(
        "GET",
        "/test.txt",
        "X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host",
        f"host:{EX_HOST}",
        "",
        "host",
        "UNSIGNED-PAYLOAD",
    )
    to_sign = (
        f"AWS4-HMAC-SHA256\n{EX_DATE}\n{EX_SCOPE}\n"
        "3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58ad04"
    )
    assert (
        sigv4.canonical_query_string(query, drop=frozenset({"X-Amz-Signature"}))
        == creq.split("\n")[2]
    )
    assert sigv4.string_to_sign(EX_DATE, EX_SCOPE, creq) == to_sign
    headers = [("host", EX_HOST)]
    ctx = sigv4.authenticate("GET", "/test.txt", query, headers, ex_lookup, EX_NOW)
    assert ctx.presigned is True
    assert ctx.payload_hash == "UNSIGNED-PAYLOAD"
    assert ctx.seed_signature == "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    assert ctx.scope == EX_SCOPE

    # The same URL with the wrong secret reports the documented string to sign.
    exc = raises_without_leak(
        SignatureDoesNotMatch,
        lambda: sigv4.authenticate("GET", "/test.txt", query, headers, lambda _: "x", EX_NOW),
    )
    assert exc.extra["StringToSign"] == to_sign
    assert exc.extra["CanonicalRequest"] == creq

    # Valid for exactly 86400 s, not one second more.
    last = EX_NOW + timedelta(seconds=86400)
    sigv4.authenticate("GET", "/test.txt", query, headers, ex_lookup, last)
    exc = raises_without_leak(
        AccessDenied,
        lambda: sigv4.authenticate(
            "GET", "/test.txt", query, headers, ex_lookup, last + timedelta(seconds=1)
        ),
    )
    assert exc.message == "Request has expired"


def test_derive_signing_key_matches_aws_general_reference_example() -> None:
    # AWS General Reference, "deriving the signing key" example (IAM, 20120215).
    key = sigv4.derive_signing_key(
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam"
    )
    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"


# ------------------------------------------------------------------ aws-chunked uploads

STREAM_SIGNED_HEADERS = (
    "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
    "x-amz-decoded-content-length;x-amz-storage-class"
)
STREAM_SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"


def streaming_example_headers(seed: str = STREAM_SEED) -> Headers:
    return [
        ("host", "s3.amazonaws.com"),
        ("x-amz-date", EX_DATE),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ("authorization", authorization(STREAM_SIGNED_HEADERS, seed)),
        ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", "66560"),
        ("content-length", "66824"),
    ]


def test_streaming_example_seed_and_chunk_chain() -> None:
    ctx = sigv4.authenticate(
        "PUT", "/examplebucket/chunkObject.txt", "", streaming_example_headers(), ex_lookup, EX_NOW
    )
    assert ctx.payload_hash == "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    assert ctx.seed_signature == STREAM_SEED

    first = hashlib.sha256(b"a" * 65536).hexdigest()
    assert sigv4.chunk_string_to_sign(ctx.amz_date, ctx.scope, STREAM_SEED, first) == "\n".join(
        ["AWS4-HMAC-SHA256-PAYLOAD", EX_DATE, EX_SCOPE, STREAM_SEED, EMPTY, first]
    )
    expected = [
        (b"a" * 65536, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"),
        (b"a" * 1024, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"),
        # The final, empty chunk.
        (b"", "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"),
    ]
    previous = ctx.seed_signature
    for data, signature in expected:
        digest = hashlib.sha256(data).hexdigest()
        assert sigv4.verify_chunk_signature(ctx, previous, digest) == signature
        assert sigv4.verify_chunk_signature(ctx, previous, digest, signature) == signature
        previous = signature


def test_streaming_chunk_tampering_is_detected() -> None:
    ctx = sigv4.authenticate(
        "PUT", "/examplebucket/chunkObject.txt", "", streaming_example_headers(), ex_lookup, EX_NOW
    )
    good = "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
    altered = hashlib.sha256(b"a" * 65535 + b"b").hexdigest()
    raises_without_leak(
        SignatureDoesNotMatch, lambda: sigv4.verify_chunk_signature(ctx, STREAM_SEED, altered, good)
    )
    # Chunks cannot be replayed out of order: the chain includes the previous signature.
    second = hashlib.sha256(b"a" * 1024).hexdigest()
    raises_without_leak(
        SignatureDoesNotMatch,
        lambda: sigv4.verify_chunk_signature(
            ctx,
            STREAM_SEED,
            second,
            "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
        ),
    )
    # Non-ASCII junk as a signature is a mismatch, not a crash.
    raises_without_leak(
        SignatureDoesNotMatch,
        lambda: sigv4.verify_chunk_signature(
            ctx, STREAM_SEED, hashlib.sha256(b"a" * 65536).hexdigest(), "é" * 64
        ),
    )


def test_streaming_trailer_example_chain() -> None:
    signed_headers = (
        "content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;"
        "x-amz-storage-class;x-amz-trailer"
    )
    seed = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
    headers = [
        ("host", "s3.amazonaws.com"),
        ("content-encoding", "aws-chunked"),
        ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"),
        ("x-amz-date", EX_DATE),
        ("x-amz-decoded-content-length", "66560"),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ("x-amz-trailer", "x-amz-checksum-crc32c"),
        ("authorization", authorization(signed_headers, seed)),
    ]
    ctx = sigv4.authenticate(
        "PUT", "/examplebucket/chunkObject.txt", "", headers, ex_lookup, EX_NOW
    )
    assert ctx.payload_hash == "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
    previous = seed
    for data, signature in [
        (b"a" * 65536, "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2"),
        (b"a" * 1024, "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7"),
        (b"", "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992"),
    ]:
        previous = sigv4.verify_chunk_signature(
            ctx, previous, hashlib.sha256(data).hexdigest(), signature
        )
    trailer = hashlib.sha256(b"x-amz-checksum-crc32c:sOO8/Q==\n").hexdigest()
    trailer_signature = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"
    assert sigv4.trailer_string_to_sign(ctx.amz_date, ctx.scope, previous, trailer) == "\n".join(
        ["AWS4-HMAC-SHA256-TRAILER", EX_DATE, EX_SCOPE, previous, trailer]
    )
    assert sigv4.verify_trailer_signature(ctx, previous, trailer, trailer_signature) == (
        trailer_signature
    )
    forged = hashlib.sha256(b"x-amz-checksum-crc32c:AAAAAA==\n").hexdigest()
    raises_without_leak(
        SignatureDoesNotMatch,
        lambda: sigv4.verify_trailer_signature(ctx, previous, forged, trailer_signature),
    )


def test_trailer_signature_published_vector() -> None:
    ctx = sigv4.AuthContext(
        access_key=EX_AK,
        presigned=False,
        payload_hash="STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        signing_key=sigv4.derive_signing_key(EX_SK, "20130524", "us-east-1", "s3"),
        seed_signature="unused",
        amz_date=EX_DATE,
        scope=EX_SCOPE,
    )
    previous = "e05ab64fe1dfdbf0b5870abbaabdb063c371d4e96f2767e6934d90529c5ae850"
    trailer = hashlib.sha256(b"x-amz-checksum-crc32c:wdBDMA==\n").hexdigest()
    assert (
        sigv4.verify_trailer_signature(ctx, previous, trailer)
        == "41e14ac611e27a8bb3d66c3bad6856f209297767d5dd4fc87d8fa9e422e03faf"
    )


# --------------------------------------------------------- generic SigV4 suite vectors

SUITE_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SUITE_SCOPE = "20150830/us-east-1/service/aws4_request"
SUITE_DATE = "20150830T123600Z"

# (name, request-line path, request-line query, extra headers, published signature). Only
# cases whose rules S3 shares: the "-unnormalized" variants, because S3 does not normalise
# paths. Paths/queries are written as in the suite (raw) and percent-encoded below the way
# an HTTP client puts them on the wire.
SUITE_VECTORS: list[tuple[str, str, str, Headers, str]] = [
    (
        "get-vanilla",
        "/",
        "",
        [],
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    ),
    (
        "get-vanilla-query-order-key-case",
        "/",
        "Param2=value2&Param1=value1",
        [],
        "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
    ),
    (
        "get-vanilla-query-unreserved",
        "/",
        "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz="
        "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        [],
        "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197",
    ),
    (
        "get-vanilla-empty-query-key",
        "/",
        "Param1=value1",
        [],
        "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb",
    ),
    (
        "get-vanilla-utf8-query",
        "/",
        "\u1234=bar",
        [],
        "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
    ),
    (
        "get-unreserved",
        "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        "",
        [],
        "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
    ),
    (
        "get-utf8",
        "/\u1234",
        "",
        [],
        "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
    ),
    (
        "get-space-unnormalized",
        "/example space/",
        "",
        [],
        "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
    ),
    (
        "get-slashes-unnormalized",
        "//example//",
        "",
        [],
        "87cca117541a147f6df867677d98a7d80dff226d2bfca9e4ffa899665623c7e5",
    ),
    (
        "get-relative-relative-unnormalized",
        "/example1/example2/../..",
        "",
        [],
        "dc33e0856fd4baca4d7aa2146c38958283844764f38c74252a333df5e613003b",
    ),
    (
        "get-header-value-trim",
        "/",
        "",
        [("my-header1", " value1"), ("my-header2", ' "a   b   c"')],
        "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
    ),
    (
        "get-header-key-duplicate",
        "/",
        "",
        [("my-header1", "value2"), ("my-header1", "value2"), ("my-header1", "value1")],
        "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
    ),
    (
        "get-header-value-order",
        "/",
        "",
        [
            ("my-header1", "value4"),
            ("my-header1", "value1"),
            ("my-header1", "value3"),
            ("my-header1", "value2"),
        ],
        "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01",
    ),
]


def _wire_query(query: str) -> str:
    if not query:
        return ""
    return "&".join(
        "=".join(quote(piece, safe="") for piece in pair.split("=", 1)) for pair in query.split("&")
    )


@pytest.mark.parametrize(
    ("path", "query", "extra", "signature"),
    [v[1:] for v in SUITE_VECTORS],
    ids=[v[0] for v in SUITE_VECTORS],
)
def test_generic_suite_vector(path: str, query: str, extra: Headers, signature: str) -> None:
    headers = [("host", "example.amazonaws.com"), *extra, ("x-amz-date", SUITE_DATE)]
    signed = sorted({name for name, _ in headers})
    creq = sigv4.canonical_request(
        "GET",
        quote(path, safe="/"),
        sigv4.canonical_query_string(_wire_query(query)),
        sigv4.canonical_headers(headers, signed),
        signed,
        EMPTY,
    )
    key = sigv4.derive_signing_key(SUITE_SECRET, "20150830", "us-east-1", "service")
    assert sigv4.sign(key, sigv4.string_to_sign(SUITE_DATE, SUITE_SCOPE, creq)) == signature


def test_generic_suite_canonical_forms() -> None:
    # get-header-value-trim: values trimmed, inner runs of spaces collapsed.
    headers = [
        ("host", "example.amazonaws.com"),
        ("my-header1", " value1"),
        ("my-header2", ' "a   b   c"'),
    ]
    assert sigv4.canonical_headers(headers, ["host", "my-header1", "my-header2"]) == (
        'host:example.amazonaws.com\nmy-header1:value1\nmy-header2:"a b c"\n'
    )
    # Unnormalised paths are signed as they are; an empty path is "/".
    assert sigv4.canonical_request("GET", "//example//", "", "", ["host"], EMPTY).split("\n")[
        1
    ] == ("//example//")
    assert sigv4.canonical_request("GET", "", "", "", ["host"], EMPTY).split("\n")[1] == "/"


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("", ""),
        ("acl", "acl="),
        ("b=2&a=1&a=0", "a=0&a=1&b=2"),
        # '+' is a literal plus, not a space; encoded either way it comes out as %2B.
        ("k=a+b&j=a%2Bb", "j=a%2Bb&k=a%2Bb"),
        ("k=a%20b", "k=a%20b"),
        # lower-case hex is re-encoded upper-case; needlessly encoded unreserved are decoded.
        ("k=%e2%82%ac%7E%2d", "k=%E2%82%AC~-"),
        ("k=a=b", "k=a%3Db"),
        ("a&&b=1&", "a=&b=1"),
        ("Z=1&a=1&_=1", "Z=1&_=1&a=1"),
        ("k=%2F/", "k=%2F%2F"),
    ],
)
def test_canonical_query_string(raw: str, canonical: str) -> None:
    assert sigv4.canonical_query_string(raw) == canonical


def test_canonical_query_string_drops_only_named_parameters() -> None:
    raw = "X-Amz-Signature=abc&x-amz-signature=keep&a=1"
    assert (
        sigv4.canonical_query_string(raw, drop=frozenset({"X-Amz-Signature"}))
        == "a=1&x-amz-signature=keep"
    )


# -------------------------------------------------------- requests signed by botocore

BOTO_AK = "S3COMPATTESTKEY01"
BOTO_SK = "s3cr3t/with+plus=and/slash"
BOTO_REGION = "eu-west-3"
SIGN_TIME = datetime(2024, 2, 29, 23, 59, 30)  # naive UTC, as botocore uses it
SIGN_NOW = SIGN_TIME.replace(tzinfo=UTC)
ENDPOINT = "http://localhost:9000"

KEYS = [
    "plain.txt",
    "with space.txt",
    "plus+sign",
    "per%cent%20literal",
    "ünïcödé/文件 名.bin",
    "double//slash",
    "trailing/",
    "/leading-slash",
    "sub-delims!$&'()*+,;=:@",
    "tilde~and?question#hash",
    "dots/./and/../parents",
]


def boto_lookup(access_key: str) -> str | None:
    return BOTO_SK if access_key == BOTO_AK else None


@pytest.fixture
def frozen_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make botocore sign at SIGN_TIME, so tests do not depend on the wall clock."""
    import botocore.auth

    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: SIGN_TIME)
    # With awscrt installed botocore signs V4 with its CRT signers, which read the clock
    # through their own module.
    try:
        import botocore.crt.auth
    except ImportError:
        return
    monkeypatch.setattr(botocore.crt.auth, "get_current_datetime", lambda *a, **k: SIGN_TIME)


@dataclass
class Captured:
    method: str
    path: str
    query: str
    headers: Headers

    def authenticate(self, **changes: Any) -> sigv4.AuthContext:
        fields = {
            "method": self.method,
            "raw_path": self.path,
            "raw_query": self.query,
            "headers": self.headers,
            **changes,
        }
        return sigv4.authenticate(
            fields["method"],
            fields["raw_path"],
            fields["raw_query"],
            fields["headers"],
            boto_lookup,
            fields.get("now", SIGN_NOW),
        )

    def with_header(self, name: str, value: str | None) -> Headers:
        """The headers with `name` replaced (or removed if value is None)."""
        out = [(n, v) for n, v in self.headers if n != name]
        if value is not None:
            out.append((name, value))
        return out

    def header(self, name: str) -> str:
        return dict(self.headers)[name]


class _Stop(Exception):
    pass


def _to_str(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _from_url(method: str, url: str, headers: dict[str, str | bytes]) -> Captured:
    parts = urlsplit(url)
    wire: Headers = [(name.lower(), _to_str(value)) for name, value in headers.items()]
    if not any(name == "host" for name, _ in wire):
        # botocore's own signers leave Host to the HTTP client; the CRT ones set it.
        wire.insert(0, ("host", parts.netloc))
    return Captured(method, parts.path, parts.query, wire)


def boto_client(endpoint: str = ENDPOINT, **s3_config: Any) -> Any:
    session = boto3.session.Session(
        aws_access_key_id=BOTO_AK, aws_secret_access_key=BOTO_SK, region_name=BOTO_REGION
    )
    return session.client(
        "s3",
        endpoint_url=endpoint,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path", **s3_config},
            retries={"max_attempts": 1},
        ),
    )


def capture(client: Any, call: Callable[[], object]) -> Captured:
    """Run a client call, catching the request at the wire instead of sending it."""
    seen: list[Captured] = []

    def on_send(request: Any, **_: Any) -> None:
        seen.append(_from_url(request.method, request.url, dict(request.headers.items())))
        raise _Stop

    client.meta.events.register("before-send", on_send)
    try:
        with pytest.raises(_Stop):
            call()
    finally:
        client.meta.events.unregister("before-send", on_send)
    assert len(seen) == 1
    return seen[0]


def presigned(url: str, method: str = "GET") -> Captured:
    return _from_url(method, url, {})


@pytest.mark.usefixtures("frozen_botocore")
@pytest.mark.parametrize("key", KEYS)
def test_botocore_client_requests_are_accepted(key: str) -> None:
    client = boto_client()
    put = capture(
        client,
        lambda: client.put_object(
            Bucket="bucket",
            Key=key,
            Body=b"hello world",
            ContentType="text/plain; charset=utf-8",
            Metadata={"note": "two  spaces"},
        ),
    )
    ctx = put.authenticate()
    assert ctx.access_key == BOTO_AK
    assert ctx.presigned is False
    assert ctx.payload_hash == hashlib.sha256(b"hello world").hexdigest()
    assert ctx.scope == f"20240229/{BOTO_REGION}/s3/aws4_request"

    get = capture(client, lambda: client.get_object(Bucket="bucket", Key=key, Range="bytes=0-1"))
    assert get.authenticate().payload_hash == EMPTY

    url = client.generate_presigned_url(
        "get_object",
        Params={
            "Bucket": "bucket",
            "Key": key,
            "ResponseContentDisposition": 'attachment; filename="a b+c.txt"',
            "VersionId": "v1+/=",
        },
        ExpiresIn=600,
    )
    ctx = presigned(url).authenticate()
    assert ctx.presigned is True
    assert ctx.payload_hash == "UNSIGNED-PAYLOAD"


@pytest.mark.usefixtures("frozen_botocore")
def test_botocore_list_with_several_query_params() -> None:
    client = boto_client()
    listing = capture(
        client,
        lambda: client.list_objects_v2(
            Bucket="bucket",
            Prefix="dir with space/ü+",
            Delimiter="/",
            StartAfter="a=b&c",
            MaxKeys=7,
            EncodingType="url",
        ),
    )
    assert listing.query.count("&") >= 4
    listing.authenticate()
    uploads = capture(client, lambda: client.list_multipart_uploads(Bucket="bucket"))
    assert "uploads" in uploads.query
    uploads.authenticate()
    url = client.generate_presigned_url(
        "list_objects_v2",
        Params={"Bucket": "bucket", "Prefix": "p q+r", "Delimiter": "/", "MaxKeys": 3},
        ExpiresIn=60,
    )
    presigned(url).authenticate()


@pytest.mark.usefixtures("frozen_botocore")
def test_botocore_presigned_put_and_virtual_host_style() -> None:
    client = boto_client(endpoint="http://s3.example.test:9000", addressing_style="virtual")
    url = client.generate_presigned_url(
        "put_object", Params={"Bucket": "bucket", "Key": "dir//file name"}, ExpiresIn=604800
    )
    assert urlsplit(url).netloc == "bucket.s3.example.test:9000"
    captured = presigned(url, "PUT")
    captured.authenticate()
    # The host is signed: the same URL sent to another bucket's host fails.
    raises_without_leak(
        SignatureDoesNotMatch,
        lambda: captured.authenticate(headers=[("host", "other.s3.example.test:9000")]),
    )


@pytest.mark.usefixtures("frozen_botocore")
def test_botocore_streaming_trailer_upload_is_accepted() -> None:
    # Over HTTPS with a file-like body, botocore sends an aws-chunked body with a checksum
    # trailer; the header signature itself must still verify.
    client = boto_client(endpoint="https://localhost:9443")
    put = capture(
        client, lambda: client.put_object(Bucket="bucket", Key="k", Body=io.BytesIO(b"x" * 10))
    )
    ctx = put.authenticate()
    assert ctx.payload_hash == put.header("x-amz-content-sha256")
    assert ctx.payload_hash in {
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "UNSIGNED-PAYLOAD",
        hashlib.sha256(b"x" * 10).hexdigest(),
    }


def _signed_with_botocore(
    method: str,
    url: str,
    headers: dict[str, str],
    *,
    presign_expires: int | None = None,
    region: str = BOTO_REGION,
) -> Captured:
    credentials = Credentials(BOTO_AK, BOTO_SK)
    request = AWSRequest(method=method, url=url, headers=headers, data=b"")
    if presign_expires is None:
        S3SigV4Auth(credentials, "s3", region).add_auth(request)
    else:
        S3SigV4QueryAuth(credentials, "s3", region, expires=presign_expires).add_auth(request)
    return _from_url(method, request.url, dict(request.headers.items()))


@pytest.mark.usefixtures("frozen_botocore")
def test_botocore_signers_directly() -> None:
    url = f"{ENDPOINT}/bucket/a%20b/%E2%82%AC//x/?tagging=&versionId=1%2B2&z=~&y=%C3%A9%20%2F"
    header_signed = _signed_with_botocore(
        "GET", url, {"X-Amz-Meta-Spaced": "  lots   of   space  ", "Range": "bytes=1-"}
    )
    assert "x-amz-meta-spaced" in header_signed.header("authorization")
    header_signed.authenticate()
    for region in ("us-east-1", "auto", "garage"):
        _signed_with_botocore("GET", url, {}, region=region).authenticate()
        _signed_with_botocore("GET", url, {}, region=region, presign_expires=30).authenticate()
    query_signed = _signed_with_botocore("HEAD", url, {}, presign_expires=604800)
    query_signed.authenticate(now=SIGN_NOW + timedelta(days=7))
    raises_without_leak(
        AccessDenied,
        lambda: query_signed.authenticate(now=SIGN_NOW + timedelta(days=7, seconds=1)),
    )


def _flip(signature: str) -> str:
    return signature[:-1] + ("0" if signature[-1] != "0" else "1")


@pytest.fixture
def signed_put(frozen_botocore: None) -> Captured:
    client = boto_client()
    return capture(
        client,
        lambda: client.put_object(
            Bucket="bucket", Key="dir/obj ect+1", Body=b"payload", Metadata={"a": "b"}
        ),
    )


def test_signed_put_baseline(signed_put: Captured) -> None:
    signed_put.authenticate()


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda c: {"method": "POST"}, id="method"),
        pytest.param(lambda c: {"raw_path": c.path.replace("obj%20ect", "obj%20ecT")}, id="path"),
        pytest.param(lambda c: {"raw_path": c.path.replace("%20", "+")}, id="path-encoding"),
        pytest.param(lambda c: {"raw_path": c.path + "/"}, id="path-trailing-slash"),
        pytest.param(lambda c: {"raw_query": "acl"}, id="query-added"),
        pytest.param(
            lambda c: {"headers": c.with_header("x-amz-meta-a", "c")}, id="signed-header-value"
        ),
        pytest.param(
            lambda c: {"headers": c.with_header("x-amz-content-sha256", EMPTY)},
            id="payload-hash",
        ),
        pytest.param(lambda c: {"headers": c.with_header("host", "evil:9000")}, id="host"),
        pytest.param(
            lambda c: {"headers": c.with_header("x-amz-meta-a", None)}, id="signed-header-removed"
        ),
        pytest.param(
            lambda c: {"headers": c.with_header("x-amz-date", "20240229T235931Z")}, id="date"
        ),
        pytest.param(
            lambda c: {"headers": c.with_header("authorization", _flip(c.header("authorization")))},
            id="signature",
        ),
    ],
)
def test_tampered_header_signed_request_is_rejected(
    signed_put: Captured, tamper: Callable[[Captured], dict[str, Any]]
) -> None:
    raises_without_leak(
        SignatureDoesNotMatch, lambda: signed_put.authenticate(**tamper(signed_put))
    )


def test_tampered_date_to_another_day(signed_put: Captured) -> None:
    headers = signed_put.with_header("x-amz-date", "20240301T000000Z")
    raises_without_leak(
        AuthorizationHeaderMalformed, lambda: signed_put.authenticate(headers=headers)
    )


def test_unsigned_amz_header_is_rejected(signed_put: Captured) -> None:
    headers = [*signed_put.headers, ("x-amz-copy-source", "/other/secret-object")]
    exc = raises_without_leak(AccessDenied, lambda: signed_put.authenticate(headers=headers))
    assert exc.extra["HeadersNotSigned"] == "x-amz-copy-source"
    # Unsigned non-amz headers (proxies add them) are fine.
    signed_put.authenticate(headers=[*signed_put.headers, ("x-forwarded-for", "10.0.0.1")])


@pytest.fixture
def signed_url(frozen_botocore: None) -> Captured:
    client = boto_client()
    return presigned(
        client.generate_presigned_url(
            "get_object",
            Params={"Bucket": "bucket", "Key": "dir/obj ect+1", "PartNumber": 1},
            ExpiresIn=3600,
        )
    )


def test_presigned_baseline(signed_url: Captured) -> None:
    signed_url.authenticate()


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda c: {"method": "DELETE"}, id="method"),
        pytest.param(lambda c: {"raw_path": c.path.replace("ect", "ecT")}, id="path"),
        pytest.param(lambda c: {"raw_query": c.query + "&acl="}, id="query-added"),
        pytest.param(
            lambda c: {"raw_query": c.query.replace("partNumber=1", "partNumber=2")},
            id="query-value",
        ),
        pytest.param(
            lambda c: {"raw_query": c.query.replace("X-Amz-Expires=3600", "X-Amz-Expires=3601")},
            id="expires",
        ),
        pytest.param(lambda c: {"raw_query": c.query.replace("T235930Z", "T235931Z")}, id="date"),
        pytest.param(
            lambda c: {"raw_query": c.query[:-1] + ("0" if c.query[-1] != "0" else "1")},
            id="signature",
        ),
        pytest.param(lambda c: {"headers": [("host", "localhost:9001")]}, id="host"),
    ],
)
def test_tampered_presigned_url_is_rejected(
    signed_url: Captured, tamper: Callable[[Captured], dict[str, Any]]
) -> None:
    raises_without_leak(
        SignatureDoesNotMatch, lambda: signed_url.authenticate(**tamper(signed_url))
    )


# ------------------------------------------------------------------------------ errors


def get_example(**changes: Any) -> Callable[[], sigv4.AuthContext]:
    """The AWS GET-object example, with some arguments changed."""
    example = S3_EXAMPLES[0]
    args: dict[str, Any] = {
        "method": example.method,
        "raw_path": example.path,
        "raw_query": example.query,
        "headers": example_headers(example),
        "lookup_secret": ex_lookup,
        "now": EX_NOW,
        **changes,
    }
    max_skew = args.pop("max_skew", timedelta(minutes=15))
    return lambda: sigv4.authenticate(**args, max_skew=max_skew)


GET_SIGNED = S3_EXAMPLES[0].signed_headers
GET_SIG = S3_EXAMPLES[0].signature


def with_authorization(value: str) -> Headers:
    return [*S3_EXAMPLES[0].headers, ("authorization", value)]


def test_unknown_access_key() -> None:
    exc = raises_without_leak(InvalidAccessKeyId, get_example(lookup_secret=lambda _: None))
    assert exc.status == 403
    assert exc.extra["AWSAccessKeyId"] == EX_AK
    url_query = (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=NOBODY%2F20130524%2Fus-east-1%2Fs3"
        "%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host"
        f"&X-Amz-Signature={GET_SIG}"
    )
    raises_without_leak(
        InvalidAccessKeyId,
        lambda: sigv4.authenticate("GET", "/", url_query, [("host", EX_HOST)], ex_lookup, EX_NOW),
    )


def test_no_authentication_at_all() -> None:
    exc = raises_without_leak(
        AccessDenied,
        lambda: sigv4.authenticate("GET", "/b/k", "", [("host", EX_HOST)], ex_lookup, EX_NOW),
    )
    assert exc.status == 403


@pytest.mark.parametrize(
    "value",
    [
        f"AWS4-HMAC-SHA256 Credential={EX_AK}/{EX_SCOPE}, SignedHeaders={GET_SIGNED}",
        f"AWS4-HMAC-SHA256 Credential={EX_AK}/{EX_SCOPE}, Signature={GET_SIG}",
        f"AWS4-HMAC-SHA256 SignedHeaders={GET_SIGNED}, Signature={GET_SIG}",
        "AWS4-HMAC-SHA256",
        "AWS4-HMAC-SHA256 garbage",
        f"AWS4-HMAC-SHA256 Credential={EX_AK}/{EX_SCOPE}, SignedHeaders={GET_SIGNED}, "
        f"Signature={GET_SIG}, Signature={GET_SIG}",
        f"AWS4-HMAC-SHA256 Credential={EX_AK}/{EX_SCOPE}, SignedHeaders={GET_SIGNED}, "
        f"Signature={GET_SIG}, Extra=1",
        authorization(GET_SIGNED, GET_SIG, credential=f"{EX_AK}/20130524/us-east-1/s3"),
        authorization(GET_SIGNED, GET_SIG, credential=f"/{EX_SCOPE}"),
        authorization(
            GET_SIGNED, GET_SIG, credential=f"{EX_AK}/20130524/us-east-1/ec2/aws4_request"
        ),
        authorization(
            GET_SIGNED, GET_SIG, credential=f"{EX_AK}/20130524/us-east-1/s3/aws5_request"
        ),
        authorization(
            GET_SIGNED, GET_SIG, credential=f"{EX_AK}/2013-05-24/us-east-1/s3/aws4_request"
        ),
        authorization(GET_SIGNED, GET_SIG, credential=f"{EX_AK}/20130524//s3/aws4_request"),
        authorization("range;x-amz-content-sha256;x-amz-date", GET_SIG),
        authorization("Host;range", GET_SIG),
        authorization("host;;range", GET_SIG),
        authorization(GET_SIGNED, GET_SIG[:-1]),
        authorization(GET_SIGNED, GET_SIG.upper()),
    ],
)
def test_malformed_authorization_header(value: str) -> None:
    exc = raises_without_leak(
        AuthorizationHeaderMalformed, get_example(headers=with_authorization(value))
    )
    assert exc.status == 400


def test_two_authorization_headers_are_malformed() -> None:
    headers = [
        *example_headers(S3_EXAMPLES[0]),
        ("authorization", authorization(GET_SIGNED, GET_SIG)),
    ]
    raises_without_leak(AuthorizationHeaderMalformed, get_example(headers=headers))


@pytest.mark.parametrize(
    "value",
    [
        f"AWS4-HMAC-SHA256 Credential={EX_AK}/{EX_SCOPE},SignedHeaders={GET_SIGNED},"
        f"Signature={GET_SIG}",
        f"AWS4-HMAC-SHA256 Credential={EX_AK}/{EX_SCOPE}, SignedHeaders={GET_SIGNED}, "
        f"Signature={GET_SIG}",
        f"  AWS4-HMAC-SHA256   Credential={EX_AK}/{EX_SCOPE} ,  SignedHeaders={GET_SIGNED}  ,"
        f"Signature={GET_SIG}  ",
        # Any order, and a stray trailing comma.
        f"AWS4-HMAC-SHA256 Signature={GET_SIG},Credential={EX_AK}/{EX_SCOPE},"
        f"SignedHeaders={GET_SIGNED},",
    ],
)
def test_authorization_header_spacing_is_tolerated(value: str) -> None:
    get_example(headers=with_authorization(value))()


def test_unsupported_authorization_algorithm() -> None:
    value = authorization(GET_SIGNED, GET_SIG).replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256")
    raises_without_leak(InvalidArgument, get_example(headers=with_authorization(value)))


def test_missing_date() -> None:
    headers = [h for h in example_headers(S3_EXAMPLES[0]) if h[0] != "x-amz-date"]
    exc = raises_without_leak(AccessDenied, get_example(headers=headers))
    assert "date" in exc.message.lower()


@pytest.mark.parametrize(
    "value", ["2013-05-24T00:00:00Z", "20130524T000000", "20130532T000000Z", ""]
)
def test_invalid_amz_date(value: str) -> None:
    headers = [(n, value if n == "x-amz-date" else v) for n, v in example_headers(S3_EXAMPLES[0])]
    raises_without_leak(AccessDenied, get_example(headers=headers))


def test_date_header_is_used_when_there_is_no_x_amz_date() -> None:
    headers = [
        ("host", EX_HOST),
        ("date", "Fri, 24 May 2013 00:00:00 GMT"),
        ("x-amz-content-sha256", EMPTY),
    ]
    signed = ["date", "host", "x-amz-content-sha256"]
    creq = sigv4.canonical_request(
        "GET", "/k", "", sigv4.canonical_headers(headers, signed), signed, EMPTY
    )
    key = sigv4.derive_signing_key(EX_SK, "20130524", "us-east-1", "s3")
    signature = sigv4.sign(key, sigv4.string_to_sign(EX_DATE, EX_SCOPE, creq))
    headers.append(("authorization", authorization(";".join(signed), signature)))
    ctx = sigv4.authenticate("GET", "/k", "", headers, ex_lookup, EX_NOW)
    assert ctx.amz_date == EX_DATE


def test_credential_date_must_match_request_date() -> None:
    value = authorization(
        GET_SIGNED, GET_SIG, credential=f"{EX_AK}/20130523/us-east-1/s3/aws4_request"
    )
    raises_without_leak(
        AuthorizationHeaderMalformed, get_example(headers=with_authorization(value))
    )


@pytest.mark.parametrize(
    "offset",
    [timedelta(minutes=15, seconds=1), -timedelta(minutes=15, seconds=1), timedelta(days=3)],
)
def test_request_time_too_skewed(offset: timedelta) -> None:
    exc = raises_without_leak(RequestTimeTooSkewed, get_example(now=EX_NOW + offset))
    assert exc.status == 403
    assert exc.extra["RequestTime"] == EX_DATE
    assert exc.extra["MaxAllowedSkewMilliseconds"] == "900000"


@pytest.mark.parametrize("offset", [timedelta(minutes=15), -timedelta(minutes=15)])
def test_skew_limit_is_inclusive(offset: timedelta) -> None:
    get_example(now=EX_NOW + offset)()


def test_custom_max_skew_and_naive_now() -> None:
    get_example(now=datetime(2013, 5, 24, 0, 0, 5))()  # naive datetimes are taken as UTC
    raises_without_leak(
        RequestTimeTooSkewed,
        get_example(now=EX_NOW + timedelta(seconds=6), max_skew=timedelta(seconds=5)),
    )


def test_missing_content_sha256() -> None:
    headers = [h for h in example_headers(S3_EXAMPLES[0]) if h[0] != "x-amz-content-sha256"]
    exc = raises_without_leak(InvalidRequest, get_example(headers=headers))
    assert exc.message == "Missing required header for this request: x-amz-content-sha256"


@pytest.mark.parametrize("value", ["abc", "UNSIGNED", "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"])
def test_invalid_content_sha256(value: str) -> None:
    headers = [
        (n, value if n == "x-amz-content-sha256" else v) for n, v in example_headers(S3_EXAMPLES[0])
    ]
    raises_without_leak(InvalidArgument, get_example(headers=headers))


def test_signed_header_absent_from_request() -> None:
    headers = [h for h in example_headers(S3_EXAMPLES[0]) if h[0] != "range"]
    exc = raises_without_leak(SignatureDoesNotMatch, get_example(headers=headers))
    assert "range" in exc.message


def test_any_region_in_scope_is_accepted() -> None:
    for region in ("us-east-1", "eu-central-1", "auto", "local"):
        scope = f"20130524/{region}/s3/aws4_request"
        example = S3_EXAMPLES[0]
        signed = example.signed_headers.split(";")
        creq = sigv4.canonical_request(
            "GET", example.path, "", sigv4.canonical_headers(example.headers, signed), signed, EMPTY
        )
        key = sigv4.derive_signing_key(EX_SK, "20130524", region, "s3")
        signature = sigv4.sign(key, sigv4.string_to_sign(EX_DATE, scope, creq))
        value = authorization(example.signed_headers, signature, credential=f"{EX_AK}/{scope}")
        assert get_example(headers=with_authorization(value))().scope == scope


def _presign_query(expires: str = "86400", *, drop: str = "", **override: str) -> str:
    params: dict[str, str] = {
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": f"{EX_AK}%2F20130524%2Fus-east-1%2Fs3%2Faws4_request",
        "X-Amz-Date": EX_DATE,
        "X-Amz-Expires": expires,
        "X-Amz-SignedHeaders": "host",
        "X-Amz-Signature": "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
    }
    params.update(override)
    return "&".join(f"{k}={v}" for k, v in params.items() if k != drop)


def presigned_example(query: str, now: datetime = EX_NOW) -> Callable[[], sigv4.AuthContext]:
    return lambda: sigv4.authenticate(
        "GET", "/test.txt", query, [("host", EX_HOST)], ex_lookup, now
    )


def test_presigned_query_example_round_trip() -> None:
    presigned_example(_presign_query())()


@pytest.mark.parametrize("expires", ["604801", "0", "-1", "abc", "1e3", ""])
def test_presigned_bad_expires(expires: str) -> None:
    exc = raises_without_leak(
        AuthorizationQueryParametersError, presigned_example(_presign_query(expires))
    )
    assert exc.status == 400


def test_presigned_expires_over_a_week_message() -> None:
    exc = raises_without_leak(
        AuthorizationQueryParametersError, presigned_example(_presign_query("604801"))
    )
    assert "604800" in exc.message


@pytest.mark.parametrize(
    "missing",
    [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
    ],
)
def test_presigned_missing_parameter(missing: str) -> None:
    raises_without_leak(
        AuthorizationQueryParametersError, presigned_example(_presign_query(drop=missing))
    )


@pytest.mark.parametrize(
    "override",
    [
        {"X-Amz-Algorithm": "AWS4-HMAC-SHA1"},
        {"X-Amz-Date": "2013-05-24T00:00:00Z"},
        {"X-Amz-Credential": f"{EX_AK}%2F20130524%2Fus-east-1%2Fs3"},
        {"X-Amz-Credential": f"{EX_AK}%2F20130523%2Fus-east-1%2Fs3%2Faws4_request"},
        {"X-Amz-Credential": f"{EX_AK}%2F20130524%2Fus-east-1%2Fsqs%2Faws4_request"},
        {"X-Amz-SignedHeaders": "range"},
        {"X-Amz-Signature": "not-hex"},
    ],
)
def test_presigned_malformed_parameters(override: dict[str, str]) -> None:
    raises_without_leak(
        AuthorizationQueryParametersError, presigned_example(_presign_query(**override))
    )


def test_presigned_duplicate_parameter() -> None:
    query = _presign_query() + "&X-Amz-Expires=60"
    raises_without_leak(AuthorizationQueryParametersError, presigned_example(query))


def test_presigned_not_valid_yet() -> None:
    exc = raises_without_leak(
        AccessDenied, presigned_example(_presign_query(), now=EX_NOW - timedelta(minutes=16))
    )
    assert exc.message == "Request is not valid yet"
    # Within the allowed skew, a URL dated slightly in the future is fine.
    presigned_example(_presign_query(), now=EX_NOW - timedelta(minutes=15))()


def test_presigned_expired() -> None:
    exc = raises_without_leak(
        AccessDenied, presigned_example(_presign_query(), now=EX_NOW + timedelta(days=2))
    )
    assert exc.message == "Request has expired"
    assert exc.extra["X-Amz-Expires"] == "86400"


def test_presigned_content_sha256_in_query_is_signed() -> None:
    digest = hashlib.sha256(b"body").hexdigest()
    query = (
        f"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Content-Sha256={digest}"
        f"&X-Amz-Credential={EX_AK}%2F{EX_SCOPE.replace('/', '%2F')}&X-Amz-Date={EX_DATE}"
        "&X-Amz-Expires=60&X-Amz-SignedHeaders=host"
    )
    creq = sigv4.canonical_request(
        "PUT",
        "/k",
        sigv4.canonical_query_string(query),
        f"host:{EX_HOST}\n",
        ["host"],
        digest,
    )
    key = sigv4.derive_signing_key(EX_SK, "20130524", "us-east-1", "s3")
    signature = sigv4.sign(key, sigv4.string_to_sign(EX_DATE, EX_SCOPE, creq))
    full = f"{query}&X-Amz-Signature={signature}"
    ctx = sigv4.authenticate("PUT", "/k", full, [("host", EX_HOST)], ex_lookup, EX_NOW)
    assert ctx.payload_hash == digest


def test_header_and_query_auth_together_are_rejected() -> None:
    raises_without_leak(
        InvalidArgument,
        get_example(raw_query=_presign_query()),
    )


# SigV2 requests are handed to s3compat.api.sigv2 (its own suite: tests/unit/test_sigv2.py);
# these check the dispatch, with AWS's published V2 examples (tests/unit/test_sigv2.py).
V2_PUPPY_HEADERS = [
    ("host", "awsexamplebucket1.us-west-1.s3.amazonaws.com"),
    ("date", "Tue, 27 Mar 2007 19:36:42 +0000"),
    ("authorization", f"AWS {EX_AK}:qgk2+6Sv9/oM7G3qLEjTH1a1l1g="),
]
V2_PUPPY_NOW = datetime(2007, 3, 27, 19, 36, 42, tzinfo=UTC)
V2_QUERY = f"AWSAccessKeyId={EX_AK}&Expires=1175139620&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D"
V2_QUERY_NOW = datetime.fromtimestamp(1175139620, UTC) - timedelta(hours=1)


def test_sigv2_header_is_verified_by_sigv2() -> None:
    ctx = sigv4.authenticate(
        "GET",
        "/photos/puppy.jpg",
        "",
        V2_PUPPY_HEADERS,
        ex_lookup,
        V2_PUPPY_NOW,
        virtual_host_bucket="awsexamplebucket1",
    )
    assert ctx.access_key == EX_AK
    assert ctx.presigned is False
    assert ctx.payload_hash == "UNSIGNED-PAYLOAD"
    assert ctx.signing_key == b""


def test_sigv2_header_needs_the_virtual_host_bucket() -> None:
    # V2 signs "/awsexamplebucket1/photos/puppy.jpg": without the bucket it cannot match.
    raises_without_leak(
        SignatureDoesNotMatch,
        lambda: sigv4.authenticate(
            "GET", "/photos/puppy.jpg", "", V2_PUPPY_HEADERS, ex_lookup, V2_PUPPY_NOW
        ),
    )


def test_sigv2_header_skew_uses_max_skew() -> None:
    def call(max_skew: timedelta) -> object:
        return sigv4.authenticate(
            "GET",
            "/photos/puppy.jpg",
            "",
            V2_PUPPY_HEADERS,
            ex_lookup,
            V2_PUPPY_NOW + timedelta(minutes=10),
            max_skew=max_skew,
            virtual_host_bucket="awsexamplebucket1",
        )

    call(timedelta(minutes=15))
    raises_without_leak(RequestTimeTooSkewed, lambda: call(timedelta(minutes=5)))


def test_sigv2_query_is_verified_by_sigv2() -> None:
    ctx = sigv4.authenticate(
        "GET",
        "/photos/puppy.jpg",
        V2_QUERY,
        [("host", "johnsmith.s3.amazonaws.com")],
        ex_lookup,
        V2_QUERY_NOW,
        virtual_host_bucket="johnsmith",
    )
    assert ctx.access_key == EX_AK
    assert ctx.presigned is True
    assert ctx.payload_hash == "UNSIGNED-PAYLOAD"


def test_sigv2_query_tampered_and_expired() -> None:
    def call(query: str, now: datetime = V2_QUERY_NOW) -> object:
        return sigv4.authenticate(
            "GET",
            "/photos/puppy.jpg",
            query,
            [("host", "johnsmith.s3.amazonaws.com")],
            ex_lookup,
            now,
            virtual_host_bucket="johnsmith",
        )

    raises_without_leak(
        SignatureDoesNotMatch, lambda: call(V2_QUERY.replace("1175139620", "1175139619"))
    )
    exc = raises_without_leak(
        AccessDenied, lambda: call(V2_QUERY, V2_QUERY_NOW + timedelta(hours=2))
    )
    assert "expired" in exc.message


# ------------------------------------------------------------ secrets, repr and caching


def test_auth_context_repr_hides_the_signing_key() -> None:
    ctx = get_example()()
    text = repr(ctx)
    assert ctx.signing_key.hex() not in text
    assert repr(ctx.signing_key) not in text
    assert "signing_key" not in text
    assert EX_SK not in text


def test_signing_keys_are_cached_per_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = sigv4._SigningKeyCache(maxsize=2)
    monkeypatch.setattr(sigv4, "_signing_keys", cache)
    for _ in range(5):
        get_example()()
    assert (cache.misses, cache.hits) == (1, 4)
    # Bounded: a third scope evicts the least recently used one.
    sigv4.derive_signing_key(EX_SK, "20130525", "us-east-1", "s3")
    sigv4.derive_signing_key(EX_SK, "20130526", "us-east-1", "s3")
    assert len(cache) == 2
    get_example()()
    assert cache.misses == 4
    # A different secret for the same scope is a different key, not a cache hit.
    other = sigv4.derive_signing_key("another secret", "20130524", "us-east-1", "s3")
    assert other != sigv4.derive_signing_key(EX_SK, "20130524", "us-east-1", "s3")


# ------------------------------------------------------------------------- credentials

USERS_TOML = """
[[users]]
name = "alice"
access_key = "AKALICE"
secret_key = "alice-secret/+="

[[users]]
name = "bob"
access_key = "AKBOB"
secret_key = "bob-secret"
"""


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def write(path: Path, text: str, mtime: int) -> None:
    path.write_text(text)
    os.utime(path, ns=(mtime, mtime))


@pytest.fixture
def users_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "users.toml"
    write(path, USERS_TOML, 1_000_000_000_000_000_000)
    yield path


def test_credential_store_direct_pair() -> None:
    store = CredentialStore(access_key="AKROOT", secret_key="root-secret", user="root")
    assert store.lookup_secret("AKROOT") == "root-secret"
    assert store.user_for("AKROOT") == "root"
    assert store.lookup_secret("AKOTHER") is None
    assert store.user_for("AKOTHER") is None
    assert "root-secret" not in repr(store)
    assert "AKROOT" in repr(store)


def test_credential_store_from_file(users_file: Path) -> None:
    store = CredentialStore(path=users_file, access_key="AKROOT", secret_key="root-secret")
    assert store.lookup_secret("AKALICE") == "alice-secret/+="
    assert store.user_for("AKBOB") == "bob"
    assert store.user_for("AKROOT") == "admin"
    assert store.access_keys() == ["AKALICE", "AKBOB", "AKROOT"]
    text = repr(store)
    for secret in ("alice-secret", "bob-secret", "root-secret"):
        assert secret not in text
    assert CredentialStore.from_file(users_file).lookup_secret("AKBOB") == "bob-secret"


def test_credential_store_reloads_changed_file_at_most_once_a_second(users_file: Path) -> None:
    clock = FakeClock()
    store = CredentialStore(path=users_file, clock=clock)
    assert store.user_for("AKBOB") == "bob"

    write(
        users_file,
        '[[users]]\nname = "carol"\naccess_key = "AKCAROL"\nsecret_key = "carol-secret"\n',
        2_000_000_000_000_000_000,
    )
    clock.now += 0.5
    assert store.user_for("AKBOB") == "bob"  # not re-checked yet
    clock.now += 0.6
    assert store.user_for("AKBOB") is None  # revoked
    assert store.lookup_secret("AKCAROL") == "carol-secret"


def test_credential_store_keeps_keys_when_reload_fails(
    users_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    store = CredentialStore(path=users_file, clock=clock)
    write(users_file, USERS_TOML + '\n[[users]]\nname = "x"\nsecret_key = "leaky"\n', 3 * 10**18)
    clock.now += 2
    with caplog.at_level(logging.WARNING):
        assert store.lookup_secret("AKALICE") == "alice-secret/+="
    assert "not reloaded" in caplog.text
    assert "leaky" not in caplog.text
    assert "alice-secret" not in caplog.text

    users_file.unlink()
    clock.now += 2
    assert store.lookup_secret("AKBOB") == "bob-secret"


def test_credential_store_reload_now(users_file: Path) -> None:
    clock = FakeClock()
    store = CredentialStore(path=users_file, clock=clock)
    assert store.reload() is True  # forced re-read
    write(users_file, USERS_TOML.replace("bob-secret", "bob-rotated"), 4 * 10**18)
    assert store.reload() is True
    assert store.lookup_secret("AKBOB") == "bob-rotated"


@pytest.mark.parametrize(
    "text",
    [
        "[[users]]\nname = 'a'\naccess_key = 'AK'\n",
        "[[users]]\nname = 'a'\nsecret_key = 's'\n",
        "[[users]]\naccess_key = 'AK'\nsecret_key = 's'\n",
        "[[users]]\nname = 'a'\naccess_key = 'AK/1'\nsecret_key = 's'\n",
        "[[users]]\nname = 'a'\naccess_key = 'AK'\nsecret_key = ''\n",
        "[[users]]\nname = 'a'\naccess_key = 'AK'\nsecret_key = 's1'\n"
        "[[users]]\nname = 'b'\naccess_key = 'AK'\nsecret_key = 's2'\n",
        "users = 'nope'\n",
        "[[users]\nname = 'a'\n",
    ],
)
def test_credential_store_rejects_bad_files(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(CredentialsError) as info:
        CredentialStore(path=path)
    for secret in ("'s'", "s1", "s2"):
        assert secret not in str(info.value)


def test_credential_store_rejects_conflicting_direct_key(users_file: Path) -> None:
    with pytest.raises(CredentialsError):
        CredentialStore(path=users_file, access_key="AKBOB", secret_key="different")
    with pytest.raises(CredentialsError):
        CredentialStore(access_key="AKBOB")


def test_credential_store_backs_authenticate(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    path.write_text(
        f'[[users]]\nname = "example"\naccess_key = "{EX_AK}"\nsecret_key = "{EX_SK}"\n'
    )
    store = CredentialStore(path=path)
    ctx = get_example(lookup_secret=store.lookup_secret)()
    assert store.user_for(ctx.access_key) == "example"
