"""Messages between a run and its sink process: length-prefixed pickles over a pipe.

Both ends are this package (the trainer and ``python -m codex_ml.tracking.sink_host`` started by
it, same interpreter), so pickle is safe and fast: a batch of metric tuples pickles in C at a few
microseconds per record. A frame is a 4-byte little-endian length and the pickle. A writer that
dies mid-frame leaves a torn frame: the reader sees it as the end of the stream.
"""

from __future__ import annotations

import os
import pickle
import struct
from typing import IO, Any

_LENGTH = struct.Struct("<I")
#: One frame holds at most this many bytes (a batch is split well below it by the sender).
MAX_FRAME = 2**31 - 1


def encode(message: Any) -> bytes:
    """One frame: the length, then the pickle of ``message``."""
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    if len(payload) > MAX_FRAME:
        raise ValueError(f"message of {len(payload)} bytes is too large for one frame")
    return _LENGTH.pack(len(payload)) + payload


def write_all(fd: int, data: bytes) -> None:
    """Write ``data`` to ``fd`` completely (a pipe takes at most its buffer per call)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def send(fd: int, message: Any) -> None:
    """Encode ``message`` and write it to ``fd``; raises OSError when the other end is gone."""
    write_all(fd, encode(message))


def receive(stream: IO[bytes]) -> Any | None:
    """The next message from ``stream``, or None at its end (a torn last frame included)."""
    head = _read_exactly(stream, _LENGTH.size)
    if head is None:
        return None
    payload = _read_exactly(stream, _LENGTH.unpack(head)[0])
    return None if payload is None else pickle.loads(payload)


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
