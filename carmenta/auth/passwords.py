"""Passwords of built-in accounts: the rules shown as people type, and Argon2id hashing."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 10
# Long enough for any passphrase, short enough that hashing cannot be abused.
MAX_LENGTH = 256

# The most common passwords that would pass the length rule; refused outright.
COMMON_PASSWORDS = frozenset(
    {
        "1234567890",
        "12345678910",
        "0123456789",
        "1111111111",
        "0000000000",
        "qwertyuiop",
        "password123",
        "password12",
        "password1!",
        "passw0rd12",
        "iloveyou12",
        "qwerty1234",
        "1q2w3e4r5t",
        "abcdefghij",
        "abc1234567",
        "welcome123",
        "letmein123",
        "administrator",
        "changeme123",
        "football12",
        "baseball12",
        "sunshine12",
        "princess12",
        "dragon1234",
        "monkey1234",
        "trustno1234",
        "superman12",
        "qwertyuiop1",
        "1qaz2wsx3edc",
        "zaq12wsxcde",
        "asdfghjkl1",
        "asdfghjkl;",
        "q1w2e3r4t5",
        "987654321a",
        "1234qwerty",
        "password1234",
        "password12345",
        "carmenta123",
        "carmenta1234",
    }
)

_hasher = PasswordHasher()  # Argon2id, the library's recommended parameters

# A hash of a random password, verified when an email is unknown so that a sign-in
# with a wrong email takes as long as one with a wrong password.
_DUMMY_HASH = _hasher.hash("not-a-real-password-1f7c2e")


@dataclass(frozen=True)
class PasswordRule:
    label: str
    met: bool


def password_rules(password: str, *, email: str = "") -> list[PasswordRule]:
    """Each rule and whether `password` meets it, in the order shown to people."""
    local_part = email.split("@", 1)[0].strip().lower()
    lowered = password.lower()
    return [
        PasswordRule(f"At least {MIN_LENGTH} characters", len(password) >= MIN_LENGTH),
        PasswordRule(f"At most {MAX_LENGTH} characters", len(password) <= MAX_LENGTH),
        PasswordRule(
            "Not a commonly used password",
            bool(password) and lowered not in COMMON_PASSWORDS and len(set(password)) > 2,
        ),
        PasswordRule(
            "Does not contain your email address",
            bool(password) and not (len(local_part) >= 3 and local_part in lowered),
        ),
    ]


def password_problems(password: str, *, email: str = "") -> list[str]:
    return [rule.label for rule in password_rules(password, email=email) if not rule.met]


_EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalize_email(email: str) -> str:
    return email.strip().lower()


def email_problem(email: str) -> str | None:
    email = normalize_email(email)
    if not email:
        return "Enter your email address."
    if len(email) > 254 or not _EMAIL_PATTERN.match(email):
        return "Enter a valid email address, like name@example.com."
    return None


async def hash_password(password: str) -> str:
    # Argon2 takes tens of milliseconds of CPU: keep it off the event loop.
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant work whether or not the account exists (pass None when it does not)."""

    def check() -> bool:
        try:
            return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
