"""The index file of an output root: ``ROOT/.codex-index/index.json`` (docs/runs.md, "The index").

One JSON file holding every run's entry (``codex_ml.runs.summary``), keyed by run id, written
through a temporary file and a rename: a reader never sees half an index, and of two processes
that refresh the same root at once the last rename wins with a complete, consistent file (each
entry carries the signature of the files it was read from, so a stale one is just re-read).
JSON rather than pickle: an index in a shared folder must never run code when it is loaded.
A root that cannot be written gets no index file and no error: the entries live in memory.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import orjson

from codex_ml.rundir.encoding import decode_number, encode_number

__all__ = ["INDEX_DIR", "INDEX_FILE", "VERSION", "load_entries", "save_entries"]

INDEX_DIR = ".codex-index"
INDEX_FILE = "index.json"
#: Bumped whenever an entry's shape changes: an index of another version is rebuilt.
VERSION = 1


def index_path(root: Path) -> Path:
    """Where the index of ``root`` lives."""
    return root / INDEX_DIR / INDEX_FILE


def load_entries(root: Path) -> dict[str, dict[str, Any]]:
    """The entries stored for ``root`` ({} when there is no usable index file)."""
    try:
        data = orjson.loads(index_path(root).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("runs"), dict):
        return {}
    runs = data["runs"]
    for entry in runs.values():
        for stats in entry.get("metrics", {}).values():
            stats[0] = float(decode_number(stats[0]))  # the last value may be NaN or infinite
    return runs


def save_entries(root: Path, entries: dict[str, dict[str, Any]]) -> bool:
    """Write the index of ``root``; False (and nothing written) when the root is not writable."""
    folder = root / INDEX_DIR
    tmp = folder / f".{INDEX_FILE}.{os.getpid()}.{threading.get_ident()}.tmp"
    runs = {run_id: _encoded(entry) for run_id, entry in entries.items()}
    try:
        folder.mkdir(exist_ok=True)
        tmp.write_bytes(orjson.dumps({"version": VERSION, "runs": runs}))
        os.replace(tmp, folder / INDEX_FILE)
    except OSError:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        return False
    return True


def _encoded(entry: dict[str, Any]) -> dict[str, Any]:
    # orjson writes NaN as null: spell a non-finite last value as metrics.ndjson does.
    metrics = {key: [encode_number(stats[0]), *stats[1:]] for key, stats in entry.get("metrics", {}).items()}
    return {**entry, "metrics": metrics}
