"""Encryption of stored secrets: format, nonces, tampering, associated data, key ring."""

from __future__ import annotations

import base64
import os
import stat
import threading
import uuid

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from carmenta.connections import crypto
from carmenta.connections.crypto import (
    DecryptionError,
    KeyRing,
    credential_aad,
    decrypt_field,
    encrypt_field,
    get_key_ring,
    key_id_of,
)
from carmenta.errors import ConfigurationError
from carmenta.settings import Settings

KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def ring(*pairs: tuple[str, bytes]) -> KeyRing:
    return KeyRing(list(pairs))


@pytest.fixture(autouse=True)
def _fresh_ring_cache():
    crypto.reset_key_ring_cache()
    yield
    crypto.reset_key_ring_cache()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_round_trip_and_format():
    keys = ring(("k1", KEY_A))
    aad = credential_aad(uuid.uuid4())
    value = keys.encrypt(b"secret token", aad=aad)
    version, kid, nonce, sealed = value.split(".")
    assert (version, kid) == ("v1", "k1")
    assert len(_unb64url(nonce)) == 12
    assert len(_unb64url(sealed)) == len(b"secret token") + 16
    assert "=" not in value and "+" not in value and "/" not in value
    assert keys.decrypt(value, aad=aad) == b"secret token"
    assert key_id_of(value) == "k1"
    assert keys.decrypt(keys.encrypt(b"", aad=aad), aad=aad) == b""


def test_every_encryption_draws_a_fresh_nonce():
    keys = ring(("k1", KEY_A))
    aad = b"same aad"
    values = [keys.encrypt(b"same plaintext", aad=aad) for _ in range(1000)]
    nonces = {value.split(".")[2] for value in values}
    assert len(nonces) == 1000
    assert len(set(values)) == 1000


def test_changing_any_byte_is_detected():
    keys = ring(("k1", KEY_A))
    aad = credential_aad(uuid.uuid4())
    value = keys.encrypt(b"a token worth protecting", aad=aad)
    version, kid, nonce_text, sealed_text = value.split(".")
    nonce, sealed = _unb64url(nonce_text), _unb64url(sealed_text)
    enc = crypto._b64url
    for index in range(len(nonce)):
        altered = bytearray(nonce)
        altered[index] ^= 0x01
        with pytest.raises(DecryptionError):
            keys.decrypt(f"{version}.{kid}.{enc(bytes(altered))}.{sealed_text}", aad=aad)
    for index in range(len(sealed)):
        altered = bytearray(sealed)
        altered[index] ^= 0x80
        with pytest.raises(DecryptionError):
            keys.decrypt(f"{version}.{kid}.{nonce_text}.{enc(bytes(altered))}", aad=aad)
    # Truncated, extended, or not the format at all.
    for broken in (
        f"{version}.{kid}.{nonce_text}.{enc(sealed[:-1])}",
        f"{version}.{kid}.{nonce_text}.{enc(sealed + b'x')}",
        f"{version}.{kid}.{enc(nonce[:-1])}.{sealed_text}",
        f"v2.{kid}.{nonce_text}.{sealed_text}",
        f"{version}.{kid}.{nonce_text}",
        "plain text",
        "",
        f"{version}.{kid}.!!!.{sealed_text}",
    ):
        with pytest.raises(DecryptionError):
            keys.decrypt(broken, aad=aad)


def test_a_value_only_decrypts_for_its_own_row_and_field():
    keys = ring(("k1", KEY_A))
    row, other_row = uuid.uuid4(), uuid.uuid4()
    value = keys.encrypt(b"token", aad=credential_aad(row))
    with pytest.raises(DecryptionError) as caught:
        keys.decrypt(value, aad=credential_aad(other_row))
    with pytest.raises(DecryptionError):
        keys.decrypt(value, aad=credential_aad(row, "another_field"))
    with pytest.raises(DecryptionError):
        keys.decrypt(value, aad=b"")
    assert "token" not in str(caught.value)

    stored = encrypt_field(
        "verifier", table="oauth_states", row_id=row, field="code_verifier", ring=keys
    )
    assert (
        decrypt_field(stored, table="oauth_states", row_id=row, field="code_verifier", ring=keys)
        == "verifier"
    )
    with pytest.raises(DecryptionError):
        decrypt_field(
            stored, table="service_connections", row_id=row, field="code_verifier", ring=keys
        )


def test_unknown_key_id_is_refused_without_leaking_anything():
    value = ring(("old", KEY_A)).encrypt(b"token", aad=b"x")
    with pytest.raises(DecryptionError) as caught:
        ring(("new", KEY_B)).decrypt(value, aad=b"x")
    assert "'old'" in str(caught.value)
    assert b64(KEY_A) not in str(caught.value) and b64(KEY_B) not in str(caught.value)
    # A value claiming a known kid but sealed under another key fails too.
    forged = value.replace("v1.old.", "v1.new.")
    with pytest.raises(DecryptionError):
        ring(("new", KEY_B)).decrypt(forged, aad=b"x")


def test_a_ring_decrypts_with_every_key_and_encrypts_with_the_first():
    old_value = ring(("old", KEY_A)).encrypt(b"from before", aad=b"x")
    both = KeyRing.parse(f"new:{b64(KEY_B)},old:{b64(KEY_A)}")
    assert both.primary_kid == "new" and both.kids == ("new", "old")
    assert both.decrypt(old_value, aad=b"x") == b"from before"
    fresh = both.encrypt(b"now", aad=b"x")
    assert key_id_of(fresh) == "new"
    assert both.needs_rotation(old_value) and not both.needs_rotation(fresh)
    assert ring(("new", KEY_B)).decrypt(fresh, aad=b"x") == b"now"
    assert b64(KEY_A) not in repr(both) and "new" in repr(both)


def test_key_ring_accepts_standard_and_url_safe_base64_with_or_without_padding():
    key = bytes([0xFB, 0xFF] * 16)  # encodes with + and / (or - and _)
    standard = base64.b64encode(key).decode()
    url_safe = base64.urlsafe_b64encode(key).decode()
    assert "+" in standard or "/" in standard
    for text in (standard, standard.rstrip("="), url_safe, url_safe.rstrip("=")):
        parsed = KeyRing.parse(f" k-1_X : {text} ")
        assert parsed.primary_kid == "k-1_X"
        assert parsed.decrypt(ring(("k-1_X", key)).encrypt(b"t", aad=b"a"), aad=b"a") == b"t"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "is empty"),
        (" , ", "is empty"),
        (f"{b64(KEY_A)}", "has no key id"),
        (f"k1:{b64(KEY_A)},,k2:{b64(KEY_B)}", "entry 2 is empty"),
        (f"bad.kid:{b64(KEY_A)}", "invalid key id"),
        (f"{'x' * 33}:{b64(KEY_A)}", "invalid key id"),
        (f":{b64(KEY_A)}", "invalid key id"),
        (f"k1:{b64(KEY_A)},k1:{b64(KEY_B)}", "more than once"),
        ("k1:not*base64!", "not valid base64"),
        ("k1:", "not valid base64"),
        (f"k1:{base64.b64encode(os.urandom(16)).decode()}", "decodes to 16 bytes"),
        (f"k1:{base64.b64encode(os.urandom(64)).decode()}", "decodes to 64 bytes"),
        (f"k1:{os.urandom(32).hex()}", "decodes to 48 bytes"),
    ],
)
def test_bad_encryption_keys_are_explained_without_echoing_them(value, expected):
    with pytest.raises(ConfigurationError) as caught:
        KeyRing.parse(value)
    message = str(caught.value)
    assert "ENCRYPTION_KEYS" in message
    assert expected in message
    for part in value.replace(":", ",").split(","):
        if len(part.strip()) > 12:
            assert part.strip() not in message


def test_get_key_ring_reads_the_setting(tmp_path):
    settings = Settings(data_dir=tmp_path, encryption_keys=f"k1:{b64(KEY_A)}")
    keys = get_key_ring(settings)
    assert keys.primary_kid == "k1"
    assert get_key_ring(settings) is keys  # cached
    assert not (tmp_path / "keys" / "encryption_key").exists()
    with pytest.raises(ConfigurationError):
        get_key_ring(Settings(data_dir=tmp_path, encryption_keys="k1:short"))


def test_production_refuses_to_run_without_encryption_keys(tmp_path):
    settings = Settings(data_dir=tmp_path, carmenta_env="production")
    with pytest.raises(ConfigurationError) as caught:
        get_key_ring(settings)
    assert "ENCRYPTION_KEYS" in str(caught.value)
    assert not (tmp_path / "keys").exists()


def test_development_generates_a_private_key_once_and_reuses_it(tmp_path):
    settings = Settings(data_dir=tmp_path)
    first = get_key_ring(settings)
    path = tmp_path / "keys" / "encryption_key"
    assert first.primary_kid == "dev"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    value = first.encrypt(b"kept across restarts", aad=b"x")
    assert list((tmp_path / "keys").iterdir()) == [path]  # no temporary file left

    crypto.reset_key_ring_cache()
    again = get_key_ring(Settings(data_dir=tmp_path))
    assert again is not first
    assert again.decrypt(value, aad=b"x") == b"kept across restarts"


def test_processes_starting_together_agree_on_one_dev_key(tmp_path):
    keys_dir = tmp_path / "keys"
    results: list[bytes | None] = []
    barrier = threading.Barrier(6)

    def start() -> None:
        barrier.wait()
        results.append(crypto.load_dev_key(keys_dir))

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 6 and len(set(results)) == 1


def test_a_dev_key_left_from_before_still_decrypts_once_keys_are_configured(tmp_path):
    dev_value = get_key_ring(Settings(data_dir=tmp_path)).encrypt(b"old secret", aad=b"x")
    configured = get_key_ring(Settings(data_dir=tmp_path, encryption_keys=f"k1:{b64(KEY_A)}"))
    assert configured.primary_kid == "k1" and configured.kids == ("k1", "dev")
    assert configured.decrypt(dev_value, aad=b"x") == b"old secret"
    assert configured.needs_rotation(dev_value)
    # Production never reads the development key file.
    production = get_key_ring(
        Settings(data_dir=tmp_path, carmenta_env="production", encryption_keys=f"k1:{b64(KEY_A)}")
    )
    assert production.kids == ("k1",)


def test_a_damaged_dev_key_file_is_reported(tmp_path):
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir()
    path = keys_dir / "encryption_key"
    path.write_text("not a key\n")
    old = path.stat().st_mtime - 60
    os.utime(path, (old, old))
    with pytest.raises(ConfigurationError) as caught:
        get_key_ring(Settings(data_dir=tmp_path))
    assert str(path) in str(caught.value)


# Known answers: AES-256-GCM as NIST/Wycheproof define it, so a wrong mode or key size
# would not go unnoticed behind our own round trips.
def test_known_answer_vectors_against_aesgcm():
    # McGrew & Viega GCM spec, test case 16 (AES-256, 96-bit IV, with AAD).
    key = bytes.fromhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
    iv = bytes.fromhex("cafebabefacedbaddecaf888")
    plaintext = bytes.fromhex(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
        "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
    )
    aad = bytes.fromhex("feedfacedeadbeeffeedfacedeadbeefabaddad2")
    ciphertext = bytes.fromhex(
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
        "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
    )
    tag = bytes.fromhex("76fc6ece0f4e1768cddf8853bb2d551b")
    assert AESGCM(key).encrypt(iv, plaintext, aad) == ciphertext + tag

    # The same vector through the stored format, with our nonce put in by hand.
    keys = ring(("kat", key))
    value = f"v1.kat.{crypto._b64url(iv)}.{crypto._b64url(ciphertext + tag)}"
    assert keys.decrypt(value, aad=aad) == plaintext
    # Test case 13 (AES-256, zero key, empty plaintext): tag only.
    empty = AESGCM(bytes(32)).encrypt(bytes(12), b"", None)
    assert empty == bytes.fromhex("530f8afbc74536b9a963b4f1c4cb738b")
