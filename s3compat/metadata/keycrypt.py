"""Encryption of stored secret keys (AES-256-GCM under the master key).

SigV4 and SigV2 recompute the client's signature from the plain secret, so a secret cannot
be stored as a hash: it is stored encrypted instead. The key is `S3COMPAT_MASTER_KEY`
(base64 of 32 random bytes), which lives outside the database. Someone who holds only the
database learns access keys and user names, never a usable secret.

The access key is the associated data: a ciphertext copied onto another access key's row
fails to decrypt, so database write access alone cannot make one user's secret valid for
another key.

Layout of `secret_enc`: version byte (1) ‖ 12-byte random nonce ‖ ciphertext ‖ 16-byte tag.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "KeyCryptError",
    "MasterKey",
    "decrypt_secret",
    "encrypt_secret",
    "generate_master_key",
    "new_access_key",
    "new_secret_key",
]

_VERSION = b"\x01"
_NONCE_SIZE = 12
_KEY_SIZE = 32


class KeyCryptError(ValueError):
    """A master key or a ciphertext is unusable. Messages never include a secret."""


class MasterKey:
    """The 32-byte AES key, parsed from its base64 form. Its repr shows nothing of it."""

    __slots__ = ("_aead",)

    def __init__(self, encoded: str) -> None:
        try:
            raw = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise KeyCryptError("the master key is not valid base64") from None
        if len(raw) != _KEY_SIZE:
            raise KeyCryptError(
                f"the master key must be {_KEY_SIZE} bytes (base64), not {len(raw)}"
            )
        self._aead = AESGCM(raw)

    def __repr__(self) -> str:
        return "MasterKey(<hidden>)"

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(_NONCE_SIZE)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        if len(blob) < 1 + _NONCE_SIZE + 16 or blob[:1] != _VERSION:
            raise KeyCryptError("not an encrypted secret of a known version")
        nonce, body = blob[1 : 1 + _NONCE_SIZE], blob[1 + _NONCE_SIZE :]
        try:
            return self._aead.decrypt(nonce, body, aad)
        except InvalidTag:
            raise KeyCryptError(
                "the secret does not decrypt: another master key, or moved to another row"
            ) from None


def _aad(access_key: str) -> bytes:
    return b"s3compat access key\x00" + access_key.encode("utf-8")


def encrypt_secret(master: MasterKey, access_key: str, secret: str) -> bytes:
    return master.encrypt(secret.encode("utf-8"), _aad(access_key))


def decrypt_secret(master: MasterKey, access_key: str, blob: bytes) -> str:
    return master.decrypt(bytes(blob), _aad(access_key)).decode("utf-8")


def generate_master_key() -> str:
    """A new master key, base64-encoded as S3COMPAT_MASTER_KEY wants it."""
    return base64.b64encode(secrets.token_bytes(_KEY_SIZE)).decode("ascii")


def new_access_key() -> str:
    """`S3C` and 16 upper-case hex digits."""
    return "S3C" + secrets.token_hex(8).upper()


def new_secret_key() -> str:
    """40 URL-safe characters (240 random bits)."""
    return secrets.token_urlsafe(30)
