"""Encryption of the secret keys stored in the database, and the store's database source."""

from __future__ import annotations

import base64
import re

import pytest

from s3compat.api.credentials import CredentialStore
from s3compat.metadata.keycrypt import (
    KeyCryptError,
    MasterKey,
    decrypt_secret,
    encrypt_secret,
    generate_master_key,
    new_access_key,
    new_secret_key,
)

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


def test_round_trip() -> None:
    master = MasterKey(generate_master_key())
    blob = encrypt_secret(master, "S3CAAAA", SECRET)
    assert SECRET.encode() not in blob
    assert decrypt_secret(master, "S3CAAAA", blob) == SECRET


def test_nonce_is_fresh_every_time() -> None:
    master = MasterKey(generate_master_key())
    assert encrypt_secret(master, "S3CAAAA", SECRET) != encrypt_secret(master, "S3CAAAA", SECRET)


def test_wrong_master_key_fails() -> None:
    blob = encrypt_secret(MasterKey(generate_master_key()), "S3CAAAA", SECRET)
    with pytest.raises(KeyCryptError):
        decrypt_secret(MasterKey(generate_master_key()), "S3CAAAA", blob)


def test_ciphertext_moved_to_another_access_key_fails() -> None:
    master = MasterKey(generate_master_key())
    blob = encrypt_secret(master, "S3CAAAA", SECRET)
    with pytest.raises(KeyCryptError):
        decrypt_secret(master, "S3CBBBB", blob)


def test_tampered_or_truncated_ciphertext_fails() -> None:
    master = MasterKey(generate_master_key())
    blob = bytearray(encrypt_secret(master, "S3CAAAA", SECRET))
    blob[-1] ^= 1
    for bad in (bytes(blob), bytes(blob[:10]), b"", b"\x02" + bytes(blob[1:])):
        with pytest.raises(KeyCryptError):
            decrypt_secret(master, "S3CAAAA", bad)


@pytest.mark.parametrize(
    "encoded",
    ["", "not base64!", base64.b64encode(b"x" * 16).decode(), base64.b64encode(b"x" * 33).decode()],
)
def test_bad_master_keys_are_refused(encoded: str) -> None:
    with pytest.raises(KeyCryptError) as info:
        MasterKey(encoded)
    assert encoded not in str(info.value) or not encoded


def test_master_key_repr_hides_it() -> None:
    encoded = generate_master_key()
    assert encoded not in repr(MasterKey(encoded))
    assert "hidden" in repr(MasterKey(encoded))


def test_generated_keys_have_their_formats() -> None:
    assert re.fullmatch(r"S3C[0-9A-F]{16}", new_access_key())
    assert re.fullmatch(r"[A-Za-z0-9_-]{40}", new_secret_key())
    assert len(base64.b64decode(generate_master_key())) == 32


def test_store_database_entries_are_replaced_whole() -> None:
    store = CredentialStore(access_key="STATIC", secret_key="static-secret", user="admin")
    store.replace_db_entries({"S3CALICE": ("alice", SECRET)})
    assert store.user_for("S3CALICE") == "alice"
    assert store.lookup_secret("S3CALICE") == SECRET
    assert SECRET not in repr(store)
    store.replace_db_entries({})
    assert store.lookup_secret("S3CALICE") is None
    assert store.user_for("STATIC") == "admin"


def test_store_static_key_wins_over_database() -> None:
    store = CredentialStore(access_key="STATIC", secret_key="static-secret", user="admin")
    store.replace_db_entries({"STATIC": ("mallory", "other-secret")})
    assert store.user_for("STATIC") == "admin"
    assert store.lookup_secret("STATIC") == "static-secret"


def test_store_miss_hook_is_rate_limited() -> None:
    now = [100.0]
    calls: list[int] = []
    store = CredentialStore(clock=lambda: now[0])
    store.set_miss_hook(lambda: calls.append(1))
    store.lookup_secret("NOPE")
    store.lookup_secret("NOPE")
    assert len(calls) == 1
    now[0] += 1.5
    store.user_for("NOPE")
    assert len(calls) == 2
    store.replace_db_entries({"NOPE": ("alice", SECRET)})
    now[0] += 5
    store.lookup_secret("NOPE")
    assert len(calls) == 2
