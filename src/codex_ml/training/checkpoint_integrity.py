"""Is a checkpoint file intact? Checked without unpickling anything.

``torch.load`` reports a damaged file in ways that look like other problems (random bytes fail the
weights-only unpickler exactly as a file holding Python objects does) and loads flipped bits in a
tensor as wrong weights. :func:`damage` tells: the zip format ``torch.save`` writes is intact when
every member passes its CRC and ``data.pkl`` parses opcode by opcode to its STOP; the legacy
(pre-1.6) format when it opens with torch's magic number and its pickles parse.
"""

from __future__ import annotations

import mmap
import os
import pickletools
import zipfile
from pathlib import Path
from typing import Any

__all__ = ["damage", "why"]


def why(err: BaseException) -> str:
    """A one-line reason for an exception."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}".rstrip(": ")


def damage(file: Path) -> str | None:
    """Why ``file`` is not an intact ``torch.save`` file, or None when it is one.

    Nothing is unpickled: the zip format (every member's CRC, then ``data.pkl`` parsed opcode by
    opcode to its STOP) or the legacy format (its magic number, then its pickles parsed) is checked.
    """
    try:
        if not zipfile.is_zipfile(file):
            with open(file, "rb") as handle:
                if handle.read(4) == b"PK\x03\x04":
                    return "truncated (a zip archive without its end)"
            return _legacy_damage(file)
        with zipfile.ZipFile(file) as archive:
            broken = archive.testzip()
            if broken is not None:
                return f"the zip member {broken} fails its CRC check"
            pickles = [n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
            if not pickles:
                return "a zip archive without data.pkl, so not written by torch.save"
            _parse_pickle(archive.read(pickles[0]))
    # Each one is a way damage shows (tests/training/test_checkpoint_integrity.py makes each happen):
    # OSError: not a readable file; BadZipFile: a broken central directory; NotImplementedError: a
    # compression method field zipfile does not know; EOFError: a member size running past the end
    # of the file; ValueError: a pickle cut short or malformed (pickletools).
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, NotImplementedError) as err:
        return f"unreadable ({why(err)})"
    return None


def _legacy_damage(file: Path) -> str | None:
    """The check of :func:`damage` for torch's pre-1.6 format: 4 pickles, the first its magic number."""
    from torch.serialization import MAGIC_NUMBER

    not_torch = "neither a zip archive (torch.save's format) nor a legacy torch file"
    with open(file, "rb") as handle:
        if handle.read(1) != b"\x80" or os.fstat(handle.fileno()).st_size < 2:  # no pickle PROTO opcode
            return not_torch
        # mmap, not the file: a damaged length field must not make read() allocate gigabytes.
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            if not any(arg == MAGIC_NUMBER for _, arg, _ in pickletools.genops(data)):
                return not_torch
            for _ in range(3):  # protocol version, system info, the saved object
                _parse_pickle(data)
    return None


def _parse_pickle(data: Any) -> None:
    """Walk every opcode of one pickle in ``data`` (ValueError if it is cut short or malformed)."""
    for _ in pickletools.genops(data):
        pass
