"""Reading and validating the pipeline's three inputs, before any training starts.

- corpus: read by :func:`codex_ml.data.corpus.read_corpus` (``.txt``, or JSONL of strings / ``{"text"}``).
- demos: JSONL of ``{"prompt": str, "completion": str}``.
- prefs: JSONL of ``{"prompt", "chosen", "rejected"}`` or the older ``[prompt, a, b, label]``
  where ``label`` 1 means ``a`` is preferred (0 means ``b``).

Every problem is a :class:`PipelineInputError` naming the file (and ``file:line`` for a bad line).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codex_ml.errors import CodexMLError

__all__ = ["Demo", "Inputs", "PipelineInputError", "Preference", "load_inputs", "read_demos", "read_prefs", "sha256_file"]


class PipelineInputError(CodexMLError, ValueError):
    """A pipeline input that is missing, empty or malformed."""


@dataclass(frozen=True)
class Demo:
    """One supervised demonstration."""

    prompt: str
    completion: str


@dataclass(frozen=True)
class Preference:
    """One preference pair: ``chosen`` is the better response to ``prompt``."""

    prompt: str
    chosen: str
    rejected: str


@dataclass
class Inputs:
    """All validated inputs plus what summary.json records about them."""

    corpus: list[str]
    demos: list[Demo]
    prefs: list[Preference]
    files: dict[str, dict[str, Any]]  # name -> {"path", "sha256", "rows"}


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_exists(path: str | Path, what: str) -> Path:
    file = Path(path)
    if not file.is_file():
        raise PipelineInputError(f"{what} file {str(file)!r} does not exist (pass an existing file with --{what})")
    return file


def _json_lines(path: Path):
    """Yield ``(line_number, value)`` for each non-blank line; bad JSON names file:line."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as err:
                raise PipelineInputError(f"{path}:{number}: not valid JSON ({err.msg})") from None


def _strings(path: Path, number: int, names: tuple[str, ...], values: tuple[Any, ...], expected: str) -> None:
    for name, value in zip(names, values):
        if not isinstance(value, str):
            raise PipelineInputError(f"{path}:{number}: {name!r} must be a string, got {type(value).__name__}; expected {expected}")


def read_demos(path: str | Path) -> list[Demo]:
    """Demonstrations from JSONL ``{"prompt": ..., "completion": ...}`` lines (may be empty)."""
    file = _check_exists(path, "demos")
    expected = 'an object {"prompt": str, "completion": str}'
    demos = []
    for number, row in _json_lines(file):
        if not isinstance(row, dict) or not {"prompt", "completion"} <= set(row):
            raise PipelineInputError(f"{file}:{number}: expected {expected}, got {json.dumps(row)[:80]}")
        _strings(file, number, ("prompt", "completion"), (row["prompt"], row["completion"]), expected)
        demos.append(Demo(row["prompt"], row["completion"]))
    return demos


def _preference(file: Path, number: int, row: Any) -> Preference:
    expected = '{"prompt", "chosen", "rejected"} or [prompt, a, b, label] with label 0 or 1'
    if isinstance(row, dict) and {"prompt", "chosen", "rejected"} <= set(row):
        values = (row["prompt"], row["chosen"], row["rejected"])
        _strings(file, number, ("prompt", "chosen", "rejected"), values, expected)
        return Preference(*values)
    if isinstance(row, list) and len(row) == 4:
        prompt, a, b, label = row
        _strings(file, number, ("prompt", "a", "b"), (prompt, a, b), expected)
        # bool is an int subclass; reject it so `true` is not silently read as 1.
        if isinstance(label, bool) or label not in (0, 1):
            raise PipelineInputError(f"{file}:{number}: label must be 0 or 1 (1 means a is preferred), got {label!r}")
        return Preference(prompt, a, b) if label == 1 else Preference(prompt, b, a)
    raise PipelineInputError(f"{file}:{number}: expected {expected}, got {json.dumps(row)[:80]}")


def read_prefs(path: str | Path) -> list[Preference]:
    """Preference pairs from JSONL in either accepted format (may be empty)."""
    file = _check_exists(path, "prefs")
    return [_preference(file, number, row) for number, row in _json_lines(file)]


def _read_corpus(path: str | Path) -> list[str]:
    from codex_ml.data.corpus import CorpusError, read_corpus

    file = _check_exists(path, "corpus")
    try:
        return read_corpus(file)
    except CorpusError as err:
        raise PipelineInputError(str(err)) from err


def load_inputs(corpus: str | Path, demos: str | Path, prefs: str | Path) -> Inputs:
    """Read and validate all three inputs; empty corpus or prefs is an error, empty demos is allowed."""
    for path, what in ((corpus, "corpus"), (demos, "demos"), (prefs, "prefs")):
        _check_exists(path, what)  # report a missing file before spending time reading the others
    texts = _read_corpus(corpus)
    if not any(text.strip() for text in texts):
        raise PipelineInputError(f"corpus file {str(corpus)!r} has no text: pretraining needs at least one document")
    demo_rows = read_demos(demos)
    pref_rows = read_prefs(prefs)
    if not pref_rows:
        raise PipelineInputError(f"prefs file {str(prefs)!r} has no preference pairs: the reward model needs some")
    files = {
        name: {"path": str(Path(path).resolve()), "sha256": sha256_file(path), "rows": rows}
        for name, path, rows in (("corpus", corpus, len(texts)), ("demos", demos, len(demo_rows)), ("prefs", prefs, len(pref_rows)))
    }
    return Inputs(texts, demo_rows, pref_rows, files)
