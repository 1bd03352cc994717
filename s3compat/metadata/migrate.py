"""Apply schema.sql at start: each `-- version: N` section once, in order, idempotently."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import asyncpg

from s3compat.metadata import queries

_SECTION = re.compile(r"^-- version: (\d+)\s*$", re.MULTILINE)


def schema_text() -> str:
    # The packaged copy (s3compat/metadata/schema.sql is a link to the repository's
    # top-level schema.sql, which setuptools copies into wheels).
    packaged = resources.files("s3compat.metadata").joinpath("schema.sql")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parents[2] / "schema.sql").read_text(encoding="utf-8")


def schema_sections(text: str) -> list[tuple[int, str]]:
    """Split the schema into (version, sql) sections, checking they are numbered 1, 2, …."""
    marks = list(_SECTION.finditer(text))
    sections = []
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        sections.append((int(mark.group(1)), text[mark.end() : end]))
    versions = [v for v, _ in sections]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"schema.sql sections must be numbered 1..N, found {versions}")
    return sections


async def migrate(conn: asyncpg.Connection) -> int:
    """Bring the database to the newest schema version; returns that version.

    The advisory lock makes concurrent starts safe: the second gateway waits, then finds
    every section already applied.
    """
    sections = schema_sections(schema_text())
    async with conn.transaction():
        await conn.execute(queries.MIGRATION_LOCK)
        await conn.execute(queries.SCHEMA_VERSION_TABLE)
        current: int = await conn.fetchval(queries.CURRENT_SCHEMA_VERSION)
        for version, sql in sections:
            if version > current:
                await conn.execute(sql)
                await conn.execute(queries.RECORD_SCHEMA_VERSION, version)
                current = version
    return current
