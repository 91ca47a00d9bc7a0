"""dump_stacks from a watchdog thread while the main thread is blocked in C code."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from codex_ml.health.stacks import dump_stacks


def _blocked_in_lock_wait(lock: threading.Lock) -> None:
    lock.acquire(timeout=10.0)  # blocks inside C until the watchdog releases it


def test_dump_while_main_thread_waits_on_a_lock(tmp_path: Path) -> None:
    target = tmp_path / "health" / "stacks-7.txt"
    lock = threading.Lock()
    lock.acquire()
    done = threading.Event()

    def watchdog() -> None:
        time.sleep(0.2)  # the main thread is inside lock.acquire by now
        dump_stacks(target)
        done.set()
        lock.release()

    thread = threading.Thread(target=watchdog, name="codex-health-watchdog")
    thread.start()
    _blocked_in_lock_wait(lock)
    thread.join()
    assert done.is_set()
    text = target.read_text(encoding="utf-8")
    main_block = text.split('Thread "MainThread"')[1].split("\nThread ")[0]
    assert "_blocked_in_lock_wait" in main_block and "lock.acquire(timeout=10.0)" in main_block
    assert 'Thread "codex-health-watchdog"' in text and "dump_stacks" in text


def test_dump_while_main_thread_sleeps(tmp_path: Path) -> None:
    target = tmp_path / "stacks.txt"
    thread = threading.Thread(target=lambda: (time.sleep(0.1), dump_stacks(target)))
    thread.start()
    time.sleep(0.5)
    thread.join()
    assert "time.sleep(0.5)" in target.read_text(encoding="utf-8").split('Thread "MainThread"')[1]
