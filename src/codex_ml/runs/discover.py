"""Finding the runs under an output root (docs/runs.md, "What a run is").

A run is a directory holding ``metrics.ndjson`` or ``run.json`` (docs/run-directory.md), at any
depth under the root: ``runs/<name>``, ``sweeps/<sweep>/<trial>``, a pipeline's output folder.
The walk goes on below a run (a pipeline's stage folders may hold runs of their own) but never
into the folders a run keeps for itself (checkpoints, viewers' stores, artifacts), which can hold
thousands of files and never a run. Light: os only.
"""

from __future__ import annotations

import os
from pathlib import Path

from codex_ml.rundir.paths import CHECKPOINTS_DIR, HEALTH_DIR, METRICS_FILE, RUN_FILE, TOKENIZER_DIR

__all__ = ["RUN_OWN_DIRS", "find_runs", "run_id_of"]

#: Folders of a run that are its own files, never other runs (docs/run-directory.md's table).
RUN_OWN_DIRS = frozenset({CHECKPOINTS_DIR, TOKENIZER_DIR, HEALTH_DIR, "artifacts", "tensorboard", "mlruns", "wandb"})
#: The viewers' own stores, skipped at any depth: a sweep keeps one MLflow store for all its trials
#: (``sweeps/<sweep>/mlruns``, docs/sweeps.md), thousands of files that are never a run.
VIEWER_STORES = frozenset({"tensorboard", "mlruns", "wandb"})


def find_runs(root: Path) -> list[Path]:
    """Every run directory under ``root`` (``root`` itself included), sorted by path.

    Hidden folders (``.codex-index``, ``.git``, ...) and symbolic links to folders are skipped:
    a link could lead to the same runs twice or out of the root.
    """
    found: list[Path] = []
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue  # unreadable folder: its runs cannot be listed, the others still can
        names = {entry.name for entry in entries}
        is_run = METRICS_FILE in names or RUN_FILE in names
        if is_run:
            found.append(Path(folder))
        for entry in entries:
            if entry.name.startswith(".") or entry.name in VIEWER_STORES or (is_run and entry.name in RUN_OWN_DIRS):
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
    return sorted(found)


def run_id_of(run_dir: Path, root: Path) -> str:
    """The run's id in an index: its path relative to the root, '/'-separated ('.' for the root)."""
    # find_runs' folders all start with the root as given: cutting the prefix is ten times cheaper than relpath.
    text, prefix = str(run_dir), str(root).rstrip(os.sep) + os.sep
    relative = text[len(prefix):] if text.startswith(prefix) else os.path.relpath(text, root)
    return relative.replace(os.sep, "/") if relative and text != str(root) else "."
