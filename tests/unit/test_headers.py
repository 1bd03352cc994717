"""Range, Content-MD5, user metadata and the object response headers."""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import UTC, datetime

import pytest

from s3compat.api import headers as h
from s3compat.core import errors
from s3compat.core.models import ObjectPart, ObjectRecord

# --- Range --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, size, expected",
    [
        ("bytes=0-0", 10, (0, 0)),
        ("bytes=0-", 10, (0, 9)),
        ("bytes=3-", 10, (3, 9)),
        ("bytes=9-", 10, (9, 9)),
        ("bytes=2-5", 10, (2, 5)),
        ("bytes=9-9", 10, (9, 9)),
        ("bytes=-1", 10, (9, 9)),
        ("bytes=-3", 10, (7, 9)),
        ("bytes=-10", 10, (0, 9)),
        ("bytes=-11", 10, (0, 9)),  # suffix larger than the object: the whole object
        ("bytes=-999999999999", 10, (0, 9)),
        ("bytes=5-10", 10, (5, 9)),  # last beyond the end is clamped
        ("bytes=0-999999999999", 10, (0, 9)),
        ("bytes=0-0", 1, (0, 0)),
        ("bytes=-1", 1, (0, 0)),
        (" bytes=1-2 ", 10, (1, 2)),
        ("bytes=1048576-2097151", 5 << 20, (1 << 20, (2 << 20) - 1)),
    ],
)
def test_parse_range_satisfiable(value: str, size: int, expected: tuple[int, int]) -> None:
    assert h.parse_range(value, size) == expected


@pytest.mark.parametrize(
    "value, size",
    [
        ("bytes=-0", 10),  # an empty suffix
        ("bytes=10-", 10),  # first byte beyond the end
        ("bytes=10-20", 10),
        ("bytes=11-11", 10),
        ("bytes=999999999999-", 10),
        ("bytes=0-0", 0),  # nothing in an empty object is satisfiable
        ("bytes=0-", 0),
        ("bytes=-1", 0),
        ("bytes=-0", 0),
        ("bytes=0-100", 0),
        ("bytes=3-5", 0),
    ],
)
def test_parse_range_unsatisfiable(value: str, size: int) -> None:
    with pytest.raises(errors.InvalidRange) as info:
        h.parse_range(value, size)
    err = info.value
    assert err.status == 416
    assert err.extra == {"ActualObjectSize": str(size), "RangeRequested": value}


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "bytes=",
        "bytes=-",
        "bytes=0-1,2-3",  # several ranges: S3 ignores the header
        "bytes=0-1, 4-5",
        "bytes=-1,-2",
        "items=0-1",
        "0-1",
        "bytes 0-1",
        "bytes=a-b",
        "bytes=1-b",
        "bytes=+1-2",
        "bytes=0x1-2",
        "bytes=1.5-2",
        "bytes=5-3",  # last before first: syntactically invalid, so ignored
        "bytes=1-0",
    ],
)
def test_parse_range_ignored(value: str | None) -> None:
    assert h.parse_range(value, 10) is None


# --- Content-MD5 --------------------------------------------------------------------------


def test_content_md5_valid() -> None:
    digest = hashlib.md5(b"hello").digest()
    value = base64.b64encode(digest).decode()
    assert h.content_md5({"content-md5": value}) == digest
    assert h.content_md5({"content-md5": f" {value} "}) == digest


def test_content_md5_absent() -> None:
    assert h.content_md5({}) is None
    assert h.content_md5({"content-type": "text/plain"}) is None


@pytest.mark.parametrize(
    "value",
    [
        "not base64!",
        "XrY7u+Ae7tCTyyK7j1rNww",  # right digest, padding missing
        "XrY7u+Ae7tCTyyK7j1rNww==x",
        "XrY7u+Ae7tCTyyK7j1rN$w==",
        "5d41402abc4b2a76b9719d911017c592",  # hex, not base64 (decodes to 24 bytes)
        "ÄÖÜ",
        "",
        base64.b64encode(b"\0" * 15).decode(),  # wrong digest length
        base64.b64encode(b"\0" * 17).decode(),
        base64.b64encode(hashlib.sha256(b"x").digest()).decode(),
    ],
)
def test_content_md5_invalid(value: str) -> None:
    with pytest.raises(errors.InvalidDigest) as info:
        h.content_md5({"content-md5": value})
    assert info.value.status == 400


# --- user metadata ------------------------------------------------------------------------


def test_user_metadata_strips_the_prefix() -> None:
    raw = [
        ("host", "example.com"),
        ("x-amz-meta-color", "blue"),
        ("content-type", "text/plain"),
        ("x-amz-meta-my-name", "Value With Spaces"),
        ("x-amz-date", "20250101T000000Z"),
        ("x-amz-metadata-directive", "COPY"),  # not user metadata
    ]
    assert h.user_metadata(raw) == {"color": "blue", "my-name": "Value With Spaces"}


def test_user_metadata_names_are_lower_case() -> None:
    # The handler lower-cases raw header names before calling; values keep their case.
    sent = [("X-Amz-Meta-Camel-Case", "MiXeD"), ("X-AMZ-META-UPPER", "UP")]
    meta = h.user_metadata([(name.lower(), value) for name, value in sent])
    assert meta == {"camel-case": "MiXeD", "upper": "UP"}
    assert all(name == name.lower() for name in meta)


def test_user_metadata_repeated_headers_are_joined() -> None:
    raw = [("x-amz-meta-tag", "a"), ("x-amz-meta-tag", "b")]
    assert h.user_metadata(raw) == {"tag": "a,b"}


def test_user_metadata_empty() -> None:
    assert h.user_metadata([]) == {}
    assert h.user_metadata([("x-amz-meta-empty", "")]) == {"empty": ""}


def test_user_metadata_up_to_2_kb_is_accepted() -> None:
    name = "k"
    value = "v" * (h.MAX_USER_META_BYTES - len(name))
    assert h.user_metadata([("x-amz-meta-" + name, value)]) == {name: value}
    # Split over several headers, still exactly 2048 bytes of names and values.
    raw = [(f"x-amz-meta-n{i}", "x" * 254) for i in range(8)]  # 8 × (2 + 254) = 2048
    assert len(h.user_metadata(raw)) == 8


@pytest.mark.parametrize(
    "raw",
    [
        [("x-amz-meta-k", "v" * h.MAX_USER_META_BYTES)],
        [("x-amz-meta-" + "n" * 2049, "")],
        [(f"x-amz-meta-n{i}", "x" * 255) for i in range(8)],  # 8 × 257 = 2056
        [("x-amz-meta-a", "é" * 1024)],  # 1 + 2048 bytes: the limit counts UTF-8 bytes
    ],
)
def test_user_metadata_over_2_kb_is_too_large(raw: list[tuple[str, str]]) -> None:
    with pytest.raises(errors.MetadataTooLarge) as info:
        h.user_metadata(raw)
    assert info.value.status == 400
    assert info.value.extra == {"MaxSizeAllowed": "2048"}


# --- object headers -----------------------------------------------------------------------


def _record(**overrides: object) -> ObjectRecord:
    blob = uuid.uuid4()
    fields: dict[str, object] = {
        "bucket": "b",
        "key": "k",
        "size": 5,
        "etag": '"5d41402abc4b2a76b9719d911017c592"',
        "last_modified": datetime(2025, 3, 4, 5, 6, 7, 890123, tzinfo=UTC),
        "content_type": "text/plain",
        "headers": {},
        "user_meta": {},
        "parts": (ObjectPart(blob_id=blob, size=5, offset=0),),
    }
    fields.update(overrides)
    return ObjectRecord(**fields)  # type: ignore[arg-type]


def test_object_headers_minimal() -> None:
    assert h.object_headers(_record()) == {
        "ETag": '"5d41402abc4b2a76b9719d911017c592"',
        "Last-Modified": "Tue, 04 Mar 2025 05:06:07 GMT",
        "Accept-Ranges": "bytes",
        "Content-Type": "text/plain",
    }


def test_object_headers_default_content_type() -> None:
    assert h.object_headers(_record(content_type=None))["Content-Type"] == "binary/octet-stream"


def test_object_headers_full() -> None:
    record = _record(
        headers={
            "Content-Disposition": 'attachment; filename="a.txt"',
            "Cache-Control": "no-cache",
            "Content-Encoding": "gzip",
        },
        user_meta={"color": "blue", "my-name": "Value"},
        parts_count=3,
        etag='"0123456789abcdef0123456789abcdef-3"',
    )
    assert h.object_headers(record) == {
        "ETag": '"0123456789abcdef0123456789abcdef-3"',
        "Last-Modified": "Tue, 04 Mar 2025 05:06:07 GMT",
        "Accept-Ranges": "bytes",
        "Content-Type": "text/plain",
        "Content-Disposition": 'attachment; filename="a.txt"',
        "Cache-Control": "no-cache",
        "Content-Encoding": "gzip",
        "x-amz-meta-color": "blue",
        "x-amz-meta-my-name": "Value",
    }


def test_stored_headers_keeps_only_the_standard_ones() -> None:
    sent = {
        "content-disposition": "inline",
        "content-language": "en",
        "expires": "Wed, 21 Oct 2026 07:28:00 GMT",
        "cache-control": "max-age=60",
        "content-encoding": "gzip",
        "content-type": "text/plain",  # kept separately
        "authorization": "AWS4-HMAC-SHA256 …",
        "x-amz-meta-a": "b",
    }
    assert h.stored_headers(sent) == {
        "Content-Disposition": "inline",
        "Content-Encoding": "gzip",
        "Content-Language": "en",
        "Cache-Control": "max-age=60",
        "Expires": "Wed, 21 Oct 2026 07:28:00 GMT",
    }
    # Stored headers come back verbatim on GET.
    out = h.object_headers(_record(headers=h.stored_headers(sent)))
    for name in h.STORED_HEADERS:
        assert out[name] == sent[name.lower()]


@pytest.mark.parametrize("value, expected", [("0", 0), ("12345", 12345), (None, None)])
def test_content_length(value: str | None, expected: int | None) -> None:
    hdrs = {} if value is None else {"content-length": value}
    assert h.content_length(hdrs) == expected


@pytest.mark.parametrize(
    "value",
    ["", "-1", "1.5", "ten", "0x10", " 5", "\xb2"],  # "\xb2": isdigit() yet not int()-able
)
def test_content_length_invalid(value: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        h.content_length({"content-length": value})
