"""Access keys the gateway accepts, and whose they are.

Keys come from a single pair given on the command line / environment, and/or a TOML file:

    [[users]]
    name = "alice"
    access_key = "AKIA..."
    secret_key = "..."

The file is re-read when it changes (checked at most once per second, on lookup), so keys
can be added or revoked without a restart. A file that fails to parse on reload is ignored
(the previous keys stay in force) rather than locking everybody out.

A third source is the database (`s3compat admin user …`). This module never reads it: the
composition root loads and decrypts those keys and hands them over whole with
`replace_db_entries`, periodically; `set_miss_hook` lets a lookup of an unknown key ask for
an early reload (at most once per second). A database key never overrides one given
directly or in the file.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CredentialStore", "CredentialsError"]

log = logging.getLogger(__name__)

_RECHECK_SECONDS = 1.0


class CredentialsError(ValueError):
    """The credentials configuration is unusable. Messages never include a secret."""


@dataclass(frozen=True, slots=True)
class _Entry:
    user: str
    secret: str = field(repr=False)


class CredentialStore:
    """Maps access key id → (user name, secret key)."""

    def __init__(
        self,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        user: str = "admin",
        path: str | os.PathLike[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (access_key is None) != (secret_key is None):
            raise CredentialsError("access_key and secret_key must be given together")
        self._static: dict[str, _Entry] = {}
        if access_key is not None and secret_key is not None:
            _check_pair(user, access_key, secret_key, "the given key pair")
            self._static[access_key] = _Entry(user, secret_key)
        self._path = Path(path) if path is not None else None
        self._clock = clock
        self._lock = threading.Lock()
        self._file_entries: dict[str, _Entry] = {}
        self._db_entries: dict[str, _Entry] = {}
        self._miss_hook: Callable[[], None] | None = None
        self._next_miss_call = float("-inf")
        self._file_stamp: tuple[int, int, int] | None = None
        self._next_check = float("-inf")
        if self._path is not None:
            # A broken file at start-up is a configuration error: fail loudly.
            self._file_stamp, self._file_entries = self._read()
            self._next_check = self._clock() + _RECHECK_SECONDS
        self._entries = self._merge(self._file_entries)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> CredentialStore:
        return cls(path=path)

    # ---------------------------------------------------------------- lookups

    def lookup_secret(self, access_key: str) -> str | None:
        entry = self._lookup(access_key)
        return entry.secret if entry is not None else None

    def user_for(self, access_key: str) -> str | None:
        entry = self._lookup(access_key)
        return entry.user if entry is not None else None

    def access_keys(self) -> list[str]:
        self._maybe_reload()
        return sorted(self._entries)

    def __len__(self) -> int:
        self._maybe_reload()
        return len(self._entries)

    def __repr__(self) -> str:
        keys = ", ".join(sorted(self._entries))
        source = f", path={str(self._path)!r}" if self._path is not None else ""
        return f"CredentialStore(access_keys=[{keys}]{source})"

    def replace_db_entries(self, entries: Mapping[str, tuple[str, str]]) -> None:
        """Replace every database key with `entries` ({access key: (user, secret)})."""
        db: dict[str, _Entry] = {}
        for access_key, (user, secret) in entries.items():
            try:
                _check_pair(user, access_key, secret, "database")
            except CredentialsError as exc:
                log.warning("database key skipped: %s", exc)
                continue
            db[access_key] = _Entry(user, secret)
        with self._lock:
            if db == self._db_entries:
                return
            self._db_entries = db
            self._entries = self._merge(self._file_entries)

    def set_miss_hook(self, hook: Callable[[], None] | None) -> None:
        """`hook()` is called (at most once per second) when a lookup finds no key, so the
        caller can reload the database keys early. It must not block."""
        self._miss_hook = hook

    def reload(self) -> bool:
        """Re-read the file now if it changed; True when the key set was replaced."""
        with self._lock:
            return self._reload_locked(force=True)

    # --------------------------------------------------------------- internals

    def _lookup(self, access_key: str) -> _Entry | None:
        self._maybe_reload()
        entry = self._entries.get(access_key)
        if entry is None and self._miss_hook is not None:
            now = self._clock()
            if now >= self._next_miss_call:
                self._next_miss_call = now + _RECHECK_SECONDS
                try:
                    self._miss_hook()
                except Exception:
                    log.exception("credentials miss hook failed")
        return entry

    def _maybe_reload(self) -> None:
        if self._path is None or self._clock() < self._next_check:
            return
        with self._lock:
            if self._clock() >= self._next_check:
                self._reload_locked(force=False)

    def _reload_locked(self, *, force: bool) -> bool:
        assert self._path is not None
        self._next_check = self._clock() + _RECHECK_SECONDS
        try:
            stamp = _stamp(self._path)
        except OSError as exc:
            log.warning(
                "credentials file %s unreadable (%s); keeping current keys", self._path, exc
            )
            return False
        if stamp == self._file_stamp and not force:
            return False
        try:
            stamp, entries = self._read()
            merged = self._merge(entries)
        except (OSError, CredentialsError) as exc:
            log.warning("credentials file %s not reloaded: %s", self._path, exc)
            # Remember the bad version so that it is not re-parsed every second.
            self._file_stamp = stamp
            return False
        self._file_stamp, self._file_entries, self._entries = stamp, entries, merged
        log.info("credentials file %s loaded: %d key(s)", self._path, len(entries))
        return True

    def _read(self) -> tuple[tuple[int, int, int], dict[str, _Entry]]:
        assert self._path is not None
        with open(self._path, "rb") as fh:
            stamp = _stamp_fd(fh.fileno())
            try:
                document = tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                # TOMLDecodeError quotes no source text, only a position.
                raise CredentialsError(f"{self._path}: invalid TOML: {exc}") from None
        return stamp, _parse_users(document, str(self._path))

    def _merge(self, file_entries: Mapping[str, _Entry]) -> dict[str, _Entry]:
        merged = dict(self._db_entries)
        for access_key in file_entries.keys() & self._db_entries.keys():
            log.warning("access key %s is in the database and the file: the file wins", access_key)
        merged.update(file_entries)
        for access_key, entry in self._static.items():
            other = file_entries.get(access_key)
            if other is not None and other != entry:
                raise CredentialsError(
                    f"access key {access_key} is defined both directly and in the file, "
                    f"with different users or secrets"
                )
            merged[access_key] = entry
        return merged


def _stamp(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _stamp_fd(fd: int) -> tuple[int, int, int]:
    st = os.fstat(fd)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _parse_users(document: Mapping[str, object], source: str) -> dict[str, _Entry]:
    users = document.get("users", [])
    if not isinstance(users, list):
        raise CredentialsError(f"{source}: 'users' must be an array of tables ([[users]])")
    entries: dict[str, _Entry] = {}
    for index, item in enumerate(users):
        where = f"{source}: users[{index}]"
        if not isinstance(item, dict):
            raise CredentialsError(f"{where} must be a table")
        name, access_key, secret = (item.get(k) for k in ("name", "access_key", "secret_key"))
        if not isinstance(name, str) or not isinstance(access_key, str):
            raise CredentialsError(f"{where} needs string 'name' and 'access_key'")
        if not isinstance(secret, str):
            raise CredentialsError(f"{where} ({access_key}) needs a string 'secret_key'")
        _check_pair(name, access_key, secret, where)
        if access_key in entries:
            raise CredentialsError(f"{where}: access key {access_key} appears more than once")
        entries[access_key] = _Entry(name, secret)
    return entries


def _check_pair(user: str, access_key: str, secret: str, where: str) -> None:
    if not user:
        raise CredentialsError(f"{where}: the user name is empty")
    # '/' would break the SigV4 Credential=AK/date/region/service/aws4_request syntax.
    if not access_key or "/" in access_key or access_key.strip() != access_key:
        raise CredentialsError(f"{where}: invalid access key {access_key!r}")
    if not secret:
        raise CredentialsError(f"{where} ({access_key}): the secret key is empty")
