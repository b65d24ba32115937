from carmenta.auth import passwords, throttle
from carmenta.auth.cookies import read_cookie, safe_return_path


def test_password_rules_report_each_rule_as_it_is_met():
    labels_met = {rule.label: rule.met for rule in passwords.password_rules("short")}
    assert labels_met["At least 10 characters"] is False
    assert labels_met["Not a commonly used password"] is True
    strong = passwords.password_rules("correct horse battery", email="ann@example.com")
    assert all(rule.met for rule in strong)


def test_common_repetitive_and_email_based_passwords_are_refused():
    assert "Not a commonly used password" in passwords.password_problems("password123")
    assert "Not a commonly used password" in passwords.password_problems("aaaaaaaaaaaa")
    assert "Does not contain your email address" in passwords.password_problems(
        "margaret-2026!", email="Margaret@example.com"
    )
    assert passwords.password_problems("x" * 257)[0] == "At most 256 characters"


def test_email_is_normalised_and_validated():
    assert passwords.normalize_email("  Ann@Example.COM ") == "ann@example.com"
    assert passwords.email_problem("ann@example.com") is None
    assert passwords.email_problem("") == "Enter your email address."
    for bad in ("ann", "ann@", "@example.com", "an n@example.com", "a@b"):
        assert passwords.email_problem(bad) is not None, bad


async def test_hashes_are_argon2id_and_verify_only_the_right_password():
    hashed = await passwords.hash_password("correct horse battery")
    assert hashed.startswith("$argon2id$")
    assert "correct horse" not in hashed
    assert await passwords.verify_password(hashed, "correct horse battery")
    assert not await passwords.verify_password(hashed, "correct horse batterY")
    assert not await passwords.verify_password(None, "anything at all")
    assert not await passwords.verify_password("not a hash", "anything")


def test_throttle_delay_grows_after_the_free_failures_and_is_capped():
    assert [throttle.delay_after(n) for n in range(1, 6)] == [0, 0, 0, 0, 0]
    assert [throttle.delay_after(n) for n in range(6, 10)] == [1, 2, 4, 8]
    assert throttle.delay_after(100) == throttle.MAX_DELAY_SECONDS


def test_return_paths_stay_on_this_site():
    assert safe_return_path("/account?tab=1") == "/account?tab=1"
    for hostile in (
        "https://evil.example",
        "//evil.example/x",
        "/\\evil.example",
        "javascript:x",
        "evil",
        "/sign-in?next=/x",
        "/auth/session",
        "/a\r\nSet-Cookie: x",
        None,
        "",
    ):
        assert safe_return_path(hostile) == "/", hostile


def test_cookie_header_parsing():
    header = "theme=dark; carmenta_session=abc.def.ghi; other=1"
    assert read_cookie(header, "carmenta_session") == "abc.def.ghi"
    assert read_cookie(header, "missing") is None
    assert read_cookie(None, "carmenta_session") is None
    assert read_cookie('bad"cookie', "carmenta_session") is None
