"""Reading and writing a run directory's JSON files (run.json, summary.json, params.json, tags.json).

The one place that does it: a reader gets ``{}`` for a file that is missing, unreadable or not a
JSON object (these files are metadata; a run without them is still a run), and a writer replaces
the file through a temporary file named for its process and thread, so a reader never sees half a
file and two writers never rename each other's temporary file. File names come from ``RunPaths``.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from codex_ml.rundir.encoding import json_safe
from codex_ml.rundir.paths import RunPaths

__all__ = ["read_json", "read_run_json", "read_summary", "write_json_atomic"]


def read_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON object file, or {} when it is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON via a temp file and rename, so readers never see half a file."""
    # A temp name of this process and thread's own: two writers never rename each other's file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    text = json.dumps(json_safe(data), indent=2, sort_keys=True, default=str, allow_nan=False)
    tmp.write_text(text + "\n", encoding="utf-8", errors="surrogatepass")
    os.replace(tmp, path)


def read_run_json(run_dir: str | os.PathLike[str] | RunPaths) -> dict[str, Any]:
    """The run's run.json (``{}`` when there is none yet)."""
    paths = run_dir if isinstance(run_dir, RunPaths) else RunPaths(Path(run_dir))
    return read_json(paths.run_file)


def read_summary(run_dir: str | os.PathLike[str] | RunPaths) -> dict[str, Any]:
    """The run's summary.json (``{}`` while the run is open or when it never closed)."""
    paths = run_dir if isinstance(run_dir, RunPaths) else RunPaths(Path(run_dir))
    return read_json(paths.summary)
