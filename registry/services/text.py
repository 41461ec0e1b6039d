"""Free text that people type (a config's description, a version's message): one check.

The JSON API and the web form both call it, so the same text is stored or refused whichever
way it arrives: at most :data:`MAX_TEXT` characters, no NUL (PostgreSQL cannot store it), no
lone surrogates (not UTF-8) and no other control characters (terminal escapes and the like
in a page or a ``registry`` listing) except tab, line feed and carriage return (a browser's
textarea sends CRLF line ends).
"""

from __future__ import annotations

import re

from registry.errors import InvalidInput

__all__ = ["MAX_TEXT", "check_text", "text_problem"]

MAX_TEXT = 10_000
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def text_problem(value: str | None, max_length: int = MAX_TEXT) -> str | None:
    """What is wrong with ``value`` as free text, or None when it may be stored as it is."""
    if value is None:
        return None
    if len(value) > max_length:
        return f"at most {max_length} characters (got {len(value)})"
    bad = _FORBIDDEN.search(value)
    if bad is not None:
        code = ord(bad.group())
        what = "NUL" if code == 0 else f"the control character U+{code:04X}"
        if 0xD800 <= code <= 0xDFFF:
            what = f"a lone surrogate (U+{code:04X})"
        return f"may not contain {what} (at character {bad.start() + 1})"
    return None


def check_text(value: str | None, field: str, max_length: int = MAX_TEXT) -> str | None:
    """``value`` when it is storable free text; InvalidInput (422) naming ``field`` otherwise."""
    problem = text_problem(value, max_length)
    if problem is not None:
        raise InvalidInput([{"field": field, "message": problem}])
    return value
