"""Users and access keys kept in PostgreSQL (`s3compat admin user …`, and the gateway's
periodic load of the keys). Secrets are stored only encrypted: see keycrypt.py."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from s3compat.metadata import queries
from s3compat.metadata.keycrypt import (
    KeyCryptError,
    MasterKey,
    decrypt_secret,
    encrypt_secret,
    new_access_key,
    new_secret_key,
)

__all__ = [
    "NewKeyPair",
    "UserError",
    "UserInfo",
    "add_user",
    "list_users",
    "load_access_keys",
    "remove_user",
]

log = logging.getLogger(__name__)

# Access keys already warned about, so a bad row is reported once, not on every reload.
_warned: set[str] = set()

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+=-]{0,63}$")


class UserError(ValueError):
    """A user operation that cannot be done (exists, unknown, owns buckets, bad name)."""


@dataclass(frozen=True, slots=True)
class NewKeyPair:
    user: str
    access_key: str
    secret_key: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class UserInfo:
    name: str
    created_at: datetime
    access_keys: tuple[str, ...]


def check_user_name(name: str) -> None:
    if not _NAME.match(name):
        raise UserError(
            f"invalid user name {name!r}: 1-64 characters, letters, digits and ._@+=- "
            "(starting with a letter or digit)"
        )


async def add_user(conn: asyncpg.Connection, master: MasterKey, name: str) -> NewKeyPair:
    """Create `name` with a new key pair, in one transaction; UserError if it exists."""
    check_user_name(name)
    access_key, secret = new_access_key(), new_secret_key()
    async with conn.transaction():
        if await conn.fetchrow(queries.INSERT_USER, name) is None:
            raise UserError(f"user {name!r} already exists")
        await conn.execute(
            queries.INSERT_ACCESS_KEY, access_key, name, encrypt_secret(master, access_key, secret)
        )
    return NewKeyPair(name, access_key, secret)


async def list_users(conn: asyncpg.Connection) -> list[UserInfo]:
    rows = await conn.fetch(queries.LIST_USERS)
    return [UserInfo(r["name"], r["created_at"], tuple(r["access_keys"])) for r in rows]


async def remove_user(conn: asyncpg.Connection, name: str) -> None:
    """Delete `name` and its keys. Refused (UserError) while the user owns buckets: they
    would be left with an owner nobody can sign as."""
    async with conn.transaction():
        if await conn.fetchrow(queries.LOCK_USER, name) is None:
            raise UserError(f"no user {name!r}")
        buckets = [r["name"] for r in await conn.fetch(queries.BUCKETS_OF_OWNER, name)]
        if buckets:
            shown = ", ".join(buckets[:10]) + (", …" if len(buckets) > 10 else "")
            raise UserError(
                f"user {name!r} still owns {len(buckets)} bucket(s): {shown}; delete them first"
            )
        await conn.execute(queries.DELETE_USER, name)


async def load_access_keys(
    conn: asyncpg.Connection | asyncpg.Pool, master: MasterKey
) -> dict[str, tuple[str, str]]:
    """Every stored key, decrypted: {access key: (user, secret)}. A row that does not
    decrypt (another master key, or tampered with) is skipped with a warning naming only
    its access key."""
    rows = await conn.fetch(queries.ALL_ACCESS_KEYS)
    keys: dict[str, tuple[str, str]] = {}
    for row in rows:
        access_key = row["access_key"]
        try:
            secret = decrypt_secret(master, access_key, row["secret_enc"])
        except KeyCryptError as exc:
            if access_key not in _warned:
                _warned.add(access_key)
                log.warning("access key %s skipped: %s", access_key, exc)
            continue
        keys[access_key] = (row["user_name"], secret)
    return keys
