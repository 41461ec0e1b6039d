"""Password hashes stay readable both ways with werkzeug's, which the users table always held."""

from __future__ import annotations

from werkzeug.security import check_password_hash, generate_password_hash

from registry.services.passwords import check_password, hash_password


def test_hashes_written_by_werkzeug_before_still_check() -> None:
    stored = generate_password_hash("correct horse")
    assert check_password(stored, "correct horse")
    assert not check_password(stored, "correct hors")


def test_our_hashes_read_as_werkzeug_reads_them_and_are_salted() -> None:
    ours = hash_password("battery staple")
    assert ours.startswith("scrypt:32768:8:1$")
    assert check_password_hash(ours, "battery staple")
    assert ours != hash_password("battery staple")


def test_an_unreadable_hash_is_a_mismatch_not_an_error() -> None:
    for stored in ("", "plain", "pbkdf2:sha256:1$s$00", "scrypt:x:8:1$s$00", "scrypt:1$s"):
        assert not check_password(stored, "anything")
