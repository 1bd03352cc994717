"""Property tests: the request-parsing edge only ever returns a result or an S3 error.

Random methods, paths, queries, headers and bodies go through routing, header parsing,
SigV4 canonicalisation/authentication and XML parsing; any exception other than an
`S3Error` subclass (a KeyError, UnicodeError, IndexError, …) would surface as a 500.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from lxml import etree

from s3compat.api import headers as hdr
from s3compat.api import routing, sigv4, xml
from s3compat.core.errors import MalformedXML, S3Error

T = TypeVar("T")

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --------------------------------------------------------------------------- strategies

METHODS = st.sampled_from(
    ["GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "PATCH", "get", "", "TRACE", "CONNECT"]
)
_PATH_PIECES = st.sampled_from(
    [
        b"/",
        b"//",
        b"%",
        b"%2",
        b"%2F",
        b"%2f",
        b"%FF",
        b"%FE",
        b"%00",
        b"%01",
        b"%C3%A9",
        b"%E2%82",
        b"..",
        b".",
        b"+",
        b"?",
        b"#",
        b"bucket",
        b"key",
        b"\xff",
        b"\xc3\xa9",
        b" ",
        b"\x00",
    ]
)
RAW_PATHS = st.one_of(
    st.lists(_PATH_PIECES | st.binary(max_size=8), max_size=20).map(b"".join),
    st.binary(max_size=64),
    st.lists(_PATH_PIECES, max_size=6).map(lambda ps: b"/b/" + b"".join(ps) * 400),
    st.integers(min_value=1000, max_value=1100).map(lambda n: b"/b/" + b"k" * n),
    st.integers(min_value=1000, max_value=1100).map(lambda n: b"/b/" + b"%41" * n),
)
_PARAM_NAMES = st.sampled_from(
    [
        *sorted(routing.KNOWN_PARAMS | routing._ALL_SUBRESOURCES),
        *["", "%", "%FF", "%2", "X-Amz-Signature", "x-amz-meta-a", "unknown", "%00", "a=b"],
    ]
) | st.text(max_size=8)
_PARAM_VALUES = st.sampled_from(["", "2", "1", "%", "%FF", "%zz", "-1", "abc", "1" * 30]) | st.text(
    max_size=8
)
QUERIES = st.one_of(
    st.lists(
        st.tuples(_PARAM_NAMES, st.booleans(), _PARAM_VALUES).map(
            lambda t: t[0] + ("=" + t[2] if t[1] else "")
        ),
        max_size=6,
    ).map("&".join),
    st.binary(max_size=64),
)
HOSTS = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "",
            "s3.localhost",
            "b.s3.localhost",
            "b.s3.localhost:9000",
            "B.S3.LOCALHOST.",
            ".s3.localhost",
            "[::1]:80",
            "127.0.0.1:9000",
            "b.s3.localhost:",
            ":",
            "x.y.s3.localhost:abc",
        ]
    ),
    st.text(max_size=30),
)


def _must_be_result_or_s3error(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    try:
        return fn(*args, **kwargs)
    except S3Error:
        return None


# --------------------------------------------------------------------------- routing


@FUZZ
@given(
    method=METHODS,
    raw_path=RAW_PATHS | st.text(max_size=40),
    raw_query=QUERIES,
    host=HOSTS,
    domain=st.sampled_from([None, "s3.localhost", "", "."]),
    copy_source=st.booleans(),
)
@example(
    method="GET",
    raw_path=b"/b/%FF%FE",
    raw_query=b"",
    host=None,
    domain=None,
    copy_source=False,
)
@example(
    method="GET",
    raw_path="/b/\udcff",
    raw_query="list-type=2&list-type=2",
    host="b.s3.localhost",
    domain="s3.localhost",
    copy_source=False,
)
@example(
    method="PUT",
    raw_path="/b/\ud800",  # a lone surrogate that surrogateescape cannot encode
    raw_query="",
    host=None,
    domain=None,
    copy_source=True,
)
def test_route_only_routes_or_raises_s3_errors(
    method: str,
    raw_path: str | bytes,
    raw_query: str | bytes,
    host: str | None,
    domain: str | None,
    copy_source: bool,
) -> None:
    headers = {routing.COPY_SOURCE_HEADER: "/b/k"} if copy_source else {}
    try:
        found = routing.route(
            method, raw_path, raw_query, host, virtual_host_domain=domain, headers=headers
        )
    except S3Error:
        return
    assert isinstance(found, routing.Route)
    assert isinstance(found.op, routing.Op)
    if found.key is not None:
        assert len(found.key.encode("utf-8")) <= routing.MAX_KEY_BYTES


@FUZZ
@given(name=st.sampled_from(["list-type", "uploadId", "prefix", "max-keys"]), value=_PARAM_VALUES)
def test_route_refuses_duplicate_parameters(name: str, value: str) -> None:
    query = f"{quote(name)}={quote(value)}&{quote(name)}={quote(value)}"
    for method in ("GET", "PUT", "POST", "DELETE"):
        try:
            routing.route(method, "/b/k", query, None, virtual_host_domain=None)
        except S3Error as exc:
            # Duplicates are refused before anything else looks at the query.
            assert exc.code == "InvalidArgument", exc.code
        else:
            raise AssertionError(f"{method} {query!r} was routed")


# --------------------------------------------------------------------------- headers

HEADER_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "bytes=0-0",
            "bytes=abc",
            "bytes=5-1",
            "items=0-1",
            "bytes=99999999999999999999-",
            "bytes=-99999999999999999999",
            "bytes=-",
            "bytes=0-1,2-3",
            "bytes= 1-2",
            "bytes=١-٢",  # Arabic-Indic digits: \d matches them
            "bytes=²-³",  # superscripts: isdigit() true, int() fails
            "²",
            "١٢",
            "",
            " ",
            "=",
            "a" * 100,
            # more digits than int() converts (4300): was a ValueError, i.e. a 500
            "bytes=" + "9" * 5000 + "-",
            "bytes=-" + "9" * 5000,
            "bytes=0-" + "9" * 5000,
            "bytes=" + "0" * 5000 + "1-2",
            "9" * 5000,
        ]
    ),
)


@FUZZ
@given(value=st.none() | HEADER_TEXT, size=st.integers(min_value=0, max_value=1 << 40))
def test_parse_range(value: str | None, size: int) -> None:
    result = _must_be_result_or_s3error(hdr.parse_range, value, size)
    if result is not None:
        first, last = result
        assert 0 <= first <= last < size


@FUZZ
@given(value=st.none() | HEADER_TEXT, size=st.integers(min_value=0, max_value=1 << 40))
def test_parse_copy_source_range(value: str | None, size: int) -> None:
    result = _must_be_result_or_s3error(hdr.parse_copy_source_range, value, size)
    if result is not None:
        first, last = result
        assert 0 <= first <= last < size


@FUZZ
@given(value=HEADER_TEXT)
def test_content_md5(value: str) -> None:
    result = _must_be_result_or_s3error(hdr.content_md5, {"content-md5": value})
    assert result is None or len(result) == 16


@FUZZ
@given(value=HEADER_TEXT)
def test_content_length(value: str) -> None:
    result = _must_be_result_or_s3error(hdr.content_length, {"content-length": value})
    assert result is None or (isinstance(result, int) and result >= 0)


@FUZZ
@given(
    raw=st.lists(
        st.tuples(
            st.sampled_from(["x-amz-meta-", "x-amz-meta-a", "x-amz-meta-é", "other"])
            | st.text(max_size=20).map(lambda s: "x-amz-meta-" + s),
            st.text(max_size=600),
        ),
        max_size=8,
    )
)
def test_user_metadata(raw: list[tuple[str, str]]) -> None:
    result = _must_be_result_or_s3error(hdr.user_metadata, raw)
    if result is not None:
        total = sum(len(k.encode()) + len(v.encode()) for k, v in result.items())
        assert total <= hdr.MAX_USER_META_BYTES


@FUZZ
@given(
    value=HEADER_TEXT
    | st.sampled_from(
        [
            "/b/k",
            "b/k",
            "/b/k?versionId=null",
            "/b/k?versionId=x",
            "/b/%FF",
            "/b/%",
            "%2Fb%2Fk",
            "/b/k?",
            "/b",
            "//k",
            "/b/\udcff",
        ]
    )
)
def test_parse_copy_source(value: str) -> None:
    result = _must_be_result_or_s3error(hdr.parse_copy_source, value)
    if result is not None:
        bucket, key = result
        assert bucket and key


_CHECKSUM_NAMES = st.sampled_from(
    [
        "x-amz-checksum-crc32",
        "x-amz-checksum-crc32c",
        "x-amz-checksum-crc64nvme",
        "x-amz-checksum-sha1",
        "x-amz-checksum-sha256",
        "x-amz-checksum-md5",
        "x-amz-checksum-",
        "x-amz-checksum-type",
        "x-amz-checksum-algorithm",
        "x-amz-trailer",
        "x-amz-sdk-checksum-algorithm",
        "content-md5",
    ]
)


@FUZZ
@given(
    raw=st.lists(st.tuples(_CHECKSUM_NAMES, HEADER_TEXT), max_size=4),
    default=st.none() | st.sampled_from(["CRC32", "crc32c", "SHA256", "bogus", ""]),
)
def test_requested_checksum(raw: list[tuple[str, str]], default: str | None) -> None:
    headers = dict(raw)
    result = _must_be_result_or_s3error(hdr.requested_checksum, headers, raw, default)
    if result is not None:
        assert len(result) == 3


# --------------------------------------------------------------------------- sigv4

RAW_QUERY_TEXT = st.one_of(
    st.text(max_size=60),
    st.lists(
        st.tuples(_PARAM_NAMES, _PARAM_VALUES).map(lambda t: f"{t[0]}={t[1]}"), max_size=6
    ).map("&".join),
)


@FUZZ
@given(raw_query=RAW_QUERY_TEXT, data=st.data())
def test_canonical_query_string_is_order_invariant(raw_query: str, data: st.DataObject) -> None:
    try:
        canonical = sigv4.canonical_query_string(raw_query)
    except S3Error:
        return
    parts = [p for p in raw_query.split("&") if p]
    shuffled = "&".join(data.draw(st.permutations(parts)))
    assert sigv4.canonical_query_string(shuffled) == canonical
    # Dropping a name never crashes either.
    sigv4.canonical_query_string(raw_query, drop=frozenset({"X-Amz-Signature"}))


@FUZZ
@given(
    headers=st.lists(st.tuples(st.text(max_size=10), st.text(max_size=30)), max_size=6),
    signed=st.lists(st.text(max_size=10), max_size=6),
)
def test_canonical_headers(headers: list[tuple[str, str]], signed: list[str]) -> None:
    result = _must_be_result_or_s3error(sigv4.canonical_headers, headers, signed)
    if result is not None:
        assert result.endswith("\n") if signed else result == ""


ACCESS_KEY = "AKIDFUZZ0000000000001"
SECRET = "fuzz-secret-key"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _lookup(key: str) -> str | None:
    return SECRET if key == ACCESS_KEY else None


_AUTH_FRAGMENTS = st.sampled_from(
    [
        "AWS4-HMAC-SHA256",
        "AWS4-HMAC-SHA256 ",
        "AWS ",
        "AWS",
        f"AWS {ACCESS_KEY}:",
        f"AWS {ACCESS_KEY}:abc=",
        f"Credential={ACCESS_KEY}/20260102/us-east-1/s3/aws4_request",
        f"Credential={ACCESS_KEY}/2026/us-east-1/s3/aws4_request",
        f"Credential={ACCESS_KEY}",
        "Credential=/////",
        "Credential=",
        "SignedHeaders=host;x-amz-date",
        "SignedHeaders=host;x-amz-content-sha256;x-amz-date",
        "SignedHeaders=",
        "SignedHeaders=;;",
        "Signature=" + "0" * 64,
        "Signature=",
        ",",
        ", ",
        "=",
        " ",
    ]
)
AUTHORIZATION = st.one_of(
    st.lists(_AUTH_FRAGMENTS | st.text(max_size=10), max_size=6).map("".join),
    st.text(max_size=80),
)
_X_AMZ_PARAMS = st.sampled_from(
    [
        "X-Amz-Algorithm=AWS4-HMAC-SHA256",
        "X-Amz-Algorithm=bogus",
        f"X-Amz-Credential={ACCESS_KEY}%2F20260102%2Fus-east-1%2Fs3%2Faws4_request",
        "X-Amz-Credential=%2F%2F",
        "X-Amz-Credential=",
        "X-Amz-Date=20260102T030405Z",
        "X-Amz-Date=2026",
        "X-Amz-Date=",
        "X-Amz-Expires=60",
        "X-Amz-Expires=-1",
        "X-Amz-Expires=99999999999999999999",
        "X-Amz-Expires=abc",
        "X-Amz-Expires=²",
        "X-Amz-SignedHeaders=host",
        "X-Amz-SignedHeaders=",
        "X-Amz-Signature=" + "0" * 64,
        "X-Amz-Signature=",
        f"AWSAccessKeyId={ACCESS_KEY}",
        "Signature=abc",
        "Expires=1",
        "Expires=abc",
        "Expires=99999999999999999999",
        "%FF=%FF",
    ]
)
_HEADER_EXTRAS = st.sampled_from(
    [
        ("host", "127.0.0.1"),
        ("x-amz-date", "20260102T030405Z"),
        ("x-amz-date", "garbage"),
        ("x-amz-date", "20261302T030405Z"),
        ("date", "Fri, 02 Jan 2026 03:04:05 GMT"),
        ("date", "not a date"),
        ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
        ("x-amz-content-sha256", hashlib.sha256(b"").hexdigest()),
        ("x-amz-content-sha256", "zz"),
        ("x-amz-meta-a", "b"),
    ]
)


@FUZZ
@given(
    method=st.sampled_from(["GET", "PUT", "HEAD", "POST", "DELETE"]),
    authorization=st.none() | AUTHORIZATION,
    query=st.lists(_X_AMZ_PARAMS | st.text(max_size=12), max_size=7).map("&".join),
    extra=st.lists(_HEADER_EXTRAS, max_size=5),
)
def test_authenticate_only_auth_context_or_s3_error(
    method: str, authorization: str | None, query: str, extra: list[tuple[str, str]]
) -> None:
    headers = list(extra)
    if authorization is not None:
        headers.append(("authorization", authorization))
    try:
        ctx = sigv4.authenticate(method, "/b/k", query, headers, _lookup, NOW)
    except S3Error:
        return
    # Random input that verifies would be a forgery.
    raise AssertionError(f"authenticated a random request: {ctx!r}")


def _signed_headers_request() -> tuple[str, list[tuple[str, str]]]:
    """A correctly signed header-auth GET, built by hand, for mutation."""
    amz_date = NOW.strftime("%Y%m%dT%H%M%SZ")
    payload = hashlib.sha256(b"").hexdigest()
    headers = [("host", "127.0.0.1"), ("x-amz-content-sha256", payload), ("x-amz-date", amz_date)]
    signed = ["host", "x-amz-content-sha256", "x-amz-date"]
    canonical = sigv4.canonical_request(
        "GET", "/b/k", "", sigv4.canonical_headers(headers, signed), signed, payload
    )
    scope = f"{amz_date[:8]}/us-east-1/s3/aws4_request"
    sts = sigv4.string_to_sign(amz_date, scope, canonical)
    key = sigv4.derive_signing_key(SECRET, amz_date[:8], "us-east-1", "s3")
    signature = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    auth = (
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, "
        f"SignedHeaders={';'.join(signed)}, Signature={signature}"
    )
    return auth, headers


def test_hand_signed_request_authenticates() -> None:
    """Sanity check of the fixture the mutation test starts from."""
    auth, headers = _signed_headers_request()
    ctx = sigv4.authenticate("GET", "/b/k", "", [*headers, ("authorization", auth)], _lookup, NOW)
    assert ctx.access_key == ACCESS_KEY


@FUZZ
@given(data=st.data())
def test_authenticate_mutated_valid_signature(data: st.DataObject) -> None:
    auth, headers = _signed_headers_request()
    pos = data.draw(st.integers(min_value=0, max_value=len(auth)))
    cut = data.draw(st.integers(min_value=0, max_value=5))
    insert = data.draw(st.text(max_size=5))
    mutated = auth[:pos] + insert + auth[pos + cut :]
    with contextlib.suppress(S3Error):
        sigv4.authenticate("GET", "/b/k", "", [*headers, ("authorization", mutated)], _lookup, NOW)


# --------------------------------------------------------------------------- xml

VALID_COMPLETE = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    b'<Part><PartNumber>1</PartNumber><ETag>"0123456789abcdef0123456789abcdef"</ETag></Part>'
    b'<Part><PartNumber>2</PartNumber><ETag>"fedcba9876543210fedcba9876543210"</ETag></Part>'
    b"</CompleteMultipartUpload>"
)


def _xml_parse(body: bytes) -> None:
    try:
        root = xml.parse(body)
    except MalformedXML:
        return
    assert isinstance(root, etree._Element)


@FUZZ
@given(body=st.binary(max_size=200))
@example(body=b"")
@example(body=b"\x00")
@example(body=b"<a/>")
@example(body=b'<?xml version="1.0" encoding="bogus"?><a/>')
@example(body=b'<?xml version="1.0" encoding="UTF-16"?><a/>')
@example(body=b"\xff\xfe<\x00a\x00/\x00>\x00")
@example(body=b"<!DOCTYPE a [<!ENTITY x SYSTEM 'file:///etc/passwd'>]><a>&x;</a>")
@example(body=b"<a>&undefined;</a>")
@example(body=b"<a>" * 40 + b"</a>" * 40)
@example(body=b"<?xml-stylesheet href='x'?><a/>")
@example(body=b"<!-- only a comment -->")
def test_xml_parse_random_bytes(body: bytes) -> None:
    _xml_parse(body)


@FUZZ
@given(data=st.data())
def test_xml_parse_mutated_complete_document(data: st.DataObject) -> None:
    body = bytearray(VALID_COMPLETE)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        kind = data.draw(st.sampled_from(["flip", "delete", "insert", "dup"]))
        pos = data.draw(st.integers(min_value=0, max_value=max(0, len(body) - 1)))
        if kind == "flip" and body:
            body[pos] = data.draw(st.integers(min_value=0, max_value=255))
        elif kind == "delete":
            del body[pos : pos + data.draw(st.integers(min_value=1, max_value=20))]
        elif kind == "insert":
            body[pos:pos] = data.draw(
                st.binary(max_size=10)
                | st.sampled_from([b"<", b">", b"&", b"&amp;", b"<![CDATA[", b"]]>", b"\x00"])
            )
        else:
            end = data.draw(st.integers(min_value=pos, max_value=len(body)))
            body[pos:pos] = body[pos:end]
    _xml_parse(bytes(body))
    with contextlib.suppress(S3Error):
        xml.parse_complete_multipart_upload(bytes(body))
