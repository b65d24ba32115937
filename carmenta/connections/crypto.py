"""Encryption of stored secrets (service credentials, API keys): AES-256-GCM.

A stored value reads `v1.<kid>.<nonce>.<ciphertext+tag>` (the last two base64url,
unpadded). Each encryption draws a fresh random 96-bit nonce. The associated data
names the table, row and column the value belongs to, so a value copied to another
row or column does not decrypt.

ENCRYPTION_KEYS is the key ring, `kid:base64key[,kid:base64key...]`: the first key
encrypts, every key decrypts. To rotate, put a new key first, keep the old ones, run
`python -m carmenta rotate-keys`, then drop the old keys. In development without
ENCRYPTION_KEYS, a key is generated once under DATA_DIR/keys (kid "dev").
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
import os
import re
import stat
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from carmenta import key_files
from carmenta.errors import CarmentaError, ConfigurationError
from carmenta.settings import Settings, get_settings

logger = logging.getLogger(__name__)

VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
DEV_KID = "dev"
DEV_KEY_FILE = "encryption_key"
_KID = re.compile(r"[A-Za-z0-9_-]{1,32}")
# How long to wait for a key file another process is still writing.
_PARTIAL_FILE_WAIT_SECONDS = 2.0

GENERATE_HINT = (
    'generate one with: python -c "import base64, os; '
    "print('k1:' + base64.b64encode(os.urandom(32)).decode())\""
)


class DecryptionError(CarmentaError):
    """A stored value cannot be decrypted: unknown key, tampered, or not its row's."""


@dataclass(frozen=True)
class EncryptedColumn:
    """A column holding values of this module; key rotation re-encrypts it."""

    table: str
    column: str
    id_column: str = "id"


# The associated data uses the column name as the field name, so each value is
# bound to (table, row id, column).
ENCRYPTED_COLUMNS: tuple[EncryptedColumn, ...] = (
    EncryptedColumn(table="service_connections", column="encrypted_credentials"),
    EncryptedColumn(table="oauth_states", column="code_verifier"),
)


def field_aad(*, table: str, row_id: uuid.UUID | str, field: str) -> bytes:
    return f"carmenta|{table}|{row_id}|{field}".encode()


def credential_aad(connection_id: uuid.UUID | str, field: str = "encrypted_credentials") -> bytes:
    """The associated data of a service connection's secret in column `field`."""
    return field_aad(table="service_connections", row_id=connection_id, field=field)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _from_b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _decode_key(text: str) -> bytes | None:
    """32 bytes from standard or url-safe base64 (padding optional); None otherwise."""
    normalized = text.strip().replace("-", "+").replace("_", "/")
    if not normalized or len(normalized) % 4 == 1:
        return None
    try:
        key = base64.b64decode(normalized + "=" * (-len(normalized) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return key


def key_id_of(value: str) -> str | None:
    """The kid a stored value was encrypted with; None when it is not such a value."""
    parts = value.split(".")
    if len(parts) != 4 or parts[0] != VERSION:
        return None
    return parts[1]


def _parse_entries(value: str, *, variable: str) -> list[tuple[str, bytes]]:
    """Read `kid:base64key[,kid:base64key...]`; messages never echo a key."""
    entries = [entry.strip() for entry in value.split(",")]
    if not any(entries):
        raise ConfigurationError(f"{variable} is empty; {GENERATE_HINT}")
    keys: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    for position, entry in enumerate(entries, start=1):
        where = f"{variable} entry {position}"
        if not entry:
            raise ConfigurationError(
                f"{where} is empty: separate keys with single commas, "
                "e.g. new:<base64>,old:<base64>"
            )
        kid, colon, encoded = entry.partition(":")
        kid = kid.strip()
        if not colon:
            raise ConfigurationError(
                f"{where} has no key id: write it as kid:base64key (e.g. k1:...); " + GENERATE_HINT
            )
        if not _KID.fullmatch(kid):
            raise ConfigurationError(
                f"{where} has an invalid key id: use 1 to 32 letters, digits, "
                "'-' or '_' before the colon"
            )
        if kid in seen:
            raise ConfigurationError(f"{variable} names the key id {kid!r} more than once")
        key = _decode_key(encoded)
        if key is None:
            raise ConfigurationError(
                f"{variable}: the key {kid!r} is not valid base64; {GENERATE_HINT}"
            )
        if len(key) != KEY_BYTES:
            raise ConfigurationError(
                f"{variable}: the key {kid!r} decodes to {len(key)} bytes; AES-256 "
                f"needs exactly {KEY_BYTES} (44 base64 characters); {GENERATE_HINT}"
            )
        seen.add(kid)
        keys.append((kid, key))
    return keys


class KeyRing:
    """Keys by kid; the first one encrypts."""

    __slots__ = ("_ciphers", "primary_kid")

    def __init__(self, keys: Mapping[str, bytes] | list[tuple[str, bytes]]) -> None:
        items = list(keys.items()) if isinstance(keys, Mapping) else list(keys)
        if not items:
            raise ValueError("a key ring needs at least one key")
        ciphers: dict[str, AESGCM] = {}
        for kid, key in items:
            if not _KID.fullmatch(kid):
                raise ValueError(f"invalid key id {kid!r}")
            if len(key) != KEY_BYTES:
                raise ValueError(f"key {kid!r} is not {KEY_BYTES} bytes")
            if kid in ciphers:
                raise ValueError(f"key id {kid!r} appears twice")
            ciphers[kid] = AESGCM(key)
        self._ciphers = ciphers
        self.primary_kid = items[0][0]

    def __repr__(self) -> str:
        # Never the keys themselves.
        return f"KeyRing(primary={self.primary_kid!r}, kids={list(self._ciphers)!r})"

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(self._ciphers)

    @classmethod
    def parse(cls, value: str, *, variable: str = "ENCRYPTION_KEYS") -> KeyRing:
        """Read `kid:base64key[,kid:base64key...]`; messages never echo a key."""
        return cls(_parse_entries(value, variable=variable))

    def encrypt(self, plaintext: bytes, *, aad: bytes) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.primary_kid].encrypt(nonce, plaintext, aad)
        return f"{VERSION}.{self.primary_kid}.{_b64url(nonce)}.{_b64url(sealed)}"

    def decrypt(self, value: str, *, aad: bytes) -> bytes:
        parts = value.split(".") if isinstance(value, str) else []
        if len(parts) != 4 or parts[0] != VERSION:
            raise DecryptionError("the stored value is not in the expected encrypted format")
        _, kid, nonce_text, sealed_text = parts
        cipher = self._ciphers.get(kid)
        if cipher is None:
            named = repr(kid) if _KID.fullmatch(kid) else "(malformed id)"
            raise DecryptionError(
                f"the stored value was encrypted with key {named}, which is not in "
                "ENCRYPTION_KEYS; add that key back to the ring"
            )
        try:
            nonce = _from_b64url(nonce_text)
            sealed = _from_b64url(sealed_text)
        except (binascii.Error, ValueError):
            raise DecryptionError("the stored value is damaged (bad encoding)") from None
        if len(nonce) != NONCE_BYTES or len(sealed) < TAG_BYTES:
            raise DecryptionError("the stored value is damaged (bad length)")
        try:
            return cipher.decrypt(nonce, sealed, aad)
        except InvalidTag:
            raise DecryptionError(
                "the stored value does not authenticate: it was altered or belongs "
                "to another record"
            ) from None

    def needs_rotation(self, value: str) -> bool:
        """Whether `value` is encrypted with a key other than the current one."""
        return key_id_of(value) != self.primary_kid


# Dev key file ---------------------------------------------------------------------


def _read_dev_key(path: Path) -> bytes:
    deadline = time.monotonic() + _PARTIAL_FILE_WAIT_SECONDS
    while True:
        key = _decode_key(path.read_text(encoding="ascii", errors="replace"))
        if key is not None and len(key) == KEY_BYTES:
            return key
        # A file another process has only just created may still be half-written.
        just_written = time.time() - path.stat().st_mtime < _PARTIAL_FILE_WAIT_SECONDS
        if not just_written or time.monotonic() >= deadline:
            raise ConfigurationError(
                f"The key file {path} does not hold a base64 {KEY_BYTES}-byte key; "
                "restore it from a backup (secrets encrypted with it cannot be read "
                "without it)"
            )
        time.sleep(0.05)


def _create_dev_key(keys_dir: Path, path: Path) -> bytes:
    key = os.urandom(KEY_BYTES)
    content = base64.b64encode(key) + b"\n"
    if not key_files.write_once(path, content):
        return _read_dev_key(path)
    logger.info("Created a development encryption key at %s", path)
    return key


def load_dev_key(keys_dir: Path, *, create: bool = True) -> bytes | None:
    """The development key kept in `keys_dir`, created on first use when `create`."""
    path = keys_dir / DEV_KEY_FILE
    if path.exists():
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            logger.warning(
                "The encryption key %s can be read by other users; run `chmod 600 %s`",
                path,
                path,
            )
        return _read_dev_key(path)
    if not create:
        return None
    return _create_dev_key(keys_dir, path)


@functools.lru_cache(maxsize=8)
def _ring(encryption_keys: str | None, keys_dir: str, production: bool) -> KeyRing:
    configured = encryption_keys is not None and encryption_keys.strip() != ""
    if not configured:
        if production:
            raise ConfigurationError(
                "ENCRYPTION_KEYS is not set: production needs a key ring to encrypt "
                f"service credentials; {GENERATE_HINT}"
            )
        key = load_dev_key(Path(keys_dir))
        assert key is not None
        return KeyRing([(DEV_KID, key)])
    assert encryption_keys is not None
    keys = _parse_entries(encryption_keys, variable="ENCRYPTION_KEYS")
    if production or any(kid == DEV_KID for kid, _ in keys):
        return KeyRing(keys)
    # Development that set ENCRYPTION_KEYS after using the generated key: the old
    # key still decrypts, so rotate-keys can move secrets off it.
    dev_key = load_dev_key(Path(keys_dir), create=False)
    if dev_key is not None:
        keys.append((DEV_KID, dev_key))
    return KeyRing(keys)


def get_key_ring(settings: Settings | None = None) -> KeyRing:
    """The configured key ring (cached for the same configuration)."""
    settings = settings or get_settings()
    return _ring(settings.encryption_keys, str(settings.keys_dir), settings.is_production)


def reset_key_ring_cache() -> None:
    _ring.cache_clear()


# Conveniences on the configured ring ------------------------------------------------


def encrypt(plaintext: bytes, *, aad: bytes, ring: KeyRing | None = None) -> str:
    return (ring or get_key_ring()).encrypt(plaintext, aad=aad)


def decrypt(value: str, *, aad: bytes, ring: KeyRing | None = None) -> bytes:
    return (ring or get_key_ring()).decrypt(value, aad=aad)


def needs_rotation(value: str, *, ring: KeyRing | None = None) -> bool:
    return (ring or get_key_ring()).needs_rotation(value)


def encrypt_field(
    value: str, *, table: str, row_id: uuid.UUID | str, field: str, ring: KeyRing | None = None
) -> str:
    """Encrypt a text value stored in `table`.`field` of row `row_id`.

    List the column in ENCRYPTED_COLUMNS so rotate-keys re-encrypts it.
    """
    aad = field_aad(table=table, row_id=row_id, field=field)
    return encrypt(value.encode("utf-8"), aad=aad, ring=ring)


def decrypt_field(
    value: str, *, table: str, row_id: uuid.UUID | str, field: str, ring: KeyRing | None = None
) -> str:
    aad = field_aad(table=table, row_id=row_id, field=field)
    return decrypt(value, aad=aad, ring=ring).decode("utf-8")
