"""Crash-safe checkpoints: atomic writes, ``latest``/``best`` links, pruning, safe loading.

Layout of a checkpoint directory::

    step-00000100.pt   one file per save (the newest ``keep_last`` are kept)
    step-00000200.pt
    latest.pt          the newest save (a hard link to its step file, or a copy)
    best.pt            the save made with ``is_best=True`` most recently

Every file is written to a temporary file in the same directory, fsynced, then renamed
over its final name (``os.replace``), so a crash or a full disk leaves either the old
file or the new one, never a torn one. ``latest.pt``/``best.pt`` are hard links (a copy
where the filesystem has none), so pruning a step file never breaks them.

Format: ``torch.save`` of ``{"codex_ml_checkpoint": 1, "step": step, "state": state}``.
**Loading uses ``torch.load(weights_only=True)``**, which cannot run code from the file:
before saving, :func:`save_checkpoint` turns dataclasses into dicts, numpy scalars into
Python numbers and paths into strings, and refuses any other object (naming its key), so
everything we write loads that way, RNG states included (see :func:`capture_rng_state`).
``load_checkpoint(..., trusted=True)`` falls back to full unpickling for old files one
wrote oneself; never use it on a file from elsewhere. A file that fails to load is first
checked without unpickling anything (zip CRCs, the pickle parsed opcode by opcode): a damaged
one is called corrupt, and only an intact one that holds Python objects gets the
``trusted=True`` advice (and only such a file is ever fully unpickled).
:func:`load_newest_checkpoint` walks back from ``latest.pt`` to the newest file that loads.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from codex_ml.training.checkpoint_integrity import damage, why
from codex_ml.training.errors import CheckpointError
# Putting a loaded state back (weights, RNG) lives in restore.py; importable from here as before.
from codex_ml.training.restore import capture_rng_state, load_model_state, restore_rng_state

__all__ = [
    "BEST_NAME",
    "LATEST_NAME",
    "CheckpointError",
    "capture_rng_state",
    "find_latest_checkpoint",
    "list_step_checkpoints",
    "load_checkpoint",
    "load_model_state",
    "load_newest_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
]

LATEST_NAME = "latest.pt"
BEST_NAME = "best.pt"
_MARKER = "codex_ml_checkpoint"
_FORMAT_VERSION = 1
_STEP_FILE = re.compile(r"^step-(\d+)\.pt$")


# ---------------------------------------------------------------------------- saving

def save_checkpoint(
    directory: str | os.PathLike[str],
    state: dict[str, Any],
    *,
    step: int,
    is_best: bool = False,
    keep_last: int | None = 3,
) -> Path:
    """Write ``state`` as ``<directory>/step-<step:08d>.pt`` atomically and return its path.

    Then points ``latest.pt`` (and ``best.pt`` when ``is_best``) at it and deletes the
    oldest step files beyond ``keep_last`` (``None`` keeps all), never one that
    ``latest.pt``/``best.pt`` share. Any failure raises :class:`CheckpointError` and
    leaves the previous checkpoints as they were, with no temporary file behind.
    """
    if not isinstance(step, int) or step < 0:
        raise CheckpointError(f"checkpoint step must be a non-negative int, got {step!r}")
    if keep_last is not None and keep_last < 1:
        raise CheckpointError(f"keep_last must be at least 1 (None keeps all), got {keep_last}")
    folder = Path(directory)
    payload = {_MARKER: _FORMAT_VERSION, "step": step, "state": _to_safe(state, "state")}
    path = folder / f"step-{step:08d}.pt"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, lambda f: torch.save(payload, f))
        _publish(path, folder / LATEST_NAME)
        if is_best:
            _publish(path, folder / BEST_NAME)
    except Exception as err:
        raise CheckpointError(
            f"{path}: cannot write the checkpoint ({why(err)}); the previous checkpoints in "
            f"{folder} are unchanged. Free disk space or fix permissions, then save again."
        ) from err
    if keep_last is not None:
        _prune(folder, keep_last, protect=path)
    return path


def _atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` via a temp file in its directory + fsync + rename; no temp file survives."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as f:
            out = _ErrorRecordingFile(f)
            try:
                write(out)
            except Exception as err:
                # torch turns a failed write() into a vague RuntimeError; report the OS error.
                if out.error is not None and out.error is not err:
                    raise out.error from err
                raise
            f.flush()
            os.fsync(f.fileno())  # data on disk before the rename makes it visible
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


class _ErrorRecordingFile:
    """A binary file wrapper that remembers the OSError of a failed ``write`` (disk full)."""

    def __init__(self, file: IO[bytes]) -> None:
        """Wrap the open ``file``."""
        self._file = file
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        """Write ``data``, recording an OSError before re-raising it."""
        try:
            return self._file.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        """Flush the wrapped file."""
        self._file.flush()


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _publish(source: Path, target: Path) -> None:
    """Atomically make ``target`` a hard link to ``source`` (a copy if links are unsupported)."""
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        try:
            os.link(source, tmp)
        except OSError:
            _atomic_write(tmp, lambda f: _copy_into(source, f))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _copy_into(source: Path, out: IO[bytes]) -> None:
    """Copy the bytes of ``source`` into the open file ``out``."""
    with open(source, "rb") as src:
        shutil.copyfileobj(src, out)


def list_step_checkpoints(directory: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``step-*.pt`` file in ``directory``, oldest step first."""
    folder = Path(directory)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP_FILE.match(p.name))]
    return sorted(found)


def _prune(folder: Path, keep_last: int, protect: Path) -> None:
    """Delete step files older than the newest ``keep_last``, except linked or protected ones."""
    linked = [folder / name for name in (LATEST_NAME, BEST_NAME) if (folder / name).exists()]
    steps = list_step_checkpoints(folder)
    for _, path in steps[: max(0, len(steps) - keep_last)]:
        if path == protect or any(_same_file(path, link) for link in linked):
            continue
        path.unlink(missing_ok=True)


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths are the same inode (a hard link); False if either vanished."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


_PLAIN = (type(None), bool, int, float, complex, str, bytes, torch.Tensor, torch.Size,
          torch.dtype, torch.device)


def _to_safe(value: Any, where: str) -> Any:
    """``value`` in types ``torch.load(weights_only=True)`` reads back; else CheckpointError."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _to_safe(dataclasses.asdict(value), where)
    if isinstance(value, Mapping):  # dicts, and e.g. an OmegaConf DictConfig as a plain dict
        return _safe_dict(value, where)
    if isinstance(value, Sequence):  # lists and tuples stay so; other sequences become lists
        items = [_to_safe(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if isinstance(value, tuple) else list(items)
    raise CheckpointError(
        f"cannot save {where} (a {type(value).__module__}.{type(value).__qualname__}) in a "
        "checkpoint: only tensors, numbers, strings, lists, tuples, dicts and dataclasses are "
        "stored, so checkpoints load with torch.load(weights_only=True). Convert it first "
        "(e.g. numpy array -> torch.from_numpy, object -> its state dict)."
    )


def _safe_dict(value: Mapping[Any, Any], where: str) -> dict[Any, Any]:
    """A dict of safe values; the same object (with its ``_metadata``) if nothing changed."""
    out = {}
    changed = False
    for key, item in value.items():
        if not isinstance(key, (str, int, float, bool, type(None))):
            raise CheckpointError(f"cannot save {where}: key {key!r} is not a str or number")
        out[key] = _to_safe(item, f"{where}[{key!r}]")
        changed = changed or out[key] is not item
    if not changed and type(value) in (dict, OrderedDict):
        return value  # e.g. a module state_dict with its _metadata, as torch expects
    return out


# ---------------------------------------------------------------------------- loading

def find_latest_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    """``latest.pt`` in ``directory``, else its highest ``step-*.pt``, else ``None``."""
    folder = Path(directory)
    if (folder / LATEST_NAME).is_file():
        return folder / LATEST_NAME
    steps = list_step_checkpoints(folder)
    return steps[-1][1] if steps else None


def load_checkpoint(
    path: str | os.PathLike[str], map_location: Any = "cpu", *, trusted: bool = False
) -> dict[str, Any]:
    """Return the ``state`` dict saved by :func:`save_checkpoint`.

    ``path`` is a checkpoint file or a checkpoint directory (its ``latest.pt``, else its
    newest step file). Loads with ``weights_only=True``; ``trusted=True`` allows full
    unpickling for an intact file you wrote yourself that needs it (never for a damaged one).
    """
    file = _resolve(Path(path))
    try:
        payload = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as err:
        problem = damage(file)
        if problem is None and _unsupported_global(err) and trusted:
            payload = _load_untrusted(file, map_location)
        else:
            raise _load_error(file, err, problem) from err
    if not isinstance(payload, dict) or _MARKER not in payload or "state" not in payload:
        raise _unloadable(file, f"not a codex_ml checkpoint (no {_MARKER!r} marker)",
                          "; point to a file written by codex_ml training (step-*.pt, latest.pt, best.pt)")
    if payload[_MARKER] != _FORMAT_VERSION:
        raise _unloadable(file, f"checkpoint format version {payload[_MARKER]!r} is not supported",
                          f" (this codex_ml reads version {_FORMAT_VERSION}); upgrade codex_ml")
    return payload["state"]


def load_newest_checkpoint(
    directory: str | os.PathLike[str], map_location: Any = "cpu"
) -> tuple[Path, dict[str, Any], list[str]]:
    """The newest checkpoint of ``directory`` that loads: ``(path, state, skipped)``.

    Tries ``latest.pt``, then the step files from the newest, each verified first (zip CRCs:
    torch itself would load flipped bytes as wrong weights); ``skipped`` says, for each file
    passed over, why (``"latest.pt (corrupt: ...)"``); a hard link to a file already tried is
    skipped as the same file. Raises :class:`CheckpointError` listing them all when none loads
    (or when there is none).
    """
    folder = Path(directory)
    candidates = [folder / LATEST_NAME] if (folder / LATEST_NAME).is_file() else []
    candidates += [path for _, path in reversed(list_step_checkpoints(folder))]
    tried: list[Path] = []
    skipped: list[str] = []
    for path in candidates:
        twin = next((t for t in tried if _same_file(t, path)), None)
        if twin is not None:
            skipped.append(f"{path.name} (the same file as {twin.name})")
            continue
        tried.append(path)
        problem = damage(path)
        if problem is not None:
            skipped.append(f"{path.name} (corrupt: {problem})")
            continue
        try:
            return path, load_checkpoint(path, map_location), skipped
        except CheckpointError as err:
            skipped.append(f"{path.name} ({err.reason or err})")
    if not candidates:
        raise CheckpointError(f"{folder}: no checkpoint in this directory (no {LATEST_NAME} or step-*.pt)")
    raise CheckpointError(f"{folder}: no checkpoint there loads: {'; '.join(skipped)}")


def _resolve(path: Path) -> Path:
    """The checkpoint file ``path`` names, or a CheckpointError saying what to do."""
    if path.is_dir():
        found = find_latest_checkpoint(path)
        if found is None:
            raise CheckpointError(
                f"{path}: no checkpoint in this directory (no {LATEST_NAME} or step-*.pt); "
                "train without resuming first, or point to the directory that has them"
            )
        return found
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found; check the path")
    return path


def _unloadable(file: Path, reason: str, advice: str = "") -> CheckpointError:
    """A CheckpointError ``<file>: <reason><advice>`` that keeps ``reason`` for summaries."""
    error = CheckpointError(f"{file}: {reason}{advice}")
    error.reason = reason
    return error


def _load_error(file: Path, err: Exception, problem: str | None) -> CheckpointError:
    """The error for a file torch could not load; ``problem`` is what :func:`damage` found."""
    if problem is not None:
        return _unloadable(file, f"corrupt: {problem}", "; it was probably cut off by a crash or is another "
                           f"kind of file{_other_checkpoints(file)}")
    if _unsupported_global(err):
        return _unloadable(
            file, "the checkpoint holds Python objects that are not loaded by default",
            ", because unpickling them can run code (the file itself is intact); if you wrote this file "
            "yourself, load it with load_checkpoint(..., trusted=True)",
        )
    return _unloadable(file, f"cannot load the checkpoint ({_torch_reason(err)})")


def _other_checkpoints(file: Path) -> str:
    """``"; other checkpoints there: ..."`` naming the step files that are not ``file`` itself."""
    others = [p.name for _, p in list_step_checkpoints(file.parent) if not _same_file(p, file)]
    same = [p.name for _, p in list_step_checkpoints(file.parent) if p != file and _same_file(p, file)]
    note = f" ({', '.join(same)} is the same file: a hard link)" if same else ""
    return f"{note}; other checkpoints there: {', '.join(others)}" if others else note


def _unsupported_global(err: Exception) -> bool:
    """Whether torch refused a ``weights_only`` load only because the pickle names a class or function."""
    return "Weights only load failed" in str(err) and "Unsupported global" in str(err)


def _torch_reason(err: Exception) -> str:
    """One line saying why torch failed, without its advice to load with weights_only=False."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        return text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0]
    return why(err)


def _load_untrusted(file: Path, map_location: Any) -> Any:
    """Full unpickling, only for intact files the caller vouched for (``trusted=True``)."""
    try:
        return torch.load(file, map_location=map_location, weights_only=False)
    except Exception as err:
        raise _load_error(file, err, damage(file)) from err
