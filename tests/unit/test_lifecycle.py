"""Lifecycle configurations: parsing, the golden Get document, the TTL they imply, and the
janitor aborting expired uploads (once each, however many janitors run)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest

from s3compat.api import xml
from s3compat.core import errors
from s3compat.core.lifecycle import MAX_TTL_DAYS, AbortRule, LifecycleConfiguration
from s3compat.service.janitor import Janitor

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
DECL = b"<?xml version='1.0' encoding='UTF-8'?>\n"


def _doc(body: str) -> bytes:
    return f'<LifecycleConfiguration xmlns="{NS}">{body}</LifecycleConfiguration>'.encode()


ABORT_7 = (
    "<AbortIncompleteMultipartUpload><DaysAfterInitiation>7</DaysAfterInitiation>"
    "</AbortIncompleteMultipartUpload>"
)


# --- parsing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope_xml", "scope"),
    [
        ("", "none"),
        ("<Filter/>", "filter"),
        ("<Filter></Filter>", "filter"),
        ("<Filter><Prefix/></Filter>", "filter-prefix"),
        ("<Filter><Prefix></Prefix></Filter>", "filter-prefix"),
        ("<Prefix/>", "prefix"),
    ],
)
def test_whole_bucket_scopes(scope_xml: str, scope: str) -> None:
    body = _doc(f"<Rule><ID>a</ID>{scope_xml}<Status>Enabled</Status>{ABORT_7}</Rule>")
    config = xml.parse_lifecycle_configuration(body)
    assert config.rules == (AbortRule("a", True, 7, scope),)  # type: ignore[arg-type]


def test_documents_without_namespace_and_with_comments_are_read() -> None:
    body = (
        b"<LifecycleConfiguration><!-- c --><Rule><Status>Disabled</Status>"
        b"<AbortIncompleteMultipartUpload><DaysAfterInitiation> 3 </DaysAfterInitiation>"
        b"</AbortIncompleteMultipartUpload></Rule></LifecycleConfiguration>"
    )
    assert xml.parse_lifecycle_configuration(body).rules == (AbortRule("", False, 3, "none"),)


@pytest.mark.parametrize(
    "rule",
    [
        f"<Filter><Prefix>logs/</Prefix></Filter><Status>Enabled</Status>{ABORT_7}",
        f"<Prefix>logs/</Prefix><Status>Enabled</Status>{ABORT_7}",
        f"<Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter><Status>Enabled</Status>{ABORT_7}",
        f"<Filter><And><Prefix/></And></Filter><Status>Enabled</Status>{ABORT_7}",
        f"<Filter><ObjectSizeLessThan>5</ObjectSizeLessThan></Filter>"
        f"<Status>Enabled</Status>{ABORT_7}",
        "<Status>Enabled</Status><Expiration><Days>1</Days></Expiration>",
        f"<Status>Enabled</Status>{ABORT_7}<Transition><Days>1</Days></Transition>",
        "<Status>Enabled</Status><NoncurrentVersionExpiration><NoncurrentDays>1"
        "</NoncurrentDays></NoncurrentVersionExpiration>",
        "<Status>Enabled</Status><NoncurrentVersionTransition><NoncurrentDays>1"
        "</NoncurrentDays></NoncurrentVersionTransition>",
    ],
)
def test_not_implemented(rule: str) -> None:
    with pytest.raises(errors.NotImplementedError_):
        xml.parse_lifecycle_configuration(_doc(f"<Rule>{rule}</Rule>"))


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"<oops",
        b"<LifecycleConfiguration/>",
        _doc("<Rule><Status>Enabled</Status>" + ABORT_7 + "</Rule><Bogus/>"),
        _doc(f"<Rule>{ABORT_7}</Rule>"),
        _doc(f"<Rule><Status>On</Status>{ABORT_7}</Rule>"),
        _doc(f"<Rule><Status><b>Enabled</b></Status>{ABORT_7}</Rule>"),
        _doc(f"<Rule><Status>Enabled</Status><Status>Enabled</Status>{ABORT_7}</Rule>"),
        _doc(f"<Rule><Status>Enabled</Status>{ABORT_7}{ABORT_7}</Rule>"),
        _doc("<Rule><Status>Enabled</Status></Rule>"),
        _doc("<Rule><Status>Enabled</Status><AbortIncompleteMultipartUpload/></Rule>"),
        _doc(
            "<Rule><Status>Enabled</Status><AbortIncompleteMultipartUpload>"
            "<DaysAfterInitiation>1</DaysAfterInitiation><Extra/>"
            "</AbortIncompleteMultipartUpload></Rule>"
        ),
        _doc(f"<Rule><Prefix/><Filter/><Status>Enabled</Status>{ABORT_7}</Rule>"),
        _doc(f"<Rule><Filter><Prefix/><Prefix/></Filter><Status>Enabled</Status>{ABORT_7}</Rule>"),
        _doc(f"<Rule><Filter><Size/></Filter><Status>Enabled</Status>{ABORT_7}</Rule>"),
        _doc("".join(f"<Rule><Status>Enabled</Status>{ABORT_7}</Rule>" for _ in range(1001))),
    ],
)
def test_malformed(body: bytes) -> None:
    with pytest.raises(errors.MalformedXML):
        xml.parse_lifecycle_configuration(body)


@pytest.mark.parametrize("days", ["0", "-2", "x", "", "1e3", "٣", "2147483648", "3.0"])
def test_days_must_be_a_positive_integer(days: str) -> None:
    body = _doc(
        "<Rule><Status>Enabled</Status><AbortIncompleteMultipartUpload>"
        f"<DaysAfterInitiation>{days}</DaysAfterInitiation>"
        "</AbortIncompleteMultipartUpload></Rule>"
    )
    with pytest.raises(errors.InvalidArgument):
        xml.parse_lifecycle_configuration(body)


def test_ids_unique_and_short() -> None:
    rule = f"<Status>Enabled</Status>{ABORT_7}"
    with pytest.raises(errors.InvalidArgument):
        xml.parse_lifecycle_configuration(_doc(f"<Rule><ID>a</ID>{rule}</Rule>" * 2))
    with pytest.raises(errors.InvalidArgument):
        xml.parse_lifecycle_configuration(_doc(f"<Rule><ID>{'i' * 256}</ID>{rule}</Rule>"))
    # Two unnamed rules are not a duplicate: each is named later.
    config = xml.parse_lifecycle_configuration(_doc(f"<Rule>{rule}</Rule>" * 2))
    named = config.with_rule_ids()
    assert len({r.rule_id for r in named.rules}) == 2 and all(r.rule_id for r in named.rules)


# --- the Get document -----------------------------------------------------------------


def test_golden_get_document() -> None:
    config = LifecycleConfiguration(
        (
            AbortRule("a", True, 7, "filter-prefix"),
            AbortRule("b", False, 2, "filter"),
            AbortRule("c", True, 9, "prefix"),
            AbortRule("d", True, 1, "none"),
        )
    )
    abort = b"<AbortIncompleteMultipartUpload><DaysAfterInitiation>%d</DaysAfterInitiation>"
    abort += b"</AbortIncompleteMultipartUpload>"
    assert xml.lifecycle_configuration(config) == (
        DECL + b'<LifecycleConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<Rule><ID>a</ID><Filter><Prefix></Prefix></Filter><Status>Enabled</Status>"
        + abort % 7
        + b"</Rule><Rule><ID>b</ID><Filter/><Status>Disabled</Status>"
        + abort % 2
        + b"</Rule><Rule><ID>c</ID><Prefix></Prefix><Status>Enabled</Status>"
        + abort % 9
        + b"</Rule><Rule><ID>d</ID><Status>Enabled</Status>"
        + abort % 1
        + b"</Rule></LifecycleConfiguration>"
    )
    # What Get writes, Put reads back unchanged.
    assert xml.parse_lifecycle_configuration(xml.lifecycle_configuration(config)) == config


# --- the TTL and storage --------------------------------------------------------------


def test_upload_ttl_is_the_shortest_enabled_rule() -> None:
    rules = (AbortRule("a", True, 9), AbortRule("b", False, 1), AbortRule("c", True, 4))
    assert LifecycleConfiguration(rules).upload_ttl == timedelta(days=4)
    assert LifecycleConfiguration((AbortRule("b", False, 1),)).upload_ttl is None
    huge = LifecycleConfiguration((AbortRule("h", True, 2**31 - 1),))
    assert huge.upload_ttl == timedelta(days=MAX_TTL_DAYS)


def test_json_round_trip() -> None:
    config = LifecycleConfiguration(
        (AbortRule("a", True, 7, "filter-prefix"), AbortRule("b", False, 2, "none"))
    )
    assert LifecycleConfiguration.from_json(config.to_json()) == config


# --- the janitor ----------------------------------------------------------------------


class _Uploads:
    """Just enough of MetadataStore for the janitor's upload pass.

    `shared` stands for the uploads table that several janitors see; `lose` uploads are
    aborted by "another janitor" between our query and our abort, as under concurrency.
    """

    def __init__(self, shared: dict[uuid.UUID, timedelta], lose: set[uuid.UUID]) -> None:
        self.shared = shared
        self.lose = lose
        self.ttls: list[timedelta] = []

    async def expired_uploads(
        self, default_ttl: timedelta, limit: int
    ) -> list[tuple[uuid.UUID, str, str]]:
        self.ttls.append(default_ttl)
        old = [u for u, age in self.shared.items() if age > default_ttl]
        return [(u, "b", "k") for u in old[:limit]]

    async def abort_upload(self, upload_id: uuid.UUID, bucket: str, key: str) -> bool:
        if upload_id in self.lose:
            self.shared.pop(upload_id, None)
            return False
        return self.shared.pop(upload_id, None) is not None

    async def abort_stale_writes(self, older_than: timedelta) -> int:
        return 0

    async def collect_batch(self, limit: int, collector: Any, retry_after: timedelta) -> int:
        return 0


def _janitor(meta: Any, ttl: timedelta, batch: int = 3) -> Janitor:
    return Janitor(
        meta,
        nodes=None,  # type: ignore[arg-type]  # no chunks to delete in these tests
        stale_write_after=timedelta(minutes=10),
        retry_after=timedelta(minutes=1),
        upload_ttl=ttl,
        batch=batch,
    )


def _uploads(ages: Sequence[int]) -> dict[uuid.UUID, timedelta]:
    return {uuid.uuid4(): timedelta(days=d) for d in ages}


def test_janitor_aborts_every_expired_upload_in_pages() -> None:
    shared = _uploads([1, 8, 9, 10, 11, 12, 13, 14])
    meta = _Uploads(shared, set())
    report = asyncio.run(_janitor(meta, timedelta(days=7)).run_once())
    assert report.uploads_aborted == 7
    assert list(shared.values()) == [timedelta(days=1)]
    assert set(meta.ttls) == {timedelta(days=7)}


def test_janitor_counts_only_the_uploads_it_aborted() -> None:
    shared = _uploads([8, 9, 10, 11, 12])
    lost = set(list(shared)[:2])
    meta = _Uploads(shared, lost)
    report = asyncio.run(_janitor(meta, timedelta(days=7), batch=10).run_once())
    assert report.uploads_aborted == 3
    assert not shared


def test_janitor_leaves_a_page_another_janitor_is_taking() -> None:
    shared = _uploads([8, 9, 10, 11, 12, 13])
    meta = _Uploads(shared, set(shared))  # every abort loses the race
    report = asyncio.run(_janitor(meta, timedelta(days=7), batch=3).run_once())
    assert report.uploads_aborted == 0
    assert len(meta.ttls) == 1  # gave up after one full page of losses, no spinning
