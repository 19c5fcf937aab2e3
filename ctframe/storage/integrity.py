"""``integrity.json``: the sha256 of every file a resumed run relies on, so resume can refuse an edited run.

A run records its resolved recipe, its model files and whatever a plugin writes through
:func:`write_recorded` (``save_checkpoint(..., run_dir=...)`` uses it: the two_phase checkpoints,
folder_split's manifest). ``ctframe run --resume`` calls :func:`verify` before it writes anything: a
file that differs from its record, or a recorded file that is gone, is a one-line refusal naming it.

A record is updated around the write in two steps, ``pending`` (the new hash) before the file is renamed
into place and ``sha256`` after, so a process killed at any moment leaves a state that verifies: the
old file with its ``sha256``, or the new one with its ``pending`` hash. Unsigned, this guards against
edits and damage, not against someone who rewrites ``integrity.json`` too; with a signing key
(:mod:`ctframe.storage.signing`) the record carries a ``signature`` over its files, and a key set when
the run is verified refuses an unsigned or wrongly signed record. Model files are checked against the
record wherever they are read (:func:`check_recorded`), so one edit cannot repair a model file and its
record together.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from ctframe.base.errors import RunError
from ctframe.storage.files import first_line, sha256_bytes, sha256_file, write_bytes, write_json
from ctframe.storage.layout import INTEGRITY
from ctframe.storage.signing import KEY_ENV, KEYED, SigningKey, digest, same, signing_key

FORMAT = 1
ANY = "*"
"""A ``pending`` value for a file the core writes through code it does not control (model files): while
it is being written any content is accepted, since resume writes it again before anything uses it."""

_lock = threading.Lock()  # one read-modify-write of a ledger at a time (a data loader thread may write)


def _root(run_dir: Any) -> Path:
    return Path(getattr(run_dir, "path", run_dir))  # a RunDirectory or its path


def is_recording(run_dir: Any) -> bool:
    """Whether ``run_dir`` keeps an integrity record (a run ctframe created, not a scratch folder)."""
    return INTEGRITY.path(run_dir).is_file()


def _write(root: Path, files: dict[str, dict[str, Any]]) -> Path:
    """Write the record, signed when a signing key is set."""
    ledger: dict[str, Any] = {"format": FORMAT, "files": files}
    key = signing_key()
    if key is not None:
        ledger["signature"] = {"method": KEYED, "key_id": key.key_id, "digest": _signature(files, key)}
    return write_json(INTEGRITY.path(root), ledger)


def _signature(files: dict[str, dict[str, Any]], key: SigningKey) -> str:
    return digest("ctframe-integrity", {"format": FORMAT, "files": files}, key)


def start(run_dir: Any) -> Path:
    """Create the empty record of a new run; later writes through :func:`write_recorded` fill it."""
    return _write(_root(run_dir), {})


def _name(root: Path, path: Path) -> str:
    try:
        return Path(path).absolute().relative_to(root.absolute()).as_posix()
    except ValueError:
        raise ValueError(f"{path} is not inside the run directory {root}") from None


def _read(root: Path, signed: bool = False) -> dict[str, dict[str, Any]]:
    """The ``files`` mapping of ``root``'s record; a :class:`RunError` when it is not a valid one.
    ``signed``: also check the record's signature (see :func:`_check_signature`)."""
    where = INTEGRITY.path(root)
    try:
        ledger = json.loads(where.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(
            f"{where} is missing, so this run cannot be verified; start a new run with ctframe run RECIPE"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunError(f"{where} is unreadable ({first_line(error)}); this run cannot be verified") from None
    files = ledger.get("files") if isinstance(ledger, dict) else None
    if not isinstance(ledger, dict) or ledger.get("format") != FORMAT or not isinstance(files, dict):
        raise RunError(f"{where} is not an integrity record of format {FORMAT}; this run cannot be verified")
    for name, entry in files.items():
        pure = PurePosixPath(name)
        if pure.is_absolute() or ".." in pure.parts or not name or not isinstance(entry, dict):
            raise RunError(f"{where} has an invalid entry {name!r}; this run cannot be verified")
    if signed:
        _check_signature(where, ledger.get("signature"), files)
    return files


def _check_signature(where: Path, signature: Any, files: dict[str, dict[str, Any]]) -> None:
    """With a key set: refuse a record that is unsigned, signed with another key, or edited since. Without
    one: refuse a signed record, since a resume would write it back unsigned."""
    key = signing_key()
    if key is None:
        if signature is not None:
            raise RunError(f"{where} is signed; set {KEY_ENV} (the key that signed it) to use this run")
        return
    if not isinstance(signature, dict):
        raise RunError(
            f"{where} is not signed, and a signing key is set ({key.where}): refusing an unsigned run; "
            f"unset {KEY_ENV} to use it unverified"
        )
    if signature.get("key_id") != key.key_id:
        raise RunError(f"{where} was signed with another key (key id {str(signature.get('key_id'))[:16]!r})")
    if not same(signature.get("digest"), _signature(files, key)):
        raise RunError(f"{where} changed since it was signed (signature mismatch); this run is not trusted")


def _update(root: Path, name: str, **values: Any) -> None:
    with _lock:
        files = _read(root)
        entry = files.setdefault(name, {"sha256": None})
        entry.update(values)
        for key in [k for k, v in entry.items() if v is None and k != "sha256"]:
            del entry[key]
        _write(root, files)


def write_recorded(path: Path, data: bytes, run_dir: Any, kind: str = "file") -> Path:
    """Write ``data`` to ``path`` atomically and record its sha256 in ``run_dir``'s ``integrity.json``.

    The one function through which the core and plugins record a file that a resumed run relies on.
    Where ``run_dir`` keeps no record (a scratch folder while validating) it is a plain atomic write.
    """
    root = _root(run_dir)
    if not is_recording(root):
        return write_bytes(path, data)
    name, digest = _name(root, path), sha256_bytes(data)
    _update(root, name, pending=digest, kind=kind)
    write_bytes(path, data)
    _update(root, name, sha256=digest, pending=None)
    return Path(path)


@contextlib.contextmanager
def recording(run_dir: Any, paths: Iterable[Path], kind: str = "file") -> Iterator[None]:
    """Record files that code outside this module writes inside the block (the model files)."""
    root, paths = _root(run_dir), list(paths)
    if not is_recording(root):
        yield
        return
    names = [_name(root, path) for path in paths]
    for name in names:
        _update(root, name, pending=ANY, kind=kind)
    yield
    for name, path in zip(names, paths, strict=True):
        _update(root, name, sha256=sha256_file(path), pending=None)


def _problem(root: Path, name: str, entry: dict[str, Any]) -> str | None:
    path = root / name
    accepted = {entry.get("sha256")} | ({entry["pending"]} if "pending" in entry else set())
    if ANY in accepted:
        return None
    if not path.exists():
        return None if None in accepted else f"{path} is recorded in {INTEGRITY.name} but missing"
    if not path.is_file():
        return f"{path} is recorded in {INTEGRITY.name} as a file but is not one"
    if sha256_file(path) not in accepted:
        return f"{path} differs from the file this run wrote (sha256 recorded in {INTEGRITY.name})"
    return None


def verify(run_dir: Any) -> None:
    """Refuse a run directory whose recorded files changed: one :class:`RunError` line naming the first.

    Reads only. :func:`ctframe.storage.checkpoints.verify_run` adds the check that every recorded
    checkpoint still opens weights-only.
    """
    root = _root(run_dir)
    for name, entry in sorted(_read(root, signed=True).items()):
        problem = _problem(root, name, entry)
        if problem:
            raise RunError(f"{problem}: it was edited or damaged; restore it, or start a new run")


def recorded(run_dir: Any, kind: str) -> list[Path]:
    """The recorded files of one ``kind`` that exist (``"checkpoint"``, ``"model"``, ...)."""
    root = _root(run_dir)
    return [
        root / name
        for name, entry in sorted(_read(root).items())
        if entry.get("kind") == kind and (root / name).is_file()
    ]


def settle(run_dir: Any) -> None:
    """After :func:`verify`: end the writes a kill interrupted by recording those files as they are."""
    root = _root(run_dir)
    with _lock:
        files = _read(root)
        for name, entry in list(files.items()):
            if "pending" not in entry:
                continue  # verify found it equal to its sha256
            if (root / name).is_file():
                entry["sha256"] = sha256_file(root / name)
                del entry["pending"]
            else:
                del files[name]  # its first write never completed
        _write(root, files)


def check_recorded(path: Path) -> str | None:
    """When ``path`` is a file of a run directory (``RUN/models/<key>.json``) that the run's record
    lists: why it no longer matches the record (one line), else ``None``. Files elsewhere: ``None``."""
    path = Path(path)
    for root in path.absolute().parents[:2]:
        if not is_recording(root):
            continue
        try:  # without a key a signed record's hashes still count; the model file warns it is unverified
            entry = _read(root, signed=signing_key() is not None).get(_name(root, path))
        except RunError as error:
            return str(error)
        problem = None if entry is None else _problem(root, _name(root, path), entry)
        return None if problem is None else f"{problem}: the file or the run's record was edited"
    return None
