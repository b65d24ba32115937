"""The app's own session signing key, and the verifiers for built-in and Clerk sessions.

Built-in session tokens are RS256 JWTs signed with a key kept under DATA_DIR/keys (or
given by SESSION_SIGNING_KEY in production) and checked by the same TokenVerifier as
Clerk's tokens, so both kinds of session go through one verification path.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from carmenta import key_files
from carmenta.auth.tokens import (
    ALGORITHM,
    MIN_RSA_KEY_BITS,
    JwksKeySource,
    KeySource,
    StaticKeySource,
    TokenVerifier,
    normalized_pem,
)
from carmenta.errors import ConfigurationError
from carmenta.settings import Settings

logger = logging.getLogger(__name__)

SIGNING_KEY_FILE = "session_signing_key.pem"
GENERATED_KEY_BITS = 3072
# How long to wait for a key file another process is still writing.
_PARTIAL_FILE_WAIT_SECONDS = 2.0


@dataclass(frozen=True)
class SigningKey:
    private_key: RSAPrivateKey
    public_key: RSAPublicKey
    kid: str


def _key_id(public_key: RSAPublicKey) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:16]


def _signing_key(private_key: RSAPrivateKey) -> SigningKey:
    public_key = private_key.public_key()
    return SigningKey(private_key=private_key, public_key=public_key, kid=_key_id(public_key))


def _private_key_from_pem(pem: str, *, source: str) -> RSAPrivateKey:
    text = pem.strip().replace("\\n", "\n")
    if "ENCRYPTED" in text:
        raise ConfigurationError(
            f"{source} is protected by a passphrase; give the private key without one"
        )
    try:
        key = serialization.load_pem_private_key(normalized_pem(text), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        # The message never echoes the key itself.
        raise ConfigurationError(
            f"{source} is not a valid PEM RSA private key: expected "
            "-----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY----- "
            "(e.g. from `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072`)"
        ) from error
    if not isinstance(key, RSAPrivateKey):
        raise ConfigurationError(f"{source} must be an RSA private key (session tokens use RS256)")
    if key.key_size < MIN_RSA_KEY_BITS:
        raise ConfigurationError(
            f"{source} is a {key.key_size}-bit RSA key; "
            f"at least {MIN_RSA_KEY_BITS} bits are required (3072 recommended)"
        )
    return key


def _read_key_file(path: Path) -> SigningKey:
    deadline = time.monotonic() + _PARTIAL_FILE_WAIT_SECONDS
    while True:
        try:
            text = path.read_text(encoding="ascii")
            return _signing_key(_private_key_from_pem(text, source=f"The key file {path}"))
        except (ConfigurationError, UnicodeDecodeError) as error:
            # Where hard links are unsupported, a file another process has only just
            # created may still be half-written: give it a moment. An old file is broken.
            just_written = time.time() - path.stat().st_mtime < _PARTIAL_FILE_WAIT_SECONDS
            if not just_written or time.monotonic() >= deadline:
                if isinstance(error, ConfigurationError):
                    raise
                raise ConfigurationError(f"The key file {path} is not a PEM file") from error
            time.sleep(0.05)


def _warn_if_readable_by_others(path: Path) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            "The session signing key %s can be read by other users; run `chmod 600 %s`",
            path,
            path,
        )


def _create_key_file(keys_dir: Path, path: Path) -> SigningKey:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=GENERATED_KEY_BITS)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    if not key_files.write_once(path, pem):
        return _read_key_file(path)
    logger.info("Created a new session signing key at %s", path)
    return _signing_key(private_key)


def load_signing_key(*, pem: str | None, keys_dir: Path) -> SigningKey:
    """The key that signs built-in session tokens: from `pem`, or kept in `keys_dir`."""
    if pem is not None and pem.strip():
        return _signing_key(_private_key_from_pem(pem, source="SESSION_SIGNING_KEY"))
    path = keys_dir / SIGNING_KEY_FILE
    if path.exists():
        _warn_if_readable_by_others(path)
        return _read_key_file(path)
    return _create_key_file(keys_dir, path)


def _timestamp(moment: datetime, *, name: str) -> int:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return int(moment.timestamp())


def sign_session_token(
    *,
    signing_key: SigningKey,
    subject: str,
    session_id: str,
    issuer: str,
    authorized_party: str,
    issued_at: datetime,
    expires_at: datetime,
) -> str:
    """A built-in session token, shaped like Clerk's so one verifier accepts both."""
    iat = _timestamp(issued_at, name="issued_at")
    exp = _timestamp(expires_at, name="expires_at")
    if exp <= iat:
        raise ValueError("expires_at must be after issued_at")
    claims = {
        "sub": subject,
        "sid": session_id,
        "iss": issuer,
        "azp": authorized_party,
        "iat": iat,
        "nbf": iat,
        "exp": exp,
    }
    return jwt.encode(
        claims,
        signing_key.private_key,
        algorithm=ALGORITHM,
        headers={"kid": signing_key.kid, "typ": "JWT"},
    )


_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})+", re.IGNORECASE)


def clerk_issuer_from_publishable_key(publishable_key: str) -> str:
    """The Frontend API URL a Clerk publishable key names, which issues its tokens."""
    problem = ConfigurationError(
        "CLERK_PUBLISHABLE_KEY does not look like a Clerk publishable key "
        "(pk_test_... or pk_live_..., from the API keys page of the Clerk dashboard)"
    )
    key = publishable_key.strip()
    for prefix in ("pk_test_", "pk_live_"):
        if key.startswith(prefix):
            encoded = key.removeprefix(prefix)
            break
    else:
        raise problem
    # Clerk drops the base64 padding; put it back before decoding.
    if not encoded or len(encoded) % 4 == 1:
        raise problem
    try:
        decoded = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        text = decoded.decode("ascii")
    except (binascii.Error, ValueError) as error:
        raise problem from error
    host = text.removesuffix("$")
    if not text.endswith("$") or not _HOST.fullmatch(host):
        raise problem
    return f"https://{host.lower()}"


def builtin_verifier(
    *, signing_key: SigningKey, issuer: str, authorized_parties: Sequence[str]
) -> TokenVerifier:
    """Verifies the app's own session tokens; only tokens naming this key's kid match."""
    return TokenVerifier(
        key_source=StaticKeySource({signing_key.kid: signing_key.public_key}),
        issuer=issuer,
        authorized_parties=authorized_parties,
    )


def _clerk_issuer(settings: Settings) -> str:
    if settings.clerk_issuer and settings.clerk_issuer.strip():
        issuer = settings.clerk_issuer.strip().removesuffix("/")
        parts = urlsplit(issuer)
        if parts.scheme != "https" or not parts.hostname or parts.path or parts.query:
            raise ConfigurationError(
                "CLERK_ISSUER must be the Frontend API URL, such as https://clerk.example.com"
            )
        return issuer
    if settings.clerk_publishable_key:
        return clerk_issuer_from_publishable_key(settings.clerk_publishable_key)
    raise ConfigurationError(
        "Clerk sign-in needs CLERK_PUBLISHABLE_KEY (or CLERK_ISSUER) to know who issues tokens"
    )


def clerk_verifier(settings: Settings) -> TokenVerifier:
    """Verifies Clerk session tokens without a network call per request."""
    issuer = _clerk_issuer(settings)
    key_source: KeySource
    if settings.clerk_jwt_key and settings.clerk_jwt_key.strip():
        try:
            key_source = StaticKeySource.from_pem(settings.clerk_jwt_key)
        except ValueError as error:
            raise ConfigurationError(
                f"CLERK_JWT_KEY: {error} (copy the PEM public key from the API keys "
                "page of the Clerk dashboard)"
            ) from error
    else:
        url = (settings.clerk_jwks_url or "").strip() or f"{issuer}/.well-known/jwks.json"
        try:
            key_source = JwksKeySource(url)
        except ValueError as error:
            raise ConfigurationError(f"CLERK_JWKS_URL: {error}") from error
    try:
        return TokenVerifier(
            key_source=key_source,
            issuer=issuer,
            authorized_parties=settings.clerk_authorized_party_list,
        )
    except ValueError as error:
        raise ConfigurationError(f"CLERK_AUTHORIZED_PARTIES: {error}") from error
