"""File names as printable, reversible UTF-8 text for CSV, JSON and logs.

On POSIX a file name is bytes; Python's ``os.fsdecode`` turns each byte that is not valid UTF-8
into a lone surrogate (``surrogateescape``), which no UTF-8 writer accepts. :func:`escape_name`
rewrites a name into text that any writer accepts, and :func:`unescape_name` gives the exact name
back (``unescape_name(escape_name(s)) == s`` for every ``str``):

* ``\\\\``         a backslash (so every other backslash starts an escape);
* ``\\xNN``        the raw byte ``NN`` of the name: an undecodable byte (``80``-``FF``, a
  surrogate-escaped character) or an ASCII control character (``00``-``1F``, ``7F``);
* ``\\uNNNN``      any other lone surrogate, a C1 control (``U+0080``-``U+009F``), or a line or
  paragraph separator (``U+2028``, ``U+2029``).

Everything else, including spaces, brackets and non-ASCII letters, is kept as it is, so an ordinary
name is its own escaped form. The rule is fixed (it does not follow the Unicode tables of the running
Python), so the same name escapes the same way on every machine. Normalisation (NFC / NFD) is not
this module's business: a caller that wants one form normalises before escaping.

Escaping is not idempotent (a backslash doubles each time), so escape a name once, where it is read
from the file system. A writer that receives names from other code uses :func:`ensure_escaped`,
which leaves escaped text alone and escapes only text that could not be written (:func:`needs_escaping`).
"""

from __future__ import annotations

import os
import re

_ESCAPED = re.compile(r"[\\\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_ESCAPE = re.compile(r"\\(?:(\\)|x([0-9A-Fa-f]{2})|u([0-9A-Fa-f]{4})|)")  # empty: a stray backslash


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if char == "\\":
        return "\\\\"
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape's stand-in for the raw byte code - 0xDC00
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def escape_name(name: str) -> str:
    """``name`` (a ``str`` from ``os.fsdecode`` or ``os.listdir``) as printable UTF-8 text."""
    return _ESCAPED.sub(_escape_one, name)


def escape_path(path: str | bytes | os.PathLike) -> str:
    """:func:`escape_name` of a path given as ``str``, ``bytes`` or a path object."""
    return escape_name(os.fsdecode(path))


def _unescape_one(match: re.Match[str]) -> str:
    backslash, byte, code = match.groups()
    if backslash:
        return "\\"
    if byte is not None:
        value = int(byte, 16)
        return chr(0xDC00 + value) if value >= 0x80 else chr(value)
    if code is not None:
        return chr(int(code, 16))
    raise ValueError(
        f"{match.string!r}: the backslash at position {match.start()} starts no \\\\, \\xNN or \\uNNNN escape"
    )


def unescape_name(text: str) -> str:
    """The name :func:`escape_name` turned into ``text``; usable with ``open`` and ``Path`` as it is.

    Raises ``ValueError`` for a backslash that starts no escape (text that did not come from
    :func:`escape_name`).
    """
    return _ESCAPE.sub(_unescape_one, text) if "\\" in text else text


def needs_escaping(text: str) -> bool:
    """Whether ``text`` holds characters that :func:`escape_name` rewrites, a backslash not counted.

    Text that already went through :func:`escape_name` never does, so a writer that gets names from
    plugins may escape exactly the strings for which this is true without escaping any twice.
    """
    return any(match.group() != "\\" for match in _ESCAPED.finditer(text))


def ensure_escaped(text: str) -> str:
    """``text`` as it is when it is already printable (escaped, or an ordinary name), else escaped.

    For writers of names that other code produced: names from ctframe's own datasets arrive escaped
    and pass unchanged (never escaped twice); a raw name from elsewhere cannot break the file.
    """
    return escape_name(text) if needs_escaping(text) else text
