"""Verification of session tokens: Clerk's and the app's own, through one code path.

Every token is an RS256 JWT checked against keys that come only from configuration
(a PEM key, the app's own key, or one JWKS URL), never from the token's headers.
No network call happens per request: JWKS keys are cached by `kid`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import ipaddress
import json
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey, RSAPublicNumbers
from jwt.types import Options

logger = logging.getLogger(__name__)

ALGORITHM = "RS256"
MAX_LEEWAY_SECONDS = 5
MIN_RSA_KEY_BITS = 2048
# Far above any real session token or JWKS; bounds work done on hostile input.
MAX_TOKEN_LENGTH = 16 * 1024
MAX_JWKS_BYTES = 512 * 1024
REQUIRED_CLAIMS = ("sub", "iss", "exp", "iat", "nbf")
# Tokens whose signature was verified, remembered by digest: every event of a page
# carries its token, and the RSA check with the token's parsing cost more than most
# events' own work. The claims are checked again at each use (a remembered token still
# expires), and an entry counts only while its key is the one its source gives now.
VERIFIED_TOKENS_REMEMBERED = 4096


class InvalidTokenError(Exception):
    """A token was refused; `reason` is a short machine code safe to log."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class VerifiedToken:
    subject: str
    session_id: str | None
    issuer: str
    authorized_party: str | None
    issued_at: datetime
    expires_at: datetime
    claims: Mapping[str, Any]


class KeySource(Protocol):
    async def key_for(self, kid: str | None) -> RSAPublicKey: ...


def _checked_rsa_key(key: object, *, what: str) -> RSAPublicKey:
    if not isinstance(key, RSAPublicKey):
        raise ValueError(f"{what} is not an RSA public key")
    if key.key_size < MIN_RSA_KEY_BITS:
        raise ValueError(
            f"{what} is a {key.key_size}-bit RSA key; at least {MIN_RSA_KEY_BITS} bits are required"
        )
    return key


_PEM_BLOCK = re.compile(
    r"-----BEGIN (?P<label>[A-Z ]+)-----(?P<body>.*?)-----END (?P=label)-----", re.DOTALL
)


def normalized_pem(pem: str) -> bytes:
    # Keys pasted into environment variables often lose their line breaks or carry
    # literal "\n": rebuild the PEM block so both forms load.
    text = pem.strip().replace("\\n", "\n")
    match = _PEM_BLOCK.search(text)
    if match is None:
        raise ValueError("the key is not in PEM format (no -----BEGIN ...----- line)")
    body = "".join(match.group("body").split())
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    label = match.group("label")
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----", ""]).encode()


class StaticKeySource:
    """Keys known up front: `CLERK_JWT_KEY`, or the app's own public key."""

    def __init__(self, public_keys: Mapping[str | None, RSAPublicKey]) -> None:
        if not public_keys:
            raise ValueError("a static key source needs at least one key")
        self._keys = {
            kid: _checked_rsa_key(key, what=f"key {kid!r}") for kid, key in public_keys.items()
        }

    @classmethod
    def from_pem(cls, pem: str, *, kid: str | None = None) -> StaticKeySource:
        try:
            key = serialization.load_pem_public_key(normalized_pem(pem))
        except (ValueError, TypeError) as error:
            # The message never echoes the key itself.
            raise ValueError(
                "the verification key is not a valid PEM public key "
                "(expected -----BEGIN PUBLIC KEY----- ... -----END PUBLIC KEY-----)"
            ) from error
        return cls({kid: _checked_rsa_key(key, what="the verification key")})

    async def key_for(self, kid: str | None) -> RSAPublicKey:
        if kid is not None and kid in self._keys:
            return self._keys[kid]
        if None in self._keys:
            return self._keys[None]
        raise InvalidTokenError("unknown_kid")


def _b64url_uint(value: object) -> int:
    if not isinstance(value, str) or not value:
        raise ValueError("not a base64url string")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as error:
        raise ValueError("not a base64url string") from error
    return int.from_bytes(raw, "big")


def _rsa_key_from_jwk(jwk: object) -> tuple[str, RSAPublicKey] | None:
    """The (kid, key) of a usable signing key, or None for any other entry."""
    if not isinstance(jwk, dict) or jwk.get("kty") != "RSA":
        return None
    if jwk.get("use", "sig") != "sig" or jwk.get("alg", ALGORITHM) != ALGORITHM:
        return None
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid:
        return None
    try:
        numbers = RSAPublicNumbers(e=_b64url_uint(jwk.get("e")), n=_b64url_uint(jwk.get("n")))
        key = _checked_rsa_key(numbers.public_key(), what=f"JWKS key {kid!r}")
    except ValueError:
        return None
    return kid, key


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class JwksKeySource:
    """A JWKS URL fetched once and cached by `kid`; re-fetched at most once a minute."""

    def __init__(
        self,
        url: str,
        *,
        min_refetch_seconds: float = 60.0,
        timeout_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parts = urlsplit(url)
        # Keys fetched in clear text could be swapped on the way; loopback is for tests.
        if not parts.hostname or not (
            parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(parts.hostname))
        ):
            raise ValueError(f"the JWKS URL must be an https:// URL (got {url!r})")
        self._url = url
        self._min_refetch_seconds = min_refetch_seconds
        self._timeout_seconds = timeout_seconds
        self._clock = clock
        self._keys: dict[str, RSAPublicKey] = {}
        self._last_attempt: float | None = None
        self._last_attempt_failed = False
        self._lock = asyncio.Lock()

    async def key_for(self, kid: str | None) -> RSAPublicKey:
        if kid is None:
            # Every key in a JWKS is named; a token that names none cannot pick one.
            raise InvalidTokenError("unknown_kid")
        key = self._keys.get(kid)
        if key is not None:
            return key
        async with self._lock:
            # Another caller may have fetched while this one waited for the lock.
            key = self._keys.get(kid)
            if key is not None:
                return key
            now = self._clock()
            # Failed attempts count too, so junk tokens cannot hammer a struggling server.
            if (
                self._last_attempt is not None
                and now - self._last_attempt < self._min_refetch_seconds
            ):
                raise InvalidTokenError(
                    "key_unavailable" if self._last_attempt_failed else "unknown_kid"
                )
            previous_attempt, self._last_attempt = self._last_attempt, now
            try:
                keys = await self._fetch()
            except InvalidTokenError:
                self._last_attempt_failed = True
                raise
            except BaseException:
                # A caller that went away (cancelled request) must not cost everyone a
                # minute without keys: the next caller tries again.
                self._last_attempt = previous_attempt
                raise
            self._last_attempt_failed = False
            # Replacing the set drops keys the issuer has retired.
            self._keys = keys
        key = self._keys.get(kid)
        if key is None:
            raise InvalidTokenError("unknown_kid")
        return key

    async def _fetch(self) -> dict[str, RSAPublicKey]:
        try:
            async with (
                httpx.AsyncClient(timeout=self._timeout_seconds, follow_redirects=False) as client,
                client.stream("GET", self._url, headers={"Accept": "application/json"}) as response,
            ):
                if response.status_code != 200:
                    raise InvalidTokenError(
                        "key_unavailable", f"JWKS answered HTTP {response.status_code}"
                    )
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body.extend(chunk)
                    if len(body) > MAX_JWKS_BYTES:
                        raise InvalidTokenError("key_unavailable", "JWKS response is too large")
        except httpx.HTTPError as error:
            logger.warning("Could not fetch the JWKS from %s: %s", self._url, type(error).__name__)
            raise InvalidTokenError("key_unavailable", "JWKS could not be fetched") from error
        except InvalidTokenError as error:
            logger.warning("Could not use the JWKS from %s: %s", self._url, error)
            raise
        try:
            document = json.loads(bytes(body))
        except ValueError as error:
            logger.warning("The JWKS from %s is not JSON", self._url)
            raise InvalidTokenError("key_unavailable", "JWKS is not JSON") from error
        entries = document.get("keys") if isinstance(document, dict) else None
        keys: dict[str, RSAPublicKey] = {}
        for entry in entries if isinstance(entries, list) else []:
            usable = _rsa_key_from_jwk(entry)
            if usable is not None:
                keys[usable[0]] = usable[1]
        if not keys:
            # An empty or broken answer must not wipe keys that still work.
            logger.warning("The JWKS from %s holds no usable RS256 signing key", self._url)
            raise InvalidTokenError("key_unavailable", "JWKS holds no usable key")
        return keys


def _without_trailing_slash(value: str) -> str:
    return value.removesuffix("/")


def _is_timestamp(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _as_datetime(timestamp: float) -> datetime:
    try:
        return datetime.fromtimestamp(timestamp, tz=UTC)
    except (OverflowError, OSError, ValueError) as error:
        raise InvalidTokenError("malformed", "timestamp out of range") from error


# Time claims are checked below with the injected clock, not the library's own.
_DECODE_OPTIONS: Options = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_iss": False,
    "verify_aud": False,
    "verify_sub": False,
    "verify_jti": False,
    "require": [],
    "enforce_minimum_key_length": True,
}


class TokenVerifier:
    """Checks a session token completely, or raises InvalidTokenError with a reason."""

    def __init__(
        self,
        *,
        key_source: KeySource,
        issuer: str,
        authorized_parties: Sequence[str],
        leeway_seconds: int = MAX_LEEWAY_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 <= leeway_seconds <= MAX_LEEWAY_SECONDS:
            raise ValueError(
                f"clock skew leeway must be between 0 and {MAX_LEEWAY_SECONDS} seconds "
                f"(got {leeway_seconds})"
            )
        if not issuer.strip():
            raise ValueError("a token verifier needs the issuer tokens must come from")
        parties = frozenset(_without_trailing_slash(party.strip()) for party in authorized_parties)
        parties -= {""}
        if not parties:
            # An empty allow-list would refuse every token: surely a configuration slip.
            raise ValueError("a token verifier needs at least one authorized party (origin)")
        self._key_source = key_source
        self._issuer = _without_trailing_slash(issuer.strip())
        self._authorized_parties = parties
        self._leeway = leeway_seconds
        self._clock = clock
        # digest of the token -> (kid, the key that verified it, its claims)
        self._verified: OrderedDict[bytes, tuple[str | None, RSAPublicKey, dict[str, Any]]] = (
            OrderedDict()
        )

    @property
    def issuer(self) -> str:
        return self._issuer

    @property
    def key_source(self) -> KeySource:
        return self._key_source

    async def verify(self, token: str) -> VerifiedToken:
        # Nothing here logs or echoes the token: it is a bearer credential.
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
            raise InvalidTokenError("malformed")
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        remembered = self._verified.get(digest)
        if remembered is not None:
            kid, key, claims = remembered
            try:
                current_key = await self._key_source.key_for(kid)
            except InvalidTokenError:
                del self._verified[digest]
                raise
            if current_key is key:
                self._verified.move_to_end(digest)
                try:
                    return self._checked(claims)
                except InvalidTokenError:
                    del self._verified[digest]
                    raise
            # Its key was rotated away or replaced: verified again from the start.
            self._verified.pop(digest, None)
        kid, key, claims = await self._signed_claims(token)
        verified = self._checked(claims)
        self._verified[digest] = (kid, key, claims)
        while len(self._verified) > VERIFIED_TOKENS_REMEMBERED:
            self._verified.popitem(last=False)
        return verified

    async def _signed_claims(self, token: str) -> tuple[str | None, RSAPublicKey, dict[str, Any]]:
        """The token's kid, the key that verified its signature, and its claims."""
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError) as error:
            raise InvalidTokenError("malformed", "unreadable header") from error

        if header.get("alg") != ALGORITHM:
            raise InvalidTokenError("algorithm")
        # No extension is understood; "b64": false would change what is signed.
        if "crit" in header or "b64" in header:
            raise InvalidTokenError("malformed", "unsupported header parameter")
        # jku, x5u, jwk and x5c are never read: keys come only from the key source.
        kid = header.get("kid")
        key = await self._key_source.key_for(kid)

        try:
            claims = jwt.decode(token, key=key, algorithms=[ALGORITHM], options=_DECODE_OPTIONS)
        except jwt.InvalidSignatureError as error:
            raise InvalidTokenError("signature") from error
        except jwt.InvalidAlgorithmError as error:
            raise InvalidTokenError("algorithm") from error
        except jwt.InvalidKeyError as error:
            raise InvalidTokenError("key_unavailable", "verification key is unusable") from error
        except (jwt.PyJWTError, ValueError) as error:
            raise InvalidTokenError("malformed", "unreadable payload") from error
        if not isinstance(claims, dict):
            raise InvalidTokenError("malformed", "unreadable payload")
        return kid, key, claims

    def _checked(self, claims: dict[str, Any]) -> VerifiedToken:
        """The claims of a token whose signature holds, checked now."""
        for name in REQUIRED_CLAIMS:
            if claims.get(name) is None:
                raise InvalidTokenError("missing_claim", name)
        subject, issuer = claims["sub"], claims["iss"]
        if not isinstance(subject, str) or not subject or not isinstance(issuer, str):
            raise InvalidTokenError("malformed", "sub and iss must be strings")
        for name in ("exp", "nbf", "iat"):
            if not _is_timestamp(claims[name]):
                raise InvalidTokenError("malformed", f"{name} must be a number")
        for name in ("sid", "jti"):
            if name in claims and not isinstance(claims[name], str):
                raise InvalidTokenError("malformed", f"{name} must be a string")

        now = self._clock()
        if claims["exp"] <= now - self._leeway:
            raise InvalidTokenError("expired")
        if claims["nbf"] > now + self._leeway:
            raise InvalidTokenError("not_yet_valid")
        if claims["iat"] > now + self._leeway:
            raise InvalidTokenError("issued_in_future")

        if _without_trailing_slash(issuer) != self._issuer:
            raise InvalidTokenError("issuer")
        party = claims.get("azp")
        if not isinstance(party, str) or _without_trailing_slash(party) not in (
            self._authorized_parties
        ):
            raise InvalidTokenError("authorized_party")
        # Tokens minted for another audience (e.g. a JWT template for a third-party
        # service, signed by the same instance key) are not session tokens.
        if "aud" in claims:
            raise InvalidTokenError("audience")

        return VerifiedToken(
            subject=subject,
            session_id=claims.get("sid"),
            issuer=issuer,
            authorized_party=party,
            issued_at=_as_datetime(claims["iat"]),
            expires_at=_as_datetime(claims["exp"]),
            claims=MappingProxyType(dict(claims)),
        )
