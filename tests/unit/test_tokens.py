"""Session token verification: every rejection carries its reason; keys come only from config."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from carmenta.auth import tokens as tokens_module
from carmenta.auth.keys import (
    SIGNING_KEY_FILE,
    builtin_verifier,
    clerk_issuer_from_publishable_key,
    clerk_verifier,
    load_signing_key,
    sign_session_token,
)
from carmenta.auth.tokens import (
    InvalidTokenError,
    JwksKeySource,
    StaticKeySource,
    TokenVerifier,
    VerifiedToken,
)
from carmenta.errors import ConfigurationError
from carmenta.settings import Settings

NOW = 1_800_000_000
ISSUER = "https://clerk.example.com"
ORIGIN = "https://carmenta.example.com"
KID = "ins_test_kid"

# Generated once: RSA generation is the slow part of these tests.
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(value: dict) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


def _public_pem(private_key) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _private_pem(private_key, private_format=serialization.PrivateFormat.PKCS8) -> str:
    return private_key.private_bytes(
        serialization.Encoding.PEM, private_format, serialization.NoEncryption()
    ).decode()


def claims(**changes) -> dict:
    base = {
        "sub": "user_123",
        "sid": "sess_456",
        "iss": ISSUER,
        "azp": ORIGIN,
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 50,
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


def without(*names: str) -> dict:
    return {name: value for name, value in claims().items() if name not in names}


def token(payload: dict | None = None, *, key=KEY, algorithm="RS256", headers=None) -> str:
    return jwt.encode(
        claims() if payload is None else payload,
        key,
        algorithm=algorithm,
        headers={"kid": KID} if headers is None else headers,
    )


def signed(header: dict, payload: dict | bytes, *, key=KEY) -> str:
    """RS256 over any header and payload, bypassing the library's own encoding checks."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signing_input = f"{_segment(header)}.{_b64(body)}"
    algorithm = jwt.algorithms.RSAAlgorithm(jwt.algorithms.RSAAlgorithm.SHA256)
    return f"{signing_input}.{_b64(algorithm.sign(signing_input.encode(), key))}"


def verifier(*, key_source=None, clock=lambda: NOW, **options) -> TokenVerifier:
    return TokenVerifier(
        key_source=key_source or StaticKeySource({KID: KEY.public_key()}),
        issuer=options.pop("issuer", ISSUER),
        authorized_parties=options.pop("authorized_parties", [ORIGIN]),
        clock=clock,
        **options,
    )


async def reason_for(raw: object, *, check: TokenVerifier | None = None) -> str:
    with pytest.raises(InvalidTokenError) as caught:
        await (check or verifier()).verify(raw)
    return caught.value.reason


# -- accepted --------------------------------------------------------------------------------


async def test_a_valid_token_is_accepted_with_every_field():
    verified = await verifier().verify(token())
    assert verified == VerifiedToken(
        subject="user_123",
        session_id="sess_456",
        issuer=ISSUER,
        authorized_party=ORIGIN,
        issued_at=datetime.fromtimestamp(NOW - 10, tz=UTC),
        expires_at=datetime.fromtimestamp(NOW + 50, tz=UTC),
        claims=claims(),
    )
    with pytest.raises(TypeError):
        verified.claims["sub"] = "someone else"  # type: ignore[index]


async def test_trailing_slashes_on_issuer_and_origin_do_not_matter():
    check = verifier(issuer=ISSUER + "/", authorized_parties=[ORIGIN + "/"])
    assert (await check.verify(token())).subject == "user_123"
    assert (await verifier().verify(token(claims(iss=ISSUER + "/", azp=ORIGIN + "/")))).subject


async def test_one_of_several_authorized_parties_is_enough():
    check = verifier(authorized_parties=["http://localhost:3000", ORIGIN])
    assert (await check.verify(token())).authorized_party == ORIGIN


# -- time, at the 5 s skew boundary -----------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"exp": NOW - 6}, "expired"),
        ({"exp": NOW - 5}, "expired"),
        ({"nbf": NOW + 6}, "not_yet_valid"),
        ({"iat": NOW + 6, "nbf": NOW}, "issued_in_future"),
    ],
)
async def test_times_beyond_the_skew_are_refused(changes, reason):
    assert await reason_for(token(claims(**changes))) == reason


@pytest.mark.parametrize(
    "changes",
    [{"exp": NOW - 4}, {"nbf": NOW + 4}, {"iat": NOW + 4, "nbf": NOW}, {"nbf": NOW + 5}],
)
async def test_times_within_the_skew_are_accepted(changes):
    assert (await verifier().verify(token(claims(**changes)))).subject == "user_123"


async def test_time_comes_from_the_injected_clock():
    now = [NOW]
    check = verifier(clock=lambda: now[0])
    raw = token()
    await check.verify(raw)
    now[0] = NOW + 56
    assert await reason_for(raw, check=check) == "expired"


async def test_a_smaller_leeway_is_honoured_and_a_larger_one_refused():
    assert await reason_for(token(claims(exp=NOW - 1)), check=verifier(leeway_seconds=0)) == (
        "expired"
    )
    with pytest.raises(ValueError, match="leeway"):
        verifier(leeway_seconds=6)
    with pytest.raises(ValueError, match="leeway"):
        verifier(leeway_seconds=-1)


# -- issuer and authorized party --------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (claims(iss="https://clerk.attacker.example"), "issuer"),
        (claims(iss="https://clerk.example.com.attacker.example"), "issuer"),
        (claims(iss=ISSUER + "//"), "issuer"),
        (claims(azp="https://attacker.example"), "authorized_party"),
        (claims(azp=ORIGIN + ".attacker.example"), "authorized_party"),
        (without("azp"), "authorized_party"),
        (claims(azp=["https://carmenta.example.com"]), "authorized_party"),
        (claims(aud="supabase"), "audience"),
    ],
)
async def test_issuer_party_and_audience_are_pinned(payload, reason):
    assert await reason_for(token(payload)) == reason


async def test_an_empty_party_list_or_issuer_is_a_configuration_slip():
    with pytest.raises(ValueError, match="authorized party"):
        verifier(authorized_parties=[])
    with pytest.raises(ValueError, match="authorized party"):
        verifier(authorized_parties=[" ", ""])
    with pytest.raises(ValueError, match="issuer"):
        verifier(issuer=" ")


# -- required claims and their types -----------------------------------------------------------


@pytest.mark.parametrize("name", ["sub", "iss", "exp", "iat", "nbf"])
async def test_each_required_claim_must_be_present(name):
    assert await reason_for(token(without(name))) == "missing_claim"


@pytest.mark.parametrize(
    "payload",
    [
        claims(sub=123),
        claims(sub=""),
        claims(iss=["https://clerk.example.com"]),
        claims(exp=str(NOW + 50)),
        claims(exp=True),
        claims(iat={"at": NOW}),
        claims(nbf="yesterday"),
        claims(sid=42),
        claims(jti=7),
        claims(exp=1e300),
    ],
)
async def test_claims_of_the_wrong_type_are_malformed(payload):
    assert await reason_for(signed({"alg": "RS256", "kid": KID}, payload)) == "malformed"


# -- algorithms --------------------------------------------------------------------------------


def _unsigned(alg: str) -> str:
    return f"{_segment({'alg': alg, 'typ': 'JWT', 'kid': KID})}.{_segment(claims())}."


def _hs256_with_public_key_as_secret() -> str:
    signing_input = f"{_segment({'alg': 'HS256', 'typ': 'JWT', 'kid': KID})}.{_segment(claims())}"
    mac = hmac.new(_public_pem(KEY), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "", "rs256"])
async def test_unsigned_tokens_are_refused(alg):
    assert await reason_for(_unsigned(alg)) == "algorithm"


async def test_alg_missing_from_the_header_is_refused():
    raw = f"{_segment({'typ': 'JWT', 'kid': KID})}.{_segment(claims())}.c2ln"
    assert await reason_for(raw) == "algorithm"


async def test_hs256_signed_with_the_public_key_as_secret_is_refused():
    # The classic key-confusion attack: the public key is known to everyone.
    assert await reason_for(_hs256_with_public_key_as_secret()) == "algorithm"


async def test_other_asymmetric_algorithms_are_refused():
    assert await reason_for(token(algorithm="RS512")) == "algorithm"
    assert await reason_for(token(algorithm="PS256")) == "algorithm"
    ec_key = ec.generate_private_key(ec.SECP256R1())
    assert await reason_for(token(key=ec_key, algorithm="ES256")) == "algorithm"


# -- keys and signatures ----------------------------------------------------------------------


async def test_an_unknown_kid_is_refused():
    assert await reason_for(token(headers={"kid": "someone-else"})) == "unknown_kid"
    assert await reason_for(token(headers={})) == "unknown_kid"


async def test_a_single_pem_key_matches_any_kid():
    check = verifier(key_source=StaticKeySource.from_pem(_public_pem(KEY).decode()))
    assert (await check.verify(token(headers={"kid": "whatever"}))).subject == "user_123"
    assert (await check.verify(token(headers={}))).subject == "user_123"


async def test_a_tampered_payload_keeps_no_signature():
    header, _, signature = token().split(".")
    forged = f"{header}.{_segment(claims(sub='user_admin'))}.{signature}"
    assert await reason_for(forged) == "signature"


async def test_a_signature_by_another_key_with_the_same_kid_is_refused():
    assert await reason_for(token(key=OTHER_KEY)) == "signature"


async def test_a_truncated_signature_is_refused():
    raw = token()
    assert await reason_for(raw[:-10]) in {"signature", "malformed"}


# -- verified tokens remembered ----------------------------------------------------------------


class _SwappableKeys:
    """A key source whose keys can change under a test, counting its lookups."""

    def __init__(self, keys: dict) -> None:
        self.keys = keys

    async def key_for(self, kid):
        if kid not in self.keys:
            raise InvalidTokenError("unknown_kid")
        return self.keys[kid]


def _count_signature_checks(monkeypatch) -> list[int]:
    checks = [0]
    real_decode = jwt.decode

    def counting_decode(*args, **kwargs):
        checks[0] += 1
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting_decode)
    return checks


async def test_a_verified_token_is_not_verified_again_while_its_key_holds(monkeypatch):
    checks = _count_signature_checks(monkeypatch)
    check = verifier()
    raw = token()
    first = await check.verify(raw)
    again = await check.verify(raw)
    assert again == first
    assert checks[0] == 1
    # Another token is verified in full, even from the same person.
    await check.verify(token(claims(sid="sess_789")))
    assert checks[0] == 2


async def test_a_remembered_token_is_refused_once_its_key_is_replaced_or_gone():
    keys = _SwappableKeys({KID: KEY.public_key()})
    check = verifier(key_source=keys)
    raw = token()
    await check.verify(raw)
    keys.keys[KID] = OTHER_KEY.public_key()  # the same kid, another key
    assert await reason_for(raw, check=check) == "signature"
    keys.keys[KID] = KEY.public_key()  # back, as a new object: verified again, and fine
    assert (await check.verify(raw)).subject == "user_123"
    keys.keys.clear()
    assert await reason_for(raw, check=check) == "unknown_kid"


async def test_a_remembered_token_says_nothing_for_a_tampered_copy():
    check = verifier()
    raw = token()
    await check.verify(raw)
    header, _, signature = raw.split(".")
    forged = f"{header}.{_segment(claims(sub='user_admin'))}.{signature}"
    assert await reason_for(forged, check=check) == "signature"


async def test_the_remembered_tokens_are_bounded(monkeypatch):
    monkeypatch.setattr(tokens_module, "VERIFIED_TOKENS_REMEMBERED", 2)
    checks = _count_signature_checks(monkeypatch)
    check = verifier()
    raws = [token(claims(sid=f"sess_{number}")) for number in range(3)]
    for raw in raws:
        await check.verify(raw)
    assert checks[0] == 3
    await check.verify(raws[2])  # still remembered
    assert checks[0] == 3
    await check.verify(raws[0])  # the oldest was forgotten
    assert checks[0] == 4


def _public_jwk(private_key, kid: str) -> dict:
    numbers = private_key.public_key().public_numbers()
    return {
        "kty": "RSA",
        "kid": kid,
        "n": _b64(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
        "e": _b64(numbers.e.to_bytes(3, "big")),
    }


async def test_key_url_headers_are_never_followed(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a token header made the verifier open a connection")

    monkeypatch.setattr(httpx.AsyncClient, "__init__", no_network)
    planted = {
        "kid": KID,
        "jku": "http://127.0.0.1:9/jwks.json",
        "x5u": "http://127.0.0.1:9/cert.pem",
        "jwk": _public_jwk(OTHER_KEY, KID),
    }
    # Signed by the attacker's key that the headers point to: refused.
    assert await reason_for(token(key=OTHER_KEY, headers=planted)) == "signature"
    # Signed by the configured key: the planted headers change nothing.
    assert (await verifier().verify(token(headers=planted))).subject == "user_123"


async def test_critical_header_extensions_are_refused():
    assert await reason_for(token(headers={"kid": KID, "crit": ["exp"], "exp": 1})) in {"malformed"}


# -- garbage -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "garbage",
        "a.b",
        "a.b.c",
        "...",
        "Bearer x.y.z",
        "e30",
        f"{_b64(b'not json')}.{_segment(claims())}.c2ln",
        f"{_b64(b'[1,2]')}.{_segment(claims())}.c2ln",
        f"{_segment({'alg': 'RS256', 'kid': 5})}.{_segment(claims())}.c2ln",
        "x" * 20_000,
        "\ud800.\ud800.\ud800",
        None,
        b"bytes.are.refused",
        12,
    ],
)
async def test_garbage_is_malformed(raw):
    assert await reason_for(raw) == "malformed"


async def test_a_signed_payload_that_is_not_json_is_malformed():
    header = {"alg": "RS256", "kid": KID}
    assert await reason_for(signed(header, b"not json")) == "malformed"
    assert await reason_for(signed(header, b"[1, 2]")) == "malformed"


async def test_the_error_never_carries_the_token():
    raw = token(claims(exp=NOW - 100))
    with pytest.raises(InvalidTokenError) as caught:
        await verifier().verify(raw)
    assert raw not in str(caught.value)
    assert raw.split(".")[1] not in repr(caught.value)


# -- StaticKeySource ---------------------------------------------------------------------------


def test_pem_keys_survive_environment_variable_mangling():
    pem = _public_pem(KEY).decode()
    for variant in (pem, pem.replace("\n", ""), pem.replace("\n", "\\n"), f"  {pem}  "):
        source = StaticKeySource.from_pem(variant, kid="k")
        assert source._keys["k"].public_numbers() == KEY.public_key().public_numbers()


@pytest.mark.parametrize(
    "pem",
    [
        "",
        "not a key",
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
        _public_pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)).decode(),
        _public_pem(ec.generate_private_key(ec.SECP256R1())).decode(),
    ],
)
def test_a_bad_pem_is_a_clear_value_error(pem):
    with pytest.raises(ValueError, match="key"):
        StaticKeySource.from_pem(pem)


def test_jwks_urls_must_be_https_except_on_loopback():
    JwksKeySource("https://clerk.example.com/.well-known/jwks.json")
    JwksKeySource("http://127.0.0.1:8080/jwks.json")
    JwksKeySource("http://localhost/jwks.json")
    for url in ("http://clerk.example.com/jwks.json", "ftp://x/y", "jwks.json"):
        with pytest.raises(ValueError, match="https"):
            JwksKeySource(url)


# -- keys.py: the app's own signing key ---------------------------------------------------------


def test_the_signing_key_is_created_once_private_and_reused(tmp_path: Path):
    keys_dir = tmp_path / "data" / "keys"
    first = load_signing_key(pem=None, keys_dir=keys_dir)
    path = keys_dir / SIGNING_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert first.private_key.key_size == 3072
    der = first.public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert first.kid == hashlib.sha256(der).hexdigest()[:16]
    second = load_signing_key(pem=None, keys_dir=keys_dir)
    assert second.kid == first.kid
    assert sorted(os.listdir(keys_dir)) == [SIGNING_KEY_FILE]


def test_processes_starting_at_once_end_with_one_key(tmp_path: Path):
    keys_dir = tmp_path / "keys"
    barrier = threading.Barrier(4)
    kids: list[str] = []

    def start() -> None:
        barrier.wait()
        kids.append(load_signing_key(pem=None, keys_dir=keys_dir).kid)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(kids) == 4 and len(set(kids)) == 1
    assert sorted(os.listdir(keys_dir)) == [SIGNING_KEY_FILE]
    assert load_signing_key(pem=None, keys_dir=keys_dir).kid == kids[0]


@pytest.mark.parametrize(
    "private_format",
    [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL],
)
def test_a_given_pem_is_used_as_is(tmp_path: Path, private_format):
    pem = _private_pem(KEY, private_format)
    for variant in (pem, pem.replace("\n", "\\n")):
        loaded = load_signing_key(pem=variant, keys_dir=tmp_path / "keys")
        assert loaded.public_key.public_numbers() == KEY.public_key().public_numbers()
    assert not (tmp_path / "keys").exists()


@pytest.mark.parametrize(
    ("pem", "message"),
    [
        ("not a key", "not a valid PEM"),
        (_public_pem(KEY).decode(), "not a valid PEM"),
        (_private_pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)), "1024"),
        (_private_pem(ec.generate_private_key(ec.SECP256R1())), "RSA"),
        (
            KEY.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"passphrase"),
            ).decode(),
            "passphrase",
        ),
    ],
)
def test_a_bad_signing_key_is_a_configuration_error(tmp_path: Path, pem, message):
    with pytest.raises(ConfigurationError, match=message) as caught:
        load_signing_key(pem=pem, keys_dir=tmp_path)
    assert "SESSION_SIGNING_KEY" in str(caught.value)


def test_a_broken_key_file_is_a_configuration_error(tmp_path: Path):
    path = tmp_path / SIGNING_KEY_FILE
    path.write_text("-----BEGIN PRIVATE KEY-----\ntruncated")
    os.utime(path, (0, 0))
    with pytest.raises(ConfigurationError, match="key file"):
        load_signing_key(pem=None, keys_dir=tmp_path)


async def test_a_signed_session_token_verifies_round_trip(tmp_path: Path):
    signing_key = load_signing_key(pem=_private_pem(KEY), keys_dir=tmp_path)
    issued = datetime.fromtimestamp(NOW, tz=UTC)
    raw = sign_session_token(
        signing_key=signing_key,
        subject="user-uuid",
        session_id="session-uuid",
        issuer="http://localhost:3000",
        authorized_party="http://localhost:3000",
        issued_at=issued,
        expires_at=issued + timedelta(hours=1),
    )
    header = jwt.get_unverified_header(raw)
    assert header == {"alg": "RS256", "kid": signing_key.kid, "typ": "JWT"}
    check = builtin_verifier(
        signing_key=signing_key,
        issuer="http://localhost:3000",
        authorized_parties=["http://localhost:3000"],
    )
    check._clock = lambda: NOW + 10
    verified = await check.verify(raw)
    assert verified.subject == "user-uuid"
    assert verified.session_id == "session-uuid"
    assert verified.issued_at == issued
    assert verified.expires_at == issued + timedelta(hours=1)
    assert set(verified.claims) == {"sub", "sid", "iss", "azp", "iat", "nbf", "exp"}
    assert verified.claims["nbf"] == verified.claims["iat"] == NOW

    stranger = builtin_verifier(
        signing_key=load_signing_key(pem=None, keys_dir=tmp_path / "other"),
        issuer="http://localhost:3000",
        authorized_parties=["http://localhost:3000"],
    )
    assert await reason_for(raw, check=stranger) == "unknown_kid"


def test_session_times_must_be_aware_and_ordered(tmp_path: Path):
    signing_key = load_signing_key(pem=_private_pem(KEY), keys_dir=tmp_path)
    common = {
        "signing_key": signing_key,
        "subject": "u",
        "session_id": "s",
        "issuer": ISSUER,
        "authorized_party": ORIGIN,
    }
    with pytest.raises(ValueError, match="timezone"):
        sign_session_token(
            **common, issued_at=datetime(2030, 1, 1), expires_at=datetime(2030, 1, 2)
        )
    moment = datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="after"):
        sign_session_token(**common, issued_at=moment, expires_at=moment)


# -- keys.py: Clerk ------------------------------------------------------------------------------


def _publishable(prefix: str, text: str, *, padded: bool = False) -> str:
    encoded = base64.b64encode(text.encode()).decode()
    return prefix + (encoded if padded else encoded.rstrip("="))


@pytest.mark.parametrize(
    ("key", "issuer"),
    [
        (
            _publishable("pk_test_", "foo-bar-13.clerk.accounts.dev$"),
            "https://foo-bar-13.clerk.accounts.dev",
        ),
        (_publishable("pk_live_", "clerk.example.com$", padded=True), "https://clerk.example.com"),
        (" " + _publishable("pk_live_", "clerk.example.com$") + "\n", "https://clerk.example.com"),
    ],
)
def test_the_issuer_comes_from_the_publishable_key(key, issuer):
    assert clerk_issuer_from_publishable_key(key) == issuer


@pytest.mark.parametrize(
    "key",
    [
        "",
        "pk_test_",
        "sk_test_" + base64.b64encode(b"clerk.example.com$").decode(),
        "pk_prod_" + base64.b64encode(b"clerk.example.com$").decode(),
        "pk_test_!!!!",
        "pk_test_a",
        _publishable("pk_test_", "clerk.example.com"),
        _publishable("pk_test_", "https://clerk.example.com$"),
        _publishable("pk_test_", "clerk.example.com/path$"),
        _publishable("pk_test_", "clerk.example.com\n$"),
        _publishable("pk_test_", "localhost$"),
        _publishable("pk_test_", "évil.example.com$"),
    ],
)
def test_anything_else_is_not_a_publishable_key(key):
    with pytest.raises(ConfigurationError, match="CLERK_PUBLISHABLE_KEY"):
        clerk_issuer_from_publishable_key(key)


def _clerk_settings(**values) -> Settings:
    values.setdefault("clerk_publishable_key", _publishable("pk_live_", "clerk.example.com$"))
    values.setdefault("clerk_secret_key", "sk_live_x")
    values.setdefault("public_url", ORIGIN)
    return Settings(_env_file=None, **values)


async def test_the_clerk_verifier_uses_the_pem_key_without_network(monkeypatch):
    monkeypatch.setattr(httpx.AsyncClient, "__init__", lambda *a, **k: pytest.fail("network"))
    check = clerk_verifier(_clerk_settings(clerk_jwt_key=_public_pem(KEY).decode()))
    assert check.issuer == ISSUER
    assert isinstance(check.key_source, StaticKeySource)
    check._clock = lambda: NOW
    assert (await check.verify(token())).subject == "user_123"
    assert await reason_for(token(claims(azp="http://localhost:3000")), check=check) == (
        "authorized_party"
    )


def test_the_clerk_verifier_falls_back_to_the_instance_jwks():
    check = clerk_verifier(_clerk_settings())
    assert isinstance(check.key_source, JwksKeySource)
    assert check.key_source._url == "https://clerk.example.com/.well-known/jwks.json"
    explicit = clerk_verifier(
        _clerk_settings(
            clerk_issuer="https://clerk.other.example/",
            clerk_jwks_url="https://clerk.other.example/keys",
            clerk_authorized_parties="https://a.example, https://b.example/",
        )
    )
    assert explicit.issuer == "https://clerk.other.example"
    assert explicit.key_source._url == "https://clerk.other.example/keys"
    assert explicit._authorized_parties == {"https://a.example", "https://b.example"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"clerk_jwt_key": "not a pem"}, "CLERK_JWT_KEY"),
        ({"clerk_publishable_key": "pk_test_garbage"}, "CLERK_PUBLISHABLE_KEY"),
        ({"clerk_publishable_key": None}, "CLERK_PUBLISHABLE_KEY"),
        ({"clerk_issuer": "clerk.example.com"}, "CLERK_ISSUER"),
        ({"clerk_jwks_url": "http://clerk.example.com/jwks"}, "CLERK_JWKS_URL"),
    ],
)
def test_clerk_misconfiguration_is_a_configuration_error(values, message):
    with pytest.raises(ConfigurationError, match=message):
        clerk_verifier(_clerk_settings(**values))
