"""Our verifier against Clerk's own SDK (networkless, with `jwt_key`) on the same tokens.

Both must accept and refuse the same tokens, except where ours is deliberately stricter
(the issuer is pinned; sub, iat, nbf and exp are required; time claims must be numbers)
or normalises a trailing slash on the origin. Each such case is marked below.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from carmenta.auth.keys import clerk_verifier
from carmenta.auth.tokens import InvalidTokenError
from carmenta.settings import Settings

clerk_security = pytest.importorskip("clerk_backend_api.security")

ISSUER = "https://clerk.example.com"
ORIGIN = "https://carmenta.example.com"
KID = "ins_2abc"

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_PEM = (
    KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(value: object) -> str:
    return _b64(json.dumps(value).encode())


def claims(now: int, **changes) -> dict:
    base = {
        "sub": "user_1",
        "sid": "sess_1",
        "iss": ISSUER,
        "azp": ORIGIN,
        "iat": now - 2,
        "nbf": now - 12,
        "exp": now + 58,
        "v": 2,
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


def rs256(payload: dict, *, key=KEY, headers: dict | None = None) -> str:
    header = {"alg": "RS256", "typ": "JWT", "kid": KID, **(headers or {})}
    signing_input = f"{_segment(header)}.{_segment(payload)}"
    algorithm = jwt.algorithms.RSAAlgorithm(jwt.algorithms.RSAAlgorithm.SHA256)
    return f"{signing_input}.{_b64(algorithm.sign(signing_input.encode(), key))}"


def hs256_with_public_key(payload: dict) -> str:
    signing_input = f"{_segment({'alg': 'HS256', 'typ': 'JWT'})}.{_segment(payload)}"
    mac = hmac.new(PUBLIC_PEM.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def tampered(now: int) -> str:
    header, _, signature = rs256(claims(now)).split(".")
    return f"{header}.{_segment(claims(now, sub='user_admin'))}.{signature}"


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[int], str]
    # Where our answer differs from Clerk's on purpose, and why.
    differs: str | None = None


ES256_KEY = ec.generate_private_key(ec.SECP256R1())

CASES = [
    Case("valid", lambda now: rs256(claims(now))),
    Case("valid, other kid", lambda now: rs256(claims(now), headers={"kid": "ins_other"})),
    Case("valid, no kid", lambda now: jwt.encode(claims(now), KEY, algorithm="RS256")),
    Case("expired 6 s ago", lambda now: rs256(claims(now, exp=now - 6))),
    Case("expired 4 s ago", lambda now: rs256(claims(now, exp=now - 4))),
    Case("nbf in 6 s", lambda now: rs256(claims(now, nbf=now + 6))),
    Case("nbf in 4 s", lambda now: rs256(claims(now, nbf=now + 4))),
    Case("iat in 6 s", lambda now: rs256(claims(now, iat=now + 6, nbf=now))),
    Case("iat in 4 s", lambda now: rs256(claims(now, iat=now + 4, nbf=now))),
    Case("azp not allowed", lambda now: rs256(claims(now, azp="https://evil.example"))),
    Case("azp missing", lambda now: rs256(claims(now, azp=None))),
    Case("aud present", lambda now: rs256(claims(now, aud="another-service"))),
    Case("sub not a string", lambda now: rs256(claims(now, sub=12))),
    Case("jti not a string", lambda now: rs256(claims(now, jti=12))),
    Case("alg none", lambda now: f"{_segment({'alg': 'none'})}.{_segment(claims(now))}."),
    Case("HS256 with the public key", lambda now: hs256_with_public_key(claims(now))),
    Case("RS512", lambda now: jwt.encode(claims(now), KEY, algorithm="RS512")),
    Case("ES256", lambda now: jwt.encode(claims(now), ES256_KEY, algorithm="ES256")),
    Case("tampered payload", tampered),
    Case("signed by another key", lambda now: rs256(claims(now), key=OTHER_KEY)),
    Case(
        "jku to another key",
        lambda now: rs256(claims(now), key=OTHER_KEY, headers={"jku": "http://127.0.0.1:9/k"}),
    ),
    Case(
        "jku, signed by the real key",
        lambda now: rs256(claims(now), headers={"jku": "http://127.0.0.1:9/k"}),
    ),
    Case("unknown crit", lambda now: rs256(claims(now), headers={"crit": ["x"], "x": 1})),
    Case("empty", lambda now: ""),
    Case("garbage", lambda now: "garbage"),
    Case("three dots", lambda now: "a.b.c"),
    Case("wrong iss", lambda now: rs256(claims(now, iss="https://clerk.evil.example")), "iss"),
    Case("iss missing", lambda now: rs256(claims(now, iss=None)), "iss"),
    Case("sub missing", lambda now: rs256(claims(now, sub=None)), "required claim"),
    Case("exp missing", lambda now: rs256(claims(now, exp=None)), "required claim"),
    Case("iat missing", lambda now: rs256(claims(now, iat=None)), "required claim"),
    Case("nbf missing", lambda now: rs256(claims(now, nbf=None)), "required claim"),
    Case("exp as a string", lambda now: rs256(claims(now, exp=str(now + 58))), "claim type"),
    Case(
        "azp with trailing slash",
        lambda now: rs256(claims(now, azp=ORIGIN + "/")),
        "origins compared without a trailing slash",
    ),
]


class _Request:
    def __init__(self, token: str) -> None:
        self.headers = {"Authorization": f"Bearer {token}"}


def clerk_accepts(raw: str) -> bool:
    options = clerk_security.AuthenticateRequestOptions(
        jwt_key=PUBLIC_PEM, authorized_parties=[ORIGIN]
    )
    return clerk_security.authenticate_request(_Request(raw), options).is_signed_in


@pytest.fixture(scope="module")
def ours():
    settings = Settings(
        _env_file=None,
        clerk_publishable_key="pk_live_" + base64.b64encode(b"clerk.example.com$").decode(),
        clerk_secret_key="sk_live_unused",
        clerk_jwt_key=PUBLIC_PEM,
        public_url=ORIGIN,
    )
    return clerk_verifier(settings)


async def _ours_accepts(verifier, raw: str) -> bool:
    try:
        await verifier.verify(raw)
    except InvalidTokenError:
        return False
    return True


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_we_accept_what_clerk_accepts(case: Case, ours):
    raw = case.build(int(time.time()))
    clerk, mine = clerk_accepts(raw), await _ours_accepts(ours, raw)
    if case.differs is None:
        assert mine == clerk
    elif case.differs == "origins compared without a trailing slash":
        assert (clerk, mine) == (False, True)
    else:
        assert (clerk, mine) == (True, False)


def test_the_table_covers_both_answers():
    now = int(time.time())
    answers = {clerk_accepts(case.build(now)) for case in CASES if case.differs is None}
    assert answers == {True, False}
