"""Run :mod:`keras_reference` in its own process: tensorflow must never share a process with torch."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

RUNNER = Path(__file__).with_name("keras_reference.py")


class KerasUnavailable(RuntimeError):
    """tensorflow or keras is not installed (``pip install ctframe[keras]``)."""


def keras_available() -> bool:
    """Whether tensorflow and keras are installed, found without importing them."""
    return all(importlib.util.find_spec(name) is not None for name in ("tensorflow", "keras"))


def run_keras_reference(arguments: list[str], timeout: float = 600, threads: int | None = None) -> dict:
    """``python keras_reference.py ARGUMENTS`` with this interpreter; its JSON answer as a dict."""
    if not keras_available():
        raise KerasUnavailable("tensorflow and keras are not installed; pip install 'ctframe[keras]'")
    environment = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, str(RUNNER), *arguments]
    if threads is not None:
        command += ["--threads", str(threads)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment)
    if result.returncode != 0:
        tail = " | ".join(result.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"keras_reference {arguments[0]} failed ({result.returncode}): {tail}")
    return json.loads(result.stdout.strip().splitlines()[-1])
