"""The run directory contract (documented in docs/run-directory.md).

Every file a run writes lives under ``<output_root>/<run_name>/``. Readers (inspect,
export, replay) rely only on these names, never on importing the writer.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from codex_ml.errors import OutputRootError, RunNameError

METRICS_FILE = "metrics.ndjson"
HISTOGRAMS_FILE = "histograms.ndjson"
TEXT_FILE = "text.ndjson"
PARAMS_FILE = "params.json"
TAGS_FILE = "tags.json"
RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"
LOCK_FILE = "run.lock"
#: The system-metrics sampler's file when it writes next to the run (``--system-metrics`` AUTO).
SYSTEM_METRICS_FILE = "system_metrics.jsonl"
#: Folders the trainer and the pipeline keep in the run directory.
CHECKPOINTS_DIR = "checkpoints"
TOKENIZER_DIR = "tokenizer"
#: Health events (one JSON object per line) and the health folder (stall stack dumps).
EVENTS_FILE = "events.ndjson"
HEALTH_DIR = "health"

_FORBIDDEN_CHARS = {"/": "a '/'", "\\": "a '\\'", "\x00": "a NUL byte", ":": "a ':'"}


@dataclass(frozen=True)
class RunPaths:
    """Paths of one run directory; properties are the public layout."""

    root: Path

    @property
    def metrics(self) -> Path:
        """Scalar metrics, one JSON object per line (the source of truth)."""
        return self.root / METRICS_FILE

    @property
    def histograms(self) -> Path:
        """Histogram records, one JSON object per line."""
        return self.root / HISTOGRAMS_FILE

    @property
    def text(self) -> Path:
        """Text records, one JSON object per line."""
        return self.root / TEXT_FILE

    @property
    def params(self) -> Path:
        """Flattened params/config as one JSON object."""
        return self.root / PARAMS_FILE

    @property
    def tags(self) -> Path:
        """Tags as one JSON object."""
        return self.root / TAGS_FILE

    @property
    def run_file(self) -> Path:
        """Run identity, status and backend ids (used by resume)."""
        return self.root / RUN_FILE

    @property
    def summary(self) -> Path:
        """Last value of every metric plus run status, written on close."""
        return self.root / SUMMARY_FILE

    @property
    def lock(self) -> Path:
        """The one-writer lock (flock) and a note of its holder's pid, host and start time."""
        return self.root / LOCK_FILE

    @property
    def tensorboard(self) -> Path:
        """TensorBoard event files."""
        return self.root / "tensorboard"

    @property
    def mlruns(self) -> Path:
        """Default local MLflow store."""
        return self.root / "mlruns"

    @property
    def wandb(self) -> Path:
        """W&B's run files (W&B itself adds a ``wandb/`` folder below this dir)."""
        return self.root

    @property
    def artifacts(self) -> Path:
        """Copies of every logged artifact."""
        return self.root / "artifacts"

    @property
    def system_metrics(self) -> Path:
        """The system-metrics samples when the sampler writes next to the run (training writes
        ``checkpoints/system_metrics.jsonl``; run.json's ``system_metrics`` names the file used)."""
        return self.root / SYSTEM_METRICS_FILE

    @property
    def checkpoints(self) -> Path:
        """The trainer's and the pipeline's checkpoints."""
        return self.root / CHECKPOINTS_DIR

    @property
    def tokenizer(self) -> Path:
        """The trained tokenizer a resumed run reloads."""
        return self.root / TOKENIZER_DIR

    @property
    def events(self) -> Path:
        """Health events, one JSON object per line (docs/run-directory.md has the schema)."""
        return self.root / EVENTS_FILE

    @property
    def health(self) -> Path:
        """Health files other than events: ``stacks-<step>.txt`` written when a stall fires."""
        return self.root / HEALTH_DIR


def validate_run_name(name: str) -> str:
    """Return ``name`` if it is a safe single path component, else raise RunNameError."""
    if not isinstance(name, str):
        raise RunNameError(repr(name), "it must be a string")
    if not name or not name.strip():
        raise RunNameError(name, "it is empty")
    if name in (".", ".."):
        raise RunNameError(name, "'.' and '..' would point outside the run directory")
    for char, what in _FORBIDDEN_CHARS.items():
        if char in name:
            raise RunNameError(name, f"it contains {what}, which could escape the output root")
    if any(ord(c) < 32 for c in name):
        raise RunNameError(name, "it contains a control character")
    if len(name.encode("utf-8")) > 200:
        raise RunNameError(name, "it is longer than 200 bytes")
    return name


def default_run_name() -> str:
    """A sortable, unique-enough name such as ``run-20261128-151200-a1b2``."""
    # os.urandom(n).hex() is what secrets.token_hex(n) returns; importing secrets (hmac, OpenSSL)
    # cost every cold read-back command 4-8 ms, as the readers import this module for its names.
    return time.strftime("run-%Y%m%d-%H%M%S-") + os.urandom(2).hex()


def prepare_run_dir(output_root: str | os.PathLike[str], run_name: str) -> RunPaths:
    """Create ``<output_root>/<run_name>`` and check it is writable, failing early and clearly.

    Creating the directory does not claim the run: ``start_run`` then takes the run's lock
    (run_lock.py), and only the lock holder reads or writes anything in it.
    """
    validate_run_name(run_name)
    root = Path(output_root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        run_dir = root / run_name
        run_dir.mkdir(exist_ok=True)
        # A name of this process's own: two processes probing one directory must not delete
        # each other's probe (which made the loser fail with a wrong "cannot write" error).
        probe = run_dir / f".write-test-{os.getpid()}-{os.urandom(4).hex()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputRootError(str(root), exc.strerror or str(exc)) from exc
    # Belt and braces: even a name that passed the checks must resolve inside the root.
    if run_dir.resolve().parent != root.resolve():
        raise RunNameError(run_name, "it resolves outside the output root")
    return RunPaths(run_dir)
