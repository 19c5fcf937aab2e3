"""A model file's ``integrity`` block: a digest of all its other fields, the weights' sha256 included.

The block holds ``method`` (``sha256``, or ``hmac-sha256`` with a signing key, see
:mod:`ctframe.storage.signing`), the key's public ``key_id`` when signed, a short digest per field (so
that a refusal can name the field that changed) and ``digest`` over all fields together. Without a key it
finds damage and careless edits; with one, deliberate edits too, since only a key holder can sign.

What :func:`check_seal` accepts:

* a signed file with the key set: only when key and digest match;
* a signed file without a key: accepted with a warning (it cannot be verified here);
* an unsigned file with a key set: refused, since anyone can write an unkeyed digest;
* a file of format version 1 (written before the block existed): refused with a key set, else accepted
  with a warning; a version 2 file without the block is refused (the block was removed).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ctframe.storage.model_fields import ModelFileError
from ctframe.storage.signing import KEY_ENV, KEYED, UNKEYED, SigningKey, digest, method_of, same

BLOCK = "integrity"
LEGACY_VERSION = 1
_FIELD_CHARS = 16  # enough to name a changed field; ``digest`` is the full-length check
_RESTORE = "restore the model file from the run that wrote it, or train again"


def _body(metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in metadata.items() if name != BLOCK}


def _field_digests(body: Mapping[str, Any], key: SigningKey | None) -> dict[str, str]:
    return {name: digest(f"ctframe-model-field:{name}", v, key)[:_FIELD_CHARS] for name, v in body.items()}


def seal(metadata: Mapping[str, Any], key: SigningKey | None) -> dict[str, Any]:
    """``metadata`` with its ``integrity`` block (signed when ``key`` is given)."""
    body = _body(metadata)
    block: dict[str, Any] = {"method": method_of(key)}
    if key is not None:
        block["key_id"] = key.key_id
    block["fields"] = _field_digests(body, key)
    block["digest"] = digest("ctframe-model", body, key)
    return {**body, BLOCK: block}


def _changed(block: Mapping[str, Any], body: Mapping[str, Any], key: SigningKey | None) -> str:
    """The fields whose digest differs from the block's, as words for a message."""
    stored = block.get("fields") if isinstance(block.get("fields"), Mapping) else {}
    now = _field_digests(body, key)
    changed = sorted(name for name in now if name in stored and not same(stored[name], now[name]))
    added = sorted(name for name in now if name not in stored)
    removed = sorted(name for name in stored if name not in now)
    words = [f"field {name} changed" for name in changed] + [f"field {name} added" for name in added]
    words += [f"field {name} removed" for name in removed]
    return "; ".join(words[:3]) or "its integrity block was edited"


def check_seal(path: Path, metadata: Mapping[str, Any], key: SigningKey | None) -> str | None:
    """Refuse a model file whose metadata changed since it was written (:class:`ModelFileError`, one
    line); returns a warning to show when the file is accepted unverified, else ``None``."""
    block = metadata.get(BLOCK)
    if block is None:
        if metadata.get("format_version") != LEGACY_VERSION:
            raise ModelFileError(f"{path}: field {BLOCK} is missing (it was removed); {_RESTORE}")
        if key is not None:
            raise ModelFileError(
                f"{path}: field {BLOCK} is missing: the file was written before model files were signed, and "
                f"with a signing key set ({key.where}) only signed files are accepted"
            )
        return f"{path.name} has no integrity record (written by an older ctframe): its metadata is unchecked"
    if not isinstance(block, Mapping) or block.get("method") not in (UNKEYED, KEYED):
        raise ModelFileError(f"{path}: field {BLOCK} is not an integrity record ctframe reads; {_RESTORE}")
    body = _body(metadata)
    if block["method"] == KEYED and key is None:
        return f"{path.name} is signed; set {KEY_ENV} to verify it (not verified)"
    if block["method"] == UNKEYED and key is not None:
        raise ModelFileError(
            f"{path}: field {BLOCK} is an unkeyed sha256, not a signature, and a signing key is set "
            f"({key.where}): refusing an unsigned model file"
        )
    if key is not None and block.get("key_id") != key.key_id:
        raise ModelFileError(
            f"{path}: field {BLOCK} was signed with another key (key id {str(block.get('key_id'))[:16]!r}, "
            f"yours is {key.key_id!r}); set the key that signed it"
        )
    try:
        expected = digest("ctframe-model", body, key)
    except ValueError:  # NaN or infinity somewhere: not JSON, so not what ctframe wrote
        raise ModelFileError(f"{path}: holds NaN or infinity, so it was edited; {_RESTORE}") from None
    if not same(block.get("digest"), expected):
        what = "signature" if key is not None else "sha256"
        raise ModelFileError(
            f"{path}: metadata changed since it was written ({_changed(block, body, key)}; field {BLOCK} "
            f"{what} mismatch); {_RESTORE}"
        )
    return None
