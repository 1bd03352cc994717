"""Bucket lifecycle configuration, limited to the one action we enforce.

Only AbortIncompleteMultipartUpload rules that cover the whole bucket are accepted: the
janitor aborts uploads by a single per-bucket TTL (`buckets.upload_ttl`), so a rule scoped
to a prefix or tag, or any other action, would be a promise we cannot keep. The API layer
refuses those with NotImplemented before a configuration object is ever built.

The rules are stored as given (JSON in `buckets.lifecycle`), so that
GetBucketLifecycleConfiguration answers with the document the client sent; the TTL is
derived from them and stored next to them in the same UPDATE.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Literal, cast

# How a rule said "the whole bucket", echoed back by Get: no filter at all, an empty
# <Filter/>, <Filter><Prefix/></Filter>, or the legacy rule-level <Prefix/>.
Scope = Literal["none", "filter", "filter-prefix", "prefix"]
SCOPES: tuple[Scope, ...] = ("none", "filter", "filter-prefix", "prefix")

MAX_RULES = 1000
MAX_ID_LENGTH = 255
MAX_DAYS = 2**31 - 1
# The TTL is clamped here: PostgreSQL computes now() - TTL, which must stay a valid
# timestamp (and Python's timedelta tops out near 2.7 million years). About 2,700 years
# means "never" all the same; Get still shows the days the client asked for.
MAX_TTL_DAYS = 1_000_000


@dataclass(frozen=True, slots=True)
class AbortRule:
    """One rule: abort multipart uploads `days` days after they were initiated."""

    rule_id: str
    enabled: bool
    days: int
    scope: Scope = "filter-prefix"


@dataclass(frozen=True, slots=True)
class LifecycleConfiguration:
    rules: tuple[AbortRule, ...]

    @property
    def upload_ttl(self) -> timedelta | None:
        """The age past which the bucket's uploads are aborted; None = the cluster default.

        Several enabled rules all cover the whole bucket, so the shortest one wins, as it
        would on S3 where every matching rule applies.
        """
        days = [r.days for r in self.rules if r.enabled]
        if not days:
            return None
        return timedelta(days=min(min(days), MAX_TTL_DAYS))

    def with_rule_ids(self) -> LifecycleConfiguration:
        """Name every unnamed rule, as S3 does, so that Get always shows an ID."""
        taken = {r.rule_id for r in self.rules}
        rules = []
        for rule in self.rules:
            if not rule.rule_id:
                new_id = secrets.token_hex(16)
                while new_id in taken:  # pragma: no cover - 128 random bits
                    new_id = secrets.token_hex(16)
                taken.add(new_id)
                rule = replace(rule, rule_id=new_id)
            rules.append(rule)
        return LifecycleConfiguration(tuple(rules))

    def to_json(self) -> dict[str, Any]:
        return {
            "rules": [
                {"id": r.rule_id, "enabled": r.enabled, "days": r.days, "scope": r.scope}
                for r in self.rules
            ]
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> LifecycleConfiguration:
        rules = []
        for r in doc["rules"]:
            scope = r.get("scope", "filter-prefix")
            if scope not in SCOPES:
                scope = "filter-prefix"
            rules.append(
                AbortRule(
                    rule_id=str(r["id"]),
                    enabled=bool(r["enabled"]),
                    days=int(r["days"]),
                    scope=cast(Scope, scope),
                )
            )
        return cls(tuple(rules))
