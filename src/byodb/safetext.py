"""Text a user controls, made safe to write where byodb emits something (an email body, a
log line, a terminal, a file name): one rule for what is unsafe, used everywhere.

Unsafe are the characters of the Unicode categories Cc (control characters: CR, LF, NUL,
ESC…), Cf (format characters: bidirectional overrides, zero-width joiners, the BOM), Zl and
Zp (U+2028 LINE SEPARATOR, U+2029 PARAGRAPH SEPARATOR) and Cs (lone surrogates, which no
encoder accepts). A user id holding one is refused at sign-in (``byodb.web.auth``); values
read from a user's database, and ids stored before that rule, are written through
:func:`printable` or :func:`escaped` wherever they are shown.
"""

from __future__ import annotations

import unicodedata

UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
REPLACEMENT = "\ufffd"
ELLIPSIS = "…"


def is_unsafe(char: str) -> bool:
    return unicodedata.category(char) in UNSAFE_CATEGORIES


def has_unsafe(value: str) -> bool:
    """Whether ``value`` holds a character that could break a line, a header or a name."""
    return any(is_unsafe(char) for char in value)


def bounded(value: str, limit: int) -> str:
    """``value``, cut to at most ``limit`` characters (the last one an ellipsis when cut)."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    return value if len(value) <= limit else value[:limit - 1] + ELLIPSIS


def printable(value: object, limit: int) -> str:
    """``value`` as text with every unsafe character replaced by U+FFFD, at most ``limit``
    characters long. For text a person reads (an email body)."""
    text = str(value)
    return bounded("".join(REPLACEMENT if is_unsafe(char) else char for char in text), limit)


def escaped(value: object, limit: int) -> str:
    """``value`` as text with every unsafe character (and the backslash) written as
    ``\\xNN`` / ``\\uNNNN``, at most ``limit`` characters long. For logs and terminals,
    where the escape must show which character it was and never be confused with one of
    the user's."""
    out: list[str] = []
    for char in str(value):
        if char == "\\":
            out.append("\\\\")
        elif is_unsafe(char):
            code = ord(char)
            out.append(f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")
        else:
            out.append(char)
    return bounded("".join(out), limit)
