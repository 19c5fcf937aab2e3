"""The optional signing key, and the digests that make model files and a run's ledger tamper-evident.

Without a key a digest is a plain SHA-256: it finds damage and careless edits, but anyone can recompute
it. With a key (``CTFRAME_SIGNING_KEY``: the key itself; or ``CTFRAME_SIGNING_KEY_FILE``: a file that
holds it) a digest is an HMAC-SHA256 that only a key holder can produce. The key is deliberately not the
CT reader's pseudonym key: whoever verifies models must not be able to confirm guessed patient ids.

Digests are taken over a canonical JSON text (sorted keys, no spaces, no NaN), so reading a file and
writing it back with other formatting does not change them. Each use prefixes its own label, so a digest
made for one purpose never verifies another.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctframe.base.errors import CtframeError

KEY_ENV = "CTFRAME_SIGNING_KEY"
KEY_FILE_ENV = "CTFRAME_SIGNING_KEY_FILE"
MIN_KEY_CHARS = 32
MAKE_KEY = 'python -c "import secrets; print(secrets.token_hex(32))"'
UNKEYED, KEYED = "sha256", "hmac-sha256"


class SigningKeyError(CtframeError):
    """A signing key that is set but unusable (unreadable file, too short, set twice)."""


@dataclass(frozen=True)
class SigningKey:
    secret: bytes
    where: str
    """Where it came from, for messages (the variable's name or the key file's path, never the key)."""

    @property
    def key_id(self) -> str:
        """A short public name of the key: tells "signed with another key" from "edited" in messages."""
        return hmac.new(self.secret, b"ctframe key id", hashlib.sha256).hexdigest()[:16]


def signing_key(environ: Mapping[str, str] | None = None) -> SigningKey | None:
    """The key from ``CTFRAME_SIGNING_KEY`` or the file ``CTFRAME_SIGNING_KEY_FILE`` names; ``None``
    when neither is set. White space around the key is dropped."""
    env = os.environ if environ is None else environ
    text, file = env.get(KEY_ENV, "").strip(), env.get(KEY_FILE_ENV, "").strip()
    if text and file:
        raise SigningKeyError(f"both {KEY_ENV} and {KEY_FILE_ENV} are set; set one of them")
    where = KEY_ENV
    if file:
        where = f"the key file {file} ({KEY_FILE_ENV})"
        try:
            text = Path(file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise SigningKeyError(f"cannot read {where}: {error.__class__.__name__}") from None
        if not text:
            raise SigningKeyError(f"{where} is empty; make a key with {MAKE_KEY}")
    if not text:
        return None
    if len(text) < MIN_KEY_CHARS:
        raise SigningKeyError(
            f"the signing key in {where} has {len(text)} characters, at least {MIN_KEY_CHARS} are "
            f"needed; make one with {MAKE_KEY}"
        )
    return SigningKey(text.encode("utf-8"), where)


def canonical(value: Any) -> bytes:
    """``value`` as canonical JSON bytes; a ValueError for NaN or infinity (not JSON)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode()


def digest(label: str, value: Any, key: SigningKey | None) -> str:
    """SHA-256 (no key) or HMAC-SHA256 (key) of ``label`` and ``value``'s canonical JSON, in hex."""
    message = label.encode() + b"\0" + canonical(value)
    if key is None:
        return hashlib.sha256(message).hexdigest()
    return hmac.new(key.secret, message, hashlib.sha256).hexdigest()


def method_of(key: SigningKey | None) -> str:
    return UNKEYED if key is None else KEYED


def same(a: Any, b: Any) -> bool:
    """Digest comparison in constant time (a mismatch must not tell how much of a guess was right)."""
    return isinstance(a, str) and isinstance(b, str) and hmac.compare_digest(a, b)
