"""Password hashes: scrypt from the standard library, in werkzeug's ``scrypt:n:r:p$salt$hex`` form.

The web users table has always stored werkzeug's format (migration 0004); reading and writing
it here keeps every stored hash valid while the services stay free of Flask's toolkit.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

#: werkzeug's defaults: n = 2**15, r = 8, p = 1 (about 90 ms a check here).
N, R, P = 2**15, 8, 1
_SALT_CHARS = string.ascii_letters + string.digits
_SALT_LENGTH = 16


def _scrypt(password: str, salt: str, n: int, r: int, p: int) -> str:
    return hashlib.scrypt(
        password.encode(), salt=salt.encode(), n=n, r=r, p=p, maxmem=132 * n * r * p
    ).hex()


def hash_password(password: str) -> str:
    """A salted scrypt hash of ``password``."""
    salt = "".join(secrets.choice(_SALT_CHARS) for _ in range(_SALT_LENGTH))
    return f"scrypt:{N}:{R}:{P}${salt}${_scrypt(password, salt, N, R, P)}"


def check_password(stored: str, password: str) -> bool:
    """True when ``password`` matches ``stored``; False for any hash this cannot read."""
    try:
        method, salt, expected = stored.split("$", 2)
        name, n, r, p = method.split(":")
        if name != "scrypt":
            return False
        actual = _scrypt(password, salt, int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)
