"""The only place XML is parsed or built (lxml).

Parsing never resolves entities, never touches the network and refuses huge or deeply
nested documents, so XXE and "billion laughs" bodies are rejected as MalformedXML.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from lxml import etree

from s3compat.core import errors
from s3compat.core.lifecycle import MAX_DAYS, MAX_ID_LENGTH, MAX_RULES, AbortRule, Scope
from s3compat.core.lifecycle import LifecycleConfiguration as Lifecycle

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_XML_BYTES = 1 << 20
MAX_DEPTH = 32

_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    dtd_validation=False,
    load_dtd=False,
    huge_tree=False,
    remove_blank_text=True,
)


def parse(body: bytes) -> etree._Element:
    """Parse a request document, or raise MalformedXML."""
    if len(body) > MAX_XML_BYTES:
        raise errors.MalformedXML()
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise errors.MalformedXML() from exc
    if root.getroottree().docinfo.internalDTD is not None or _depth(root) > MAX_DEPTH:
        raise errors.MalformedXML()
    return root


def _depth(el: etree._Element) -> int:
    deepest = 0
    stack = [(el, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in node)
    return deepest


def local_name(el: etree._Element) -> str:
    return etree.QName(el).localname


def child_text(el: etree._Element, name: str) -> str | None:
    """Text of the first child called `name`, in the S3 namespace or none."""
    for child in el:
        if isinstance(child.tag, str) and local_name(child) == name:
            return child.text or ""
    return None


_ZERO = timedelta(0)


def timestamp(value: datetime) -> str:
    """ISO 8601 with milliseconds and Z, as S3 writes dates in XML."""
    if value.utcoffset() != _ZERO:  # naive (local time) or another zone
        value = value.astimezone(UTC)
    # isoformat is C code, several times faster than strftime: it counts in a listing.
    return value.isoformat(timespec="milliseconds")[:23] + "Z"


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    el = etree.SubElement(parent, name)
    if text is not None:
        el.text = text
    return el


def _doc(root: etree._Element) -> bytes:
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return out


def _root(name: str) -> etree._Element:
    return etree.Element(name, nsmap={None: S3_NS})  # type: ignore[dict-item]


def _encoder(encode: bool) -> Callable[[str], str]:
    """How listings write names: as they are, or percent-encoded with encoding-type=url
    (botocore decodes them with unquote_plus, so a literal `+` must travel as %2B)."""
    if encode:
        return lambda value: quote(value, safe="/")
    return lambda value: value


def _owner(parent: etree._Element, name: str, owner: str) -> None:
    who = _sub(parent, name)
    _sub(who, "ID", owner)
    _sub(who, "DisplayName", owner)


def _common_prefixes(
    root: etree._Element, prefixes: Iterable[str], enc: Callable[[str], str]
) -> None:
    for prefix in prefixes:
        _sub(_sub(root, "CommonPrefixes"), "Prefix", enc(prefix))


# --- documents ------------------------------------------------------------------------


# What XML 1.0 cannot carry. An error may echo a key or parameter holding such a character
# (the request is refused for it); it is written as %XX instead of making lxml fail.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_safe(text: str) -> str:
    return _NOT_XML.sub(lambda m: f"%{ord(m.group()):02X}", text)


def error_document(
    code: str, message: str, resource: str, request_id: str, extra: dict[str, str]
) -> bytes:
    message, resource = _xml_safe(message), _xml_safe(resource)
    extra = {k: _xml_safe(str(v)) for k, v in extra.items()}
    root = etree.Element("Error")
    _sub(root, "Code", code)
    _sub(root, "Message", message)
    for name, value in extra.items():
        _sub(root, name, value)
    _sub(root, "Resource", resource)
    _sub(root, "RequestId", request_id)
    return _doc(root)


def list_all_my_buckets(owner: str, buckets: Iterable[tuple[str, datetime, str]]) -> bytes:
    root = _root("ListAllMyBucketsResult")
    own = _sub(root, "Owner")
    _sub(own, "ID", owner)
    _sub(own, "DisplayName", owner)
    container = _sub(root, "Buckets")
    for name, created, region in buckets:
        b = _sub(container, "Bucket")
        _sub(b, "Name", name)
        _sub(b, "CreationDate", timestamp(created))
        _sub(b, "BucketRegion", region)
    return _doc(root)


def location_constraint(region: str) -> bytes:
    """us-east-1 is reported as an empty LocationConstraint, as S3 does."""
    root = _root("LocationConstraint")
    if region != "us-east-1":
        root.text = region
    return _doc(root)


def parse_create_bucket_configuration(body: bytes) -> str | None:
    """The LocationConstraint of a CreateBucket body (None if the body is empty)."""
    if not body.strip():
        return None
    root = parse(body)
    if local_name(root) != "CreateBucketConfiguration":
        raise errors.MalformedXML()
    value = child_text(root, "LocationConstraint")
    return value or None


def list_objects(
    *,
    v2: bool,
    bucket: str,
    prefix: str,
    delimiter: str | None,
    max_keys: int,
    encode: bool,
    contents: Iterable[tuple[str, datetime, str, int]],
    common_prefixes: Iterable[str],
    is_truncated: bool,
    owner: str | None,
    marker: str | None = None,
    next_marker: str | None = None,
    start_after: str | None = None,
    continuation_token: str | None = None,
    next_continuation_token: str | None = None,
    key_count: int = 0,
) -> bytes:
    """ListBucketResult for ListObjects (v1) and ListObjectsV2.

    With encoding-type=url, names are percent-encoded (botocore decodes them with
    unquote_plus, so a literal `+` must travel as %2B).
    """

    enc = _encoder(encode)
    root = _root("ListBucketResult")
    _sub(root, "Name", bucket)
    _sub(root, "Prefix", enc(prefix))
    if v2:
        if start_after is not None:
            _sub(root, "StartAfter", enc(start_after))
        if continuation_token is not None:
            _sub(root, "ContinuationToken", continuation_token)
        if next_continuation_token is not None:
            _sub(root, "NextContinuationToken", next_continuation_token)
        _sub(root, "KeyCount", str(key_count))
    else:
        _sub(root, "Marker", enc(marker or ""))
        if next_marker is not None:
            _sub(root, "NextMarker", enc(next_marker))
    _sub(root, "MaxKeys", str(max_keys))
    if delimiter is not None:
        _sub(root, "Delimiter", enc(delimiter))
    if encode:
        _sub(root, "EncodingType", "url")
    _sub(root, "IsTruncated", "true" if is_truncated else "false")
    # A page holds up to 1000 entries: elements are made directly, without _sub's call.
    sub = etree.SubElement
    for key, modified, etag, size in contents:
        c = sub(root, "Contents")
        sub(c, "Key").text = enc(key)
        sub(c, "LastModified").text = timestamp(modified)
        sub(c, "ETag").text = etag
        sub(c, "Size").text = str(size)
        if owner is not None:
            _owner(c, "Owner", owner)
        sub(c, "StorageClass").text = "STANDARD"
    _common_prefixes(root, common_prefixes, enc)
    return _doc(root)


def list_object_versions(
    *,
    bucket: str,
    prefix: str,
    delimiter: str | None,
    max_keys: int,
    encode: bool,
    key_marker: str,
    version_id_marker: str,
    contents: Iterable[tuple[str, datetime, str, int]],
    common_prefixes: Iterable[str],
    is_truncated: bool,
    owner: str,
    next_key_marker: str | None,
    next_version_id_marker: str | None,
) -> bytes:
    """ListVersionsResult of an unversioned bucket: each object is its one `null` version."""

    enc = _encoder(encode)
    root = _root("ListVersionsResult")
    _sub(root, "Name", bucket)
    _sub(root, "Prefix", enc(prefix))
    _sub(root, "KeyMarker", enc(key_marker))
    _sub(root, "VersionIdMarker", version_id_marker)
    if next_key_marker is not None:
        _sub(root, "NextKeyMarker", enc(next_key_marker))
    if next_version_id_marker is not None:
        _sub(root, "NextVersionIdMarker", next_version_id_marker)
    _sub(root, "MaxKeys", str(max_keys))
    if delimiter is not None:
        _sub(root, "Delimiter", enc(delimiter))
    if encode:
        _sub(root, "EncodingType", "url")
    _sub(root, "IsTruncated", "true" if is_truncated else "false")
    for key, modified, etag, size in contents:
        v = _sub(root, "Version")
        _sub(v, "Key", enc(key))
        _sub(v, "VersionId", "null")
        _sub(v, "IsLatest", "true")
        _sub(v, "LastModified", timestamp(modified))
        _sub(v, "ETag", etag)
        _sub(v, "Size", str(size))
        _owner(v, "Owner", owner)
        _sub(v, "StorageClass", "STANDARD")
    _common_prefixes(root, common_prefixes, enc)
    return _doc(root)


# --- multipart ------------------------------------------------------------------------


def initiate_multipart_upload(bucket: str, key: str, upload_id: str) -> bytes:
    root = _root("InitiateMultipartUploadResult")
    _sub(root, "Bucket", bucket)
    _sub(root, "Key", key)
    _sub(root, "UploadId", upload_id)
    return _doc(root)


def parse_complete_multipart_upload(body: bytes) -> list[tuple[int, str, dict[str, str]]]:
    """(PartNumber, ETag, {algorithm: base64 checksum}) in request order."""
    root = parse(body)
    if local_name(root) != "CompleteMultipartUpload":
        raise errors.MalformedXML()
    parts = []
    for el in root:
        if not isinstance(el.tag, str) or local_name(el) != "Part":
            continue
        number, etag = child_text(el, "PartNumber"), child_text(el, "ETag")
        if number is None or etag is None:
            raise errors.MalformedXML()
        sums = {}
        for child in el:
            name = local_name(child) if isinstance(child.tag, str) else ""
            if name.startswith("Checksum") and name[8:] in _CHECKSUM_ALGORITHMS:
                sums[name[8:]] = (child.text or "").strip()
        try:
            parts.append((int(number.strip()), etag.strip(), sums))
        except ValueError:
            raise errors.MalformedXML() from None
    return parts


_CHECKSUM_ALGORITHMS = frozenset({"CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"})


def complete_multipart_upload(
    location: str, bucket: str, key: str, etag: str, checksums: dict[str, str] | None = None
) -> bytes:
    root = _root("CompleteMultipartUploadResult")
    _sub(root, "Location", location)
    _sub(root, "Bucket", bucket)
    _sub(root, "Key", key)
    _sub(root, "ETag", etag)
    for algorithm, value in (checksums or {}).items():
        _sub(root, f"Checksum{algorithm}", value)
        _sub(root, "ChecksumType", "COMPOSITE" if "-" in value else "FULL_OBJECT")
    return _doc(root)


def copy_part_result(etag: str, last_modified: datetime) -> bytes:
    root = _root("CopyPartResult")
    _sub(root, "LastModified", timestamp(last_modified))
    _sub(root, "ETag", etag)
    return _doc(root)


def copy_object_result(
    etag: str, last_modified: datetime, checksums: dict[str, str] | None
) -> bytes:
    root = _root("CopyObjectResult")
    _sub(root, "LastModified", timestamp(last_modified))
    _sub(root, "ETag", etag)
    for algorithm, value in (checksums or {}).items():
        _sub(root, f"Checksum{algorithm}", value)
    return _doc(root)


MAX_DELETE_KEYS = 1000


def parse_delete(body: bytes) -> tuple[bool, list[tuple[str, str | None]]]:
    """DeleteObjects' `<Delete>`: (Quiet, [(Key, VersionId or None)]), 1 to 1000 objects."""
    root = parse(body)
    if local_name(root) != "Delete":
        raise errors.MalformedXML()
    quiet = False
    objects: list[tuple[str, str | None]] = []
    for el in root:
        if not isinstance(el.tag, str):
            continue
        name = local_name(el)
        if name == "Quiet":
            value = (el.text or "").strip().lower()
            if value not in ("true", "false"):
                raise errors.MalformedXML()
            quiet = value == "true"
        elif name == "Object":
            key = child_text(el, "Key")
            if not key:
                raise errors.MalformedXML()
            objects.append((key, child_text(el, "VersionId")))
    if not objects or len(objects) > MAX_DELETE_KEYS:
        raise errors.MalformedXML()
    return quiet, objects


def delete_result(
    deleted: Iterable[tuple[str, str | None]],
    failed: Iterable[tuple[str, str | None, str, str]],
) -> bytes:
    """DeleteResult: `deleted` as (Key, VersionId asked for), `failed` as (Key, VersionId,
    Code, Message)."""
    root = _root("DeleteResult")
    for key, version in deleted:
        d = _sub(root, "Deleted")
        _sub(d, "Key", _xml_safe(key))
        if version is not None:
            _sub(d, "VersionId", _xml_safe(version))
    for key, version, code, message in failed:
        e = _sub(root, "Error")
        _sub(e, "Key", _xml_safe(key))
        if version is not None:
            _sub(e, "VersionId", _xml_safe(version))
        _sub(e, "Code", code)
        _sub(e, "Message", message)
    return _doc(root)


def list_parts(
    *,
    bucket: str,
    key: str,
    upload_id: str,
    owner: str,
    marker: int,
    next_marker: int,
    max_parts: int,
    is_truncated: bool,
    parts: Iterable[tuple[int, datetime, str, int]],
) -> bytes:
    root = _root("ListPartsResult")
    _sub(root, "Bucket", bucket)
    _sub(root, "Key", key)
    _sub(root, "UploadId", upload_id)
    for name in ("Initiator", "Owner"):
        who = _sub(root, name)
        _sub(who, "ID", owner)
        _sub(who, "DisplayName", owner)
    _sub(root, "StorageClass", "STANDARD")
    _sub(root, "PartNumberMarker", str(marker))
    _sub(root, "NextPartNumberMarker", str(next_marker))
    _sub(root, "MaxParts", str(max_parts))
    _sub(root, "IsTruncated", "true" if is_truncated else "false")
    for number, modified, etag, size in parts:
        p = _sub(root, "Part")
        _sub(p, "PartNumber", str(number))
        _sub(p, "LastModified", timestamp(modified))
        _sub(p, "ETag", etag)
        _sub(p, "Size", str(size))
    return _doc(root)


def list_multipart_uploads(
    *,
    bucket: str,
    prefix: str,
    delimiter: str | None,
    key_marker: str,
    upload_id_marker: str,
    next_key_marker: str | None,
    next_upload_id_marker: str | None,
    max_uploads: int,
    is_truncated: bool,
    encode: bool,
    uploads: Iterable[tuple[str, str, datetime, str]],
    common_prefixes: Iterable[str],
) -> bytes:
    enc = _encoder(encode)
    root = _root("ListMultipartUploadsResult")
    _sub(root, "Bucket", bucket)
    _sub(root, "KeyMarker", enc(key_marker))
    _sub(root, "UploadIdMarker", upload_id_marker)
    if next_key_marker is not None:
        _sub(root, "NextKeyMarker", enc(next_key_marker))
    if next_upload_id_marker is not None:
        _sub(root, "NextUploadIdMarker", next_upload_id_marker)
    _sub(root, "Prefix", enc(prefix))
    if delimiter is not None:
        _sub(root, "Delimiter", enc(delimiter))
    _sub(root, "MaxUploads", str(max_uploads))
    if encode:
        _sub(root, "EncodingType", "url")
    _sub(root, "IsTruncated", "true" if is_truncated else "false")
    for key, upload_id, initiated, owner in uploads:
        u = _sub(root, "Upload")
        _sub(u, "Key", enc(key))
        _sub(u, "UploadId", upload_id)
        for name in ("Initiator", "Owner"):
            _owner(u, name, owner)
        _sub(u, "StorageClass", "STANDARD")
        _sub(u, "Initiated", timestamp(initiated))
    _common_prefixes(root, common_prefixes, enc)
    return _doc(root)


# --- bucket lifecycle -----------------------------------------------------------------
#
# Only whole-bucket AbortIncompleteMultipartUpload rules (see core/lifecycle.py). Order of
# refusal: a document that is not a well-formed configuration is MalformedXML; a valid one
# asking for something we do not do is NotImplemented; a bad value is InvalidArgument.

_RULE_ELEMENTS = frozenset({"ID", "Prefix", "Filter", "Status", "AbortIncompleteMultipartUpload"})
_OTHER_ACTIONS = frozenset(
    {"Expiration", "Transition", "NoncurrentVersionExpiration", "NoncurrentVersionTransition"}
)
_FILTER_ELEMENTS = frozenset(
    {"Prefix", "Tag", "And", "ObjectSizeGreaterThan", "ObjectSizeLessThan"}
)


def _children(el: etree._Element) -> dict[str, list[etree._Element]]:
    """Child elements by local name (comments and processing instructions skipped)."""
    out: dict[str, list[etree._Element]] = {}
    for child in el:
        if isinstance(child.tag, str):
            out.setdefault(local_name(child), []).append(child)
    return out


def _one(children: dict[str, list[etree._Element]], name: str) -> etree._Element | None:
    found = children.get(name, [])
    if len(found) > 1:
        raise errors.MalformedXML()
    return found[0] if found else None


def _leaf(el: etree._Element) -> str:
    """The text of an element that must hold text only."""
    if any(isinstance(child.tag, str) for child in el):
        raise errors.MalformedXML()
    return el.text or ""


def _rule_scope(children: dict[str, list[etree._Element]]) -> Scope:
    prefix = _one(children, "Prefix")
    filter_ = _one(children, "Filter")
    if prefix is not None and filter_ is not None:
        raise errors.MalformedXML()
    whole_bucket_only = errors.NotImplementedError_(
        "Lifecycle rules are only implemented for a whole bucket (an empty prefix and no "
        "other filter)."
    )
    if prefix is not None:
        if _leaf(prefix):
            raise whole_bucket_only
        return "prefix"
    if filter_ is None:
        return "none"
    conditions = _children(filter_)
    if set(conditions) - _FILTER_ELEMENTS:
        raise errors.MalformedXML()
    if sum(len(found) for found in conditions.values()) > 1:
        raise errors.MalformedXML()  # several conditions must be combined in <And>
    if not conditions:
        return "filter"
    inner = _one(conditions, "Prefix")
    if inner is None or _leaf(inner):
        raise whole_bucket_only
    return "filter-prefix"


def _days_after_initiation(action: etree._Element) -> int:
    fields = _children(action)
    if set(fields) != {"DaysAfterInitiation"}:
        raise errors.MalformedXML()
    field = _one(fields, "DaysAfterInitiation")
    assert field is not None
    text = _leaf(field).strip()
    days = int(text) if text.isascii() and text.isdigit() else 0
    if not 1 <= days <= MAX_DAYS:
        raise errors.InvalidArgument(
            "'DaysAfterInitiation' for AbortIncompleteMultipartUpload action must be a "
            "positive integer",
            ArgumentName="DaysAfterInitiation",
            ArgumentValue=text,
        )
    return days


def _lifecycle_rule(el: etree._Element) -> AbortRule:
    children = _children(el)
    if set(children) - _RULE_ELEMENTS - _OTHER_ACTIONS:
        raise errors.MalformedXML()
    status = _one(children, "Status")
    if status is None or _leaf(status) not in ("Enabled", "Disabled"):
        raise errors.MalformedXML()
    id_el = _one(children, "ID")
    rule_id = _leaf(id_el) if id_el is not None else ""
    scope = _rule_scope(children)
    other = sorted(set(children) & _OTHER_ACTIONS)
    if other:
        raise errors.NotImplementedError_(
            f"The lifecycle action {other[0]} is not implemented; only "
            "AbortIncompleteMultipartUpload is."
        )
    action = _one(children, "AbortIncompleteMultipartUpload")
    if action is None:
        raise errors.MalformedXML()  # a rule must have an action
    days = _days_after_initiation(action)
    if len(rule_id) > MAX_ID_LENGTH:
        raise errors.InvalidArgument(
            "ID length should not exceed allowed limit of 255",
            ArgumentName="ID",
            ArgumentValue=rule_id,
        )
    return AbortRule(rule_id=rule_id, enabled=_leaf(status) == "Enabled", days=days, scope=scope)


def parse_lifecycle_configuration(body: bytes) -> Lifecycle:
    """A PutBucketLifecycleConfiguration body. Rules without an ID keep an empty one."""
    if not body.strip():
        raise errors.MalformedXML()
    root = parse(body)
    children = _children(root)
    if local_name(root) != "LifecycleConfiguration" or set(children) - {"Rule"}:
        raise errors.MalformedXML()
    elements = children.get("Rule", [])
    if not 1 <= len(elements) <= MAX_RULES:
        raise errors.MalformedXML()
    rules = [_lifecycle_rule(el) for el in elements]
    seen: set[str] = set()
    for rule in rules:
        if rule.rule_id and rule.rule_id in seen:
            raise errors.InvalidArgument(
                "Rule ID must be unique. Found same ID for more than one rule",
                ArgumentName="ID",
                ArgumentValue=rule.rule_id,
            )
        seen.add(rule.rule_id)
    return Lifecycle(tuple(rules))


def lifecycle_configuration(config: Lifecycle) -> bytes:
    """GetBucketLifecycleConfiguration: the rules as they were put."""
    root = _root("LifecycleConfiguration")
    for rule in config.rules:
        el = _sub(root, "Rule")
        _sub(el, "ID", rule.rule_id)
        if rule.scope == "filter":
            _sub(el, "Filter")
        elif rule.scope == "filter-prefix":
            _sub(_sub(el, "Filter"), "Prefix", "")
        elif rule.scope == "prefix":
            _sub(el, "Prefix", "")
        _sub(el, "Status", "Enabled" if rule.enabled else "Disabled")
        action = _sub(el, "AbortIncompleteMultipartUpload")
        _sub(action, "DaysAfterInitiation", str(rule.days))
    return _doc(root)


# --- the small read-only operations clients probe -------------------------------------


def versioning_configuration() -> bytes:
    """An unversioned bucket: an empty VersioningConfiguration, as S3 answers."""
    return _doc(_root("VersioningConfiguration"))


def empty_tagging() -> bytes:
    root = _root("Tagging")
    _sub(root, "TagSet")
    return _doc(root)


def owner_full_control_acl(owner: str) -> bytes:
    root = _root("AccessControlPolicy")
    own = _sub(root, "Owner")
    _sub(own, "ID", owner)
    _sub(own, "DisplayName", owner)
    grants = _sub(root, "AccessControlList")
    grant = _sub(grants, "Grant")
    grantee = etree.SubElement(
        grant, "Grantee", nsmap={"xsi": "http://www.w3.org/2001/XMLSchema-instance"}
    )
    grantee.set("{http://www.w3.org/2001/XMLSchema-instance}type", "CanonicalUser")
    _sub(grantee, "ID", owner)
    _sub(grantee, "DisplayName", owner)
    _sub(grant, "Permission", "FULL_CONTROL")
    return _doc(root)
