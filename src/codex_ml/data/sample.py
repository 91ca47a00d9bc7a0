"""The small text corpus bundled with the package, used by the demo training job.

``sample/shakespeare_sample.txt`` holds the first ~120k characters of the public
domain "tiny Shakespeare" corpus, cut at the end of a speech. It ships inside the
package so the demo works offline.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["load_sample_text", "sample_text_path"]

_SAMPLE_FILE = "shakespeare_sample.txt"


def sample_text_path() -> Path:
    """Path of the bundled sample text file."""
    # A plain file next to this module: the package is installed unzipped, so no
    # importlib.resources extraction is needed to hand out a real Path.
    return Path(__file__).resolve().parent / "sample" / _SAMPLE_FILE


def load_sample_text() -> str:
    """Contents of the bundled sample text (UTF-8)."""
    path = sample_text_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"bundled sample text missing at {path}; the package data was not installed "
            "(reinstall codex-ml)"
        )
    return path.read_text(encoding="utf-8")
