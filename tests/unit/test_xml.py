"""XML documents: golden bytes, hostile request bodies, and what botocore makes of ours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import botocore.handlers
import botocore.parsers
import botocore.session
import pytest

from s3compat.api import xml
from s3compat.core import errors

DECL = b"<?xml version='1.0' encoding='UTF-8'?>\n"
NS = b' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
WHEN = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
WHEN_XML = b"2024-05-06T07:08:09.123Z"
# Keys that must survive encoding-type=url exactly.
AWKWARD_KEYS = [
    "dir/a b+c%d&e.txt",
    "+",
    "%",
    "%2B",
    " ",
    "a  b",
    "日本語/ファイル",
    "😀",
    "\U0010ffff",
    "x=y;z?#[]@!$'()*,",
    "~tilde_under-score.dot",
]


# --- golden documents -------------------------------------------------------------------


def test_error_document() -> None:
    body = xml.error_document(
        "NoSuchKey",
        "The specified key does not exist.",
        "/bucket/a&b",
        "4442587FB7D0A2F9",
        {"Key": "a&b<c>"},
    )
    assert body == (
        DECL + b"<Error>"
        b"<Code>NoSuchKey</Code>"
        b"<Message>The specified key does not exist.</Message>"
        b"<Key>a&amp;b&lt;c&gt;</Key>"
        b"<Resource>/bucket/a&amp;b</Resource>"
        b"<RequestId>4442587FB7D0A2F9</RequestId>"
        b"</Error>"
    )


def test_error_document_without_extra_elements() -> None:
    body = xml.error_document("InternalError", "boom", "/", "RID", {})
    assert body == (
        DECL + b"<Error><Code>InternalError</Code><Message>boom</Message>"
        b"<Resource>/</Resource><RequestId>RID</RequestId></Error>"
    )


def test_list_all_my_buckets() -> None:
    body = xml.list_all_my_buckets(
        "owner-id",
        [
            ("alpha", WHEN, "us-east-1"),
            ("beta", datetime(2020, 1, 1, tzinfo=UTC), "eu-west-1"),
        ],
    )
    assert body == (
        DECL + b"<ListAllMyBucketsResult" + NS + b">"
        b"<Owner><ID>owner-id</ID><DisplayName>owner-id</DisplayName></Owner>"
        b"<Buckets>"
        b"<Bucket><Name>alpha</Name><CreationDate>" + WHEN_XML + b"</CreationDate>"
        b"<BucketRegion>us-east-1</BucketRegion></Bucket>"
        b"<Bucket><Name>beta</Name><CreationDate>2020-01-01T00:00:00.000Z</CreationDate>"
        b"<BucketRegion>eu-west-1</BucketRegion></Bucket>"
        b"</Buckets>"
        b"</ListAllMyBucketsResult>"
    )


def test_list_all_my_buckets_empty() -> None:
    assert xml.list_all_my_buckets("o", []) == (
        DECL + b"<ListAllMyBucketsResult" + NS + b">"
        b"<Owner><ID>o</ID><DisplayName>o</DisplayName></Owner><Buckets/>"
        b"</ListAllMyBucketsResult>"
    )


def test_location_constraint_us_east_1_is_empty() -> None:
    assert xml.location_constraint("us-east-1") == DECL + b"<LocationConstraint" + NS + b"/>"


def test_location_constraint_other_region_is_text() -> None:
    assert xml.location_constraint("eu-central-1") == (
        DECL + b"<LocationConstraint" + NS + b">eu-central-1</LocationConstraint>"
    )


def test_timestamp_has_milliseconds_and_z() -> None:
    assert xml.timestamp(WHEN) == WHEN_XML.decode()
    assert xml.timestamp(datetime(2024, 1, 1, 0, 0, 0, 999999, tzinfo=UTC)) == (
        "2024-01-01T00:00:00.999Z"
    )
    # Another zone is converted; a year below 1000 keeps four digits.
    two_hours_east = timezone(timedelta(hours=2))
    assert xml.timestamp(datetime(2024, 1, 1, 1, 30, 0, 5000, tzinfo=two_hours_east)) == (
        "2023-12-31T23:30:00.005Z"
    )
    assert xml.timestamp(datetime(999, 12, 31, tzinfo=UTC)) == "0999-12-31T00:00:00.000Z"


def _v1(**overrides: Any) -> bytes:
    args: dict[str, Any] = {
        "v2": False,
        "bucket": "bkt",
        "prefix": "",
        "delimiter": None,
        "max_keys": 1000,
        "encode": False,
        "contents": [],
        "common_prefixes": [],
        "is_truncated": False,
        "owner": None,
    }
    args.update(overrides)
    return xml.list_objects(**args)


def test_list_bucket_result_v1() -> None:
    body = _v1(
        prefix="photos/",
        delimiter="/",
        max_keys=2,
        contents=[("photos/a b.jpg", WHEN, '"0123abc"', 42)],
        common_prefixes=["photos/2024/"],
        is_truncated=True,
        owner="owner-id",
        marker="photos/",
        next_marker="photos/2024/",
    )
    assert body == (
        DECL + b"<ListBucketResult" + NS + b">"
        b"<Name>bkt</Name>"
        b"<Prefix>photos/</Prefix>"
        b"<Marker>photos/</Marker>"
        b"<NextMarker>photos/2024/</NextMarker>"
        b"<MaxKeys>2</MaxKeys>"
        b"<Delimiter>/</Delimiter>"
        b"<IsTruncated>true</IsTruncated>"
        b"<Contents><Key>photos/a b.jpg</Key><LastModified>" + WHEN_XML + b"</LastModified>"
        b'<ETag>"0123abc"</ETag><Size>42</Size>'
        b"<Owner><ID>owner-id</ID><DisplayName>owner-id</DisplayName></Owner>"
        b"<StorageClass>STANDARD</StorageClass></Contents>"
        b"<CommonPrefixes><Prefix>photos/2024/</Prefix></CommonPrefixes>"
        b"</ListBucketResult>"
    )


def test_list_bucket_result_v1_empty_marker_and_no_delimiter() -> None:
    assert _v1() == (
        DECL + b"<ListBucketResult" + NS + b">"
        b"<Name>bkt</Name><Prefix></Prefix><Marker></Marker><MaxKeys>1000</MaxKeys>"
        b"<IsTruncated>false</IsTruncated></ListBucketResult>"
    )


def test_list_bucket_result_v1_url_encoded() -> None:
    body = _v1(
        prefix="a b/",
        delimiter="+",
        encode=True,
        contents=[("a b/c+d%e", WHEN, '"e"', 1)],
        common_prefixes=["a b/x+"],
        marker="a b/+",
        next_marker="a b/é",
        is_truncated=True,
    )
    assert body == (
        DECL + b"<ListBucketResult" + NS + b">"
        b"<Name>bkt</Name>"
        b"<Prefix>a%20b/</Prefix>"
        b"<Marker>a%20b/%2B</Marker>"
        b"<NextMarker>a%20b/%C3%A9</NextMarker>"
        b"<MaxKeys>1000</MaxKeys>"
        b"<Delimiter>%2B</Delimiter>"
        b"<EncodingType>url</EncodingType>"
        b"<IsTruncated>true</IsTruncated>"
        b"<Contents><Key>a%20b/c%2Bd%25e</Key><LastModified>" + WHEN_XML + b"</LastModified>"
        b'<ETag>"e"</ETag><Size>1</Size><StorageClass>STANDARD</StorageClass></Contents>'
        b"<CommonPrefixes><Prefix>a%20b/x%2B</Prefix></CommonPrefixes>"
        b"</ListBucketResult>"
    )


def _v2(**overrides: Any) -> bytes:
    return _v1(v2=True, **overrides)


def test_list_bucket_result_v2() -> None:
    body = _v2(
        prefix="",
        delimiter="/",
        max_keys=3,
        contents=[("a b+c", WHEN, '"abc"', 7), ("é", WHEN, '"def-2"', 0)],
        common_prefixes=["dir/"],
        is_truncated=True,
        start_after="a",
        continuation_token="dG9rZW4=",
        next_continuation_token="bmV4dA==",
        key_count=3,
    )
    assert body == (
        DECL + b"<ListBucketResult" + NS + b">"
        b"<Name>bkt</Name>"
        b"<Prefix></Prefix>"
        b"<StartAfter>a</StartAfter>"
        b"<ContinuationToken>dG9rZW4=</ContinuationToken>"
        b"<NextContinuationToken>bmV4dA==</NextContinuationToken>"
        b"<KeyCount>3</KeyCount>"
        b"<MaxKeys>3</MaxKeys>"
        b"<Delimiter>/</Delimiter>"
        b"<IsTruncated>true</IsTruncated>"
        b"<Contents><Key>a b+c</Key><LastModified>" + WHEN_XML + b"</LastModified>"
        b'<ETag>"abc"</ETag><Size>7</Size><StorageClass>STANDARD</StorageClass></Contents>'
        b"<Contents><Key>\xc3\xa9</Key><LastModified>" + WHEN_XML + b"</LastModified>"
        b'<ETag>"def-2"</ETag><Size>0</Size><StorageClass>STANDARD</StorageClass></Contents>'
        b"<CommonPrefixes><Prefix>dir/</Prefix></CommonPrefixes>"
        b"</ListBucketResult>"
    )


def test_list_bucket_result_v2_url_encoded() -> None:
    body = _v2(
        prefix="p %",
        encode=True,
        contents=[("p %/k+1", WHEN, '"e"', 3)],
        start_after="p %/+",
        key_count=1,
    )
    assert body == (
        DECL + b"<ListBucketResult" + NS + b">"
        b"<Name>bkt</Name>"
        b"<Prefix>p%20%25</Prefix>"
        b"<StartAfter>p%20%25/%2B</StartAfter>"
        b"<KeyCount>1</KeyCount>"
        b"<MaxKeys>1000</MaxKeys>"
        b"<EncodingType>url</EncodingType>"
        b"<IsTruncated>false</IsTruncated>"
        b"<Contents><Key>p%20%25/k%2B1</Key><LastModified>" + WHEN_XML + b"</LastModified>"
        b'<ETag>"e"</ETag><Size>3</Size><StorageClass>STANDARD</StorageClass></Contents>'
        b"</ListBucketResult>"
    )


@pytest.mark.parametrize("key", AWKWARD_KEYS)
def test_url_encoding_round_trips_through_unquote_plus(key: str) -> None:
    body = _v2(
        prefix=key,
        delimiter=key,
        encode=True,
        contents=[(key, WHEN, '"e"', 1)],
        common_prefixes=[key + "/"],
        start_after=key,
    )
    root = xml.parse(body)
    encoded = [
        el.text or "" for el in root.iter("{*}Prefix", "{*}Delimiter", "{*}StartAfter", "{*}Key")
    ]
    assert len(encoded) == 5
    for text in encoded:
        assert text.isascii() and " " not in text and "+" not in text
    # Document order: Prefix, StartAfter, Delimiter, Contents/Key, CommonPrefixes/Prefix.
    assert [unquote_plus(text) for text in encoded] == [key, key, key, key, key + "/"]


# --- parsing request bodies ---------------------------------------------------------------


def test_parse_create_bucket_configuration() -> None:
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">\n'
        b"  <LocationConstraint>eu-west-1</LocationConstraint>\n"
        b"</CreateBucketConfiguration>\n"
    )
    assert xml.parse_create_bucket_configuration(body) == "eu-west-1"
    no_ns = b"<CreateBucketConfiguration><LocationConstraint>ap-south-1</LocationConstraint>"
    assert xml.parse_create_bucket_configuration(no_ns + b"</CreateBucketConfiguration>") == (
        "ap-south-1"
    )
    empty = b"<CreateBucketConfiguration><LocationConstraint/></CreateBucketConfiguration>"
    assert xml.parse_create_bucket_configuration(empty) is None
    assert xml.parse_create_bucket_configuration(b"<CreateBucketConfiguration/>") is None
    assert xml.parse_create_bucket_configuration(b"") is None
    assert xml.parse_create_bucket_configuration(b" \r\n\t") is None


def test_parse_create_bucket_configuration_wrong_root() -> None:
    with pytest.raises(errors.MalformedXML):
        xml.parse_create_bucket_configuration(
            b"<Delete><LocationConstraint>eu-west-1</LocationConstraint></Delete>"
        )


def test_parse_depth_limit_boundary() -> None:
    def nested(depth: int) -> bytes:
        return b"<a>" * depth + b"</a>" * depth

    xml.parse(nested(xml.MAX_DEPTH))
    with pytest.raises(errors.MalformedXML):
        xml.parse(nested(xml.MAX_DEPTH + 1))


# --- hostile documents --------------------------------------------------------------------

SECRET = "s3compat-secret-4f1c9e"


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text(SECRET + "\n")
    return path


def _hostile(secret_file: Path) -> dict[str, bytes]:
    url = secret_file.as_uri().encode()

    def cbc(inner: bytes, doctype: bytes = b"") -> bytes:
        return (
            b'<?xml version="1.0"?>\n' + doctype + b"<CreateBucketConfiguration>"
            b"<LocationConstraint>" + inner + b"</LocationConstraint>"
            b"</CreateBucketConfiguration>"
        )

    lol = b'<!ENTITY lol0 "lol">'
    for i in range(1, 10):
        lol += b"<!ENTITY lol%d '%s'>" % (i, b"&lol%d;" % (i - 1) * 10)
    return {
        "xxe-passwd": cbc(
            b"&xxe;",
            b'<!DOCTYPE CreateBucketConfiguration [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
        ),
        "xxe-secret": cbc(
            b"&xxe;", b'<!DOCTYPE CreateBucketConfiguration [<!ENTITY xxe SYSTEM "' + url + b'">]>'
        ),
        "xxe-parameter-entity": cbc(
            b"eu-west-1",
            b'<!DOCTYPE CreateBucketConfiguration [<!ENTITY % p SYSTEM "' + url + b'"> %p;]>',
        ),
        "external-dtd": cbc(
            b"eu-west-1", b'<!DOCTYPE CreateBucketConfiguration SYSTEM "' + url + b'">'
        ),
        "billion-laughs": cbc(b"&lol9;", b"<!DOCTYPE CreateBucketConfiguration [" + lol + b"]>"),
        "internal-dtd": cbc(
            b"eu-west-1",
            b"<!DOCTYPE CreateBucketConfiguration [<!ELEMENT CreateBucketConfiguration ANY>]>",
        ),
        "internal-entity": cbc(
            b"&r;", b'<!DOCTYPE CreateBucketConfiguration [<!ENTITY r "eu-west-1">]>'
        ),
        "two-mib": cbc(b"x" * (2 << 20)),
        "deep-100": b"<CreateBucketConfiguration>"
        + b"<a>" * 100
        + b"</a>" * 100
        + b"</CreateBucketConfiguration>",
        "undefined-entity": cbc(b"&xxe;"),
        "not-xml": b"this is not xml",
        "unclosed": b"<CreateBucketConfiguration><LocationConstraint>eu-west-1",
        "mismatched": b"<CreateBucketConfiguration></LocationConstraint>",
        "two-roots": b"<CreateBucketConfiguration/><CreateBucketConfiguration/>",
        "bad-utf8": cbc(b"\xff\xfe\xfd"),
        "nul": cbc(b"eu\x00west"),
        "text-after-root": b"<CreateBucketConfiguration/>trailing",
    }


HOSTILE_NAMES = list(_hostile(Path("/nonexistent")))


@pytest.mark.parametrize("name", HOSTILE_NAMES)
@pytest.mark.parametrize("entry", ["parse", "parse_create_bucket_configuration"])
def test_hostile_documents_are_malformed_xml(secret_file: Path, name: str, entry: str) -> None:
    body = _hostile(secret_file)[name]
    with pytest.raises(errors.MalformedXML) as info:
        getattr(xml, entry)(body)
    err = info.value
    assert err.code == "MalformedXML" and err.status == 400
    # Nothing read from disk may travel with the error, not even in its cause chain.
    seen = [err.message, *err.extra.values(), *err.extra.keys(), repr(err)]
    cause: BaseException | None = err.__cause__ or err.__context__
    while cause is not None:
        seen.append(repr(cause))
        cause = cause.__cause__ or cause.__context__
    dump = "\n".join(seen)
    assert SECRET not in dump
    assert "root:" not in dump


def test_rendered_error_for_hostile_document_leaks_nothing(secret_file: Path) -> None:
    body = _hostile(secret_file)["xxe-secret"]
    with pytest.raises(errors.MalformedXML) as info:
        xml.parse_create_bucket_configuration(body)
    err = info.value
    rendered = xml.error_document(err.code, err.message, "/b", "rid", err.extra)
    assert SECRET.encode() not in rendered and b"root:" not in rendered


def test_xinclude_is_not_processed(secret_file: Path) -> None:
    body = (
        b'<CreateBucketConfiguration xmlns:xi="http://www.w3.org/2001/XInclude">'
        b'<LocationConstraint><xi:include href="' + secret_file.as_uri().encode() + b'" '
        b'parse="text"/></LocationConstraint></CreateBucketConfiguration>'
    )
    try:
        value = xml.parse_create_bucket_configuration(body)
    except errors.MalformedXML:
        return
    assert value is None or SECRET not in value


# --- botocore reads what we write ---------------------------------------------------------


def _botocore_parse(operation: str, body: bytes) -> dict[str, Any]:
    model = botocore.session.get_session().get_service_model("s3")
    shape = model.operation_model(operation).output_shape
    parser = botocore.parsers.RestXMLParser()
    parsed: dict[str, Any] = parser.parse({"body": body, "headers": {}, "status_code": 200}, shape)
    return parsed


def test_botocore_parses_list_objects_v2() -> None:
    body = _v2(
        prefix="dir/",
        delimiter="/",
        max_keys=2,
        contents=[("dir/a", WHEN, '"abc"', 7), ("dir/b", WHEN, '"def-3"', 12345678901)],
        common_prefixes=["dir/sub/"],
        is_truncated=True,
        owner="owner-id",
        start_after="dir/",
        continuation_token="tok1",
        next_continuation_token="tok2",
        key_count=3,
    )
    parsed = _botocore_parse("ListObjectsV2", body)
    assert parsed["Name"] == "bkt"
    assert parsed["Prefix"] == "dir/"
    assert parsed["Delimiter"] == "/"
    assert parsed["MaxKeys"] == 2
    assert parsed["KeyCount"] == 3
    assert parsed["IsTruncated"] is True
    assert parsed["StartAfter"] == "dir/"
    assert parsed["ContinuationToken"] == "tok1"
    assert parsed["NextContinuationToken"] == "tok2"
    assert [c["Key"] for c in parsed["Contents"]] == ["dir/a", "dir/b"]
    assert [c["ETag"] for c in parsed["Contents"]] == ['"abc"', '"def-3"']
    assert [c["Size"] for c in parsed["Contents"]] == [7, 12345678901]
    assert parsed["Contents"][0]["LastModified"] == WHEN.replace(microsecond=123000)
    assert parsed["Contents"][0]["StorageClass"] == "STANDARD"
    assert parsed["Contents"][0]["Owner"] == {"ID": "owner-id", "DisplayName": "owner-id"}
    assert parsed["CommonPrefixes"] == [{"Prefix": "dir/sub/"}]


def test_botocore_decodes_url_encoded_list_objects_v2() -> None:
    body = _v2(
        prefix="p +%",
        delimiter="/",
        encode=True,
        contents=[(k, WHEN, '"e"', 1) for k in AWKWARD_KEYS],
        common_prefixes=["p +%/é/"],
        start_after="p +%+",
        key_count=len(AWKWARD_KEYS) + 1,
    )
    parsed = _botocore_parse("ListObjectsV2", body)
    # What boto3 does for a request where it set encoding-type=url itself.
    botocore.handlers.decode_list_object_v2(parsed, context={"encoding_type_auto_set": True})
    assert parsed["EncodingType"] == "url"
    assert parsed["Prefix"] == "p +%"
    assert parsed["Delimiter"] == "/"
    assert parsed["StartAfter"] == "p +%+"
    assert [c["Key"] for c in parsed["Contents"]] == AWKWARD_KEYS
    assert parsed["CommonPrefixes"] == [{"Prefix": "p +%/é/"}]


def test_botocore_parses_list_objects_v1() -> None:
    body = _v1(
        prefix="a+b",
        delimiter="/",
        encode=True,
        contents=[("a+b c", WHEN, '"e"', 5)],
        common_prefixes=["a+b/"],
        is_truncated=True,
        marker="a+b",
        next_marker="a+b/",
    )
    parsed = _botocore_parse("ListObjects", body)
    botocore.handlers.decode_list_object(parsed, context={"encoding_type_auto_set": True})
    assert parsed["Marker"] == "a+b"
    assert parsed["NextMarker"] == "a+b/"
    assert parsed["IsTruncated"] is True
    assert [c["Key"] for c in parsed["Contents"]] == ["a+b c"]
    assert parsed["CommonPrefixes"] == [{"Prefix": "a+b/"}]


def test_botocore_parses_list_buckets_and_location() -> None:
    parsed = _botocore_parse(
        "ListBuckets", xml.list_all_my_buckets("me", [("b1", WHEN, "eu-west-1")])
    )
    assert parsed["Owner"] == {"ID": "me", "DisplayName": "me"}
    assert parsed["Buckets"] == [
        {
            "Name": "b1",
            "CreationDate": WHEN.replace(microsecond=123000),
            "BucketRegion": "eu-west-1",
        }
    ]


class _RawResponse:
    """The two attributes botocore's GetBucketLocation handler reads."""

    def __init__(self, body: bytes) -> None:
        self.raw = object()
        self.content = body


@pytest.mark.parametrize("region, expected", [("us-east-1", None), ("eu-west-1", "eu-west-1")])
def test_botocore_reads_location_constraint(region: str, expected: str | None) -> None:
    # GetBucketLocation cannot be modelled; botocore parses the raw body in a handler.
    parsed: dict[str, Any] = {}
    botocore.handlers.parse_get_bucket_location(
        parsed, http_response=_RawResponse(xml.location_constraint(region))
    )
    assert parsed["LocationConstraint"] == expected
