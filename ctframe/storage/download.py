"""Fetch a file once, checked against its published digest, written atomically.

Plugins that need files from the internet (model weights, datasets) share this: a partial or corrupt
download never appears under the target name, and every failure is one line saying which file to
fetch by hand and where to put it.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

from ctframe.base.errors import DataError
from ctframe.storage.files import atomic_open


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _network_reason(error: Exception) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    return str(getattr(error, "reason", None) or error)


# keyword-only options with defaults (as urllib's): plugins call it by keyword for their own files
def download_checked(
    url: str,
    target: Path,
    algorithm: str,
    expected: str,
    *,
    timeout: float = 60.0,
    error_type: type[Exception] = DataError,
    hint: str = "",
) -> Path:
    """Stream ``url`` into ``target``; keep it only if its ``algorithm`` hexdigest starts with ``expected``.

    ``expected`` may be a full digest or a published prefix (torchvision names files by one). ``hint``
    is appended to the failure messages (say, an environment variable that points at another folder).
    """
    digest = hashlib.new(algorithm, usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_open(target, "wb") as handle:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                digest.update(chunk)
                handle.write(chunk)
            if not digest.hexdigest().startswith(expected):
                raise error_type(
                    f"download of {url} is corrupt ({algorithm} {digest.hexdigest()}, expected {expected}); "
                    f"retry, or fetch it by hand into {target}{hint}"
                )
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        raise error_type(
            f"cannot download {url} ({_network_reason(error)}); fetch that file yourself and put it at "
            f"{target} ({algorithm} {expected}){hint}"
        ) from None
    except OSError as error:
        raise error_type(f"cannot write {target} ({error}); choose a writable folder{hint}") from None
    return Path(target)
