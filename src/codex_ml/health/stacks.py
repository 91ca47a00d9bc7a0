"""Every thread's Python stack, written to a file when a stall fires.

``sys._current_frames()`` gives the frame each thread is executing, even a thread blocked in C
code (``time.sleep``, a lock wait, a collective that never completes): its frame is the Python
line that made the blocking call, which is what a person needs to see. It works from any thread
without signals (faulthandler's ``dump_traceback_later`` needs a timer decided in advance and
cannot name threads), so the watchdog thread calls :func:`dump_stacks` itself.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from pathlib import Path

__all__ = ["dump_stacks", "format_stacks"]


def format_stacks() -> str:
    """Every live thread's stack as text, most recent call last, one block per thread."""
    frames = sys._current_frames()  # noqa: SLF001 - the documented way to see other threads' frames
    threads = {thread.ident: thread for thread in threading.enumerate()}
    blocks = []
    for ident, frame in sorted(frames.items(), key=lambda item: item[0] != threading.main_thread().ident):
        thread = threads.get(ident)
        name = thread.name if thread is not None else "unknown"
        daemon = " daemon" if thread is not None and thread.daemon else ""
        header = f'Thread "{name}" (ident {ident}{daemon}), most recent call last:\n'
        blocks.append(header + "".join(traceback.format_stack(frame)))
    return "\n".join(blocks)


def dump_stacks(path: str | os.PathLike[str]) -> Path:
    """Write :func:`format_stacks` to ``path`` (parents created, replaced atomically); returns it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    text = f"# codex_ml stack dump, pid {os.getpid()}, {stamp} UTC\n\n{format_stacks()}"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text, encoding="utf-8", errors="replace")
    os.replace(tmp, path)
    return path
