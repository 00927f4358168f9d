"""Small JSON records in the data dir (calibrated batch sizes, chosen runtimes), written atomically."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path


def read_record(path: Path, key: str) -> dict | None:
    try:
        return json.loads(path.read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None


def write_record(path: Path, key: str, value: dict) -> None:
    """Add or replace one key; other keys written meanwhile by another process may be lost, never corrupted."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        records = json.loads(path.read_text())
        if not isinstance(records, dict):
            records = {}
    except (OSError, ValueError):
        records = {}
    records[key] = value
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(records, handle, indent=1, sort_keys=True)
    os.replace(tmp, path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
