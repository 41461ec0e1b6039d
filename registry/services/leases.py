"""Claim leases: opaque, unguessable fencing tokens, of which only the sha256 is stored.

A claim makes a new lease (``secrets.token_urlsafe``: 256 random bits) and stores its digest in
``runs.lease_hash``; the worker sends the lease back with each heartbeat, completion and
release. A value that is not a string, or whose digest differs, is not the lease.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

LEASE_BYTES = 32


def digest(lease: str) -> str:
    """The sha256 hex digest stored in place of ``lease``."""
    return hashlib.sha256(lease.encode("utf-8")).hexdigest()


def new_lease() -> tuple[str, str]:
    """A fresh lease and its digest."""
    lease = secrets.token_urlsafe(LEASE_BYTES)
    return lease, digest(lease)


def matches(lease: object, stored: str | None) -> bool:
    """Whether ``lease`` is the one whose digest is ``stored`` (compared in constant time)."""
    if not isinstance(lease, str) or stored is None:
        return False
    return hmac.compare_digest(digest(lease), stored)
