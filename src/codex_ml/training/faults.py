"""Fault injection: ``training.fault`` makes a training run fail on purpose, so alerting can be tested.

A fault is ``<kind>@<step>[:<arg>]``; ``<step>`` may be a window ``<first>-<last>`` (inclusive).
Several faults are a comma-separated string or a YAML list. The kinds, what they do and their
default argument (docs/training.md, "Fault injection", is the user's copy of this table):

============  =====================================================  ========  ==============
kind          effect at its step(s)                                  arg       default window
============  =====================================================  ========  ==============
nan           the loss (and so every gradient) becomes NaN           none      that step only
spike         the loss used for backward and logged is ×factor       ``x20``   that step only
hang          the main thread sleeps (``time.sleep``) mid-step       ``30s``   that step only
hang_lock     the main thread waits on a lock nobody releases        ``30s``   that step only
slow_data     every batch fetch sleeps (shows in time/data_wait_s)   ``0.5s``  step to the end
slow          the step sleeps before its forward pass (a slow rank)  ``0.1s``  step to the end
leak          the process keeps N more bytes per step (RSS grows)    ``10MB``  step to the end
============  =====================================================  ========  ==============

``hang``/``hang_lock`` take ``forever`` too: the step then blocks until a signal ends the process.
A one-shot fault (nan, spike, hang, hang_lock) fires once per step per process: a step trained
again after a rollback does not fire again. Faults are applied on every rank, or only on rank k
with an ``@rank<k>`` suffix (``slow@1:50ms@rank1``: a straggler; ``RANK`` from torchrun says which
rank a process is).

The trainer asks :func:`parse_faults` for a :class:`FaultPlan` (None when no fault is set, so an
unfaulted run pays nothing) and calls :meth:`FaultPlan.begin` once per step; the data and loss
faults reach the step through :meth:`FaultPlan.batches` and :meth:`FaultPlan.forward`, wrappers the
trainer installs only when a fault is configured.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from codex_ml.errors import CodexMLError

__all__ = ["KINDS", "Fault", "FaultError", "FaultPlan", "fault_problems", "parse_fault", "parse_faults"]

#: The syntax every problem message quotes.
SYNTAX = "<kind>@<step>[:<arg>][@rank<k>]"
_TOKEN = re.compile(r"^(?P<kind>[a-z_]+)@(?P<first>\d+)(?:-(?P<last>\d+))?(?::(?P<arg>[^@]+))?(?:@rank(?P<rank>\d+))?$")
_SECONDS = re.compile(r"^(?P<n>\d+(?:\.\d*)?|\.\d+)(?P<unit>ms|s|m)?$")
_SIZE = re.compile(r"^(?P<n>\d+(?:\.\d*)?|\.\d+)(?P<unit>B|KB|MB|GB|KiB|MiB|GiB)?$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


@dataclass(frozen=True)
class _Kind:
    """How one kind reads its argument and which steps it covers by default."""

    arg: str  # "none" | "factor" | "seconds" | "bytes"
    default: str | None  # the argument when none is given
    sustained: bool  # True: from its step to the end of the run; False: its step only


KINDS: dict[str, _Kind] = {
    "nan": _Kind("none", None, False),
    "spike": _Kind("factor", "x20", False),
    "hang": _Kind("seconds", "30s", False),
    "hang_lock": _Kind("seconds", "30s", False),
    "slow_data": _Kind("seconds", "0.5s", True),
    "slow": _Kind("seconds", "0.1s", True),
    "leak": _Kind("bytes", "10MB", True),
}


class FaultError(CodexMLError, ValueError):
    """One fault token that cannot be read; the message names the token and what was expected."""


@dataclass(frozen=True)
class Fault:
    """One parsed fault: ``kind`` at steps ``first..last`` (``last`` None: to the end) with ``value``.

    ``value`` is the factor (spike), seconds (hang, hang_lock, slow_data, slow; ``inf`` = forever),
    bytes per step (leak), or None (nan). ``rank`` None: every rank.
    """

    kind: str
    first: int
    last: int | None
    value: float | None
    rank: int | None = None

    def covers(self, step: int) -> bool:
        """Whether ``step`` is one of this fault's steps."""
        return self.first <= step and (self.last is None or step <= self.last)


def parse_fault(token: str) -> Fault:
    """One ``<kind>@<step>[:<arg>]`` token as a :class:`Fault`; FaultError says what is wrong."""
    text = token.strip()
    match = _TOKEN.match(text)
    if match is None:
        raise FaultError(f"{token!r}: expected {SYNTAX}, e.g. nan@300, spike@500:x20, slow_data@200-300:0.5s, "
                         "slow@1:50ms@rank1")
    kind = match["kind"]
    if kind not in KINDS:
        raise FaultError(f"{token!r}: unknown fault kind {kind!r} (valid: {', '.join(sorted(KINDS))})")
    spec = KINDS[kind]
    first = int(match["first"])
    last = int(match["last"]) if match["last"] is not None else (None if spec.sustained else first)
    if first < 1 or (last is not None and last < first):
        raise FaultError(f"{token!r}: steps start at 1 and a window is <first>-<last> with first <= last")
    value = _parse_arg(token, kind, spec, match["arg"])
    if kind == "slow" and value is not None and math.isinf(value):
        raise FaultError(f"{token!r}: {kind} takes a finite duration (a step that never ends is hang@<step>:forever)")
    rank = None if match["rank"] is None else int(match["rank"])
    return Fault(kind, first, last, value, rank)


def _parse_arg(token: str, kind: str, spec: _Kind, arg: str | None) -> float | None:
    """The argument of ``kind`` as a number, or FaultError naming the form it takes."""
    if spec.arg == "none":
        if arg is not None:
            raise FaultError(f"{token!r}: {kind} takes no argument")
        return None
    text = (arg if arg is not None else spec.default or "").strip()
    value = {"factor": _factor, "seconds": _seconds, "bytes": _bytes}[spec.arg](text)
    if value is None:
        forms = {"factor": "a factor like x20", "seconds": "a duration like 2s, 500ms, 1.5m or forever",
                 "bytes": "a size like 10MB, 512KiB or 1GB"}
        raise FaultError(f"{token!r}: {kind} takes {forms[spec.arg]}, got {text!r}")
    return value


def _factor(text: str) -> float | None:
    try:
        value = float(text[1:] if text[:1] in ("x", "X", "*") else text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def _seconds(text: str) -> float | None:
    if text.lower() in ("forever", "inf"):
        return math.inf
    match = _SECONDS.match(text)
    if match is None:
        return None
    scale = {"ms": 1e-3, "m": 60.0}.get(match["unit"] or "s", 1.0)
    return float(match["n"]) * scale


def _bytes(text: str) -> float | None:
    match = _SIZE.match(text)
    if match is None:
        return None
    return float(int(float(match["n"]) * _UNITS[(match["unit"] or "b").lower()]))


def _tokens(value: Any) -> list[str] | None:
    """The fault tokens of a ``training.fault`` value (None when it is neither a string nor a list of them)."""
    if isinstance(value, str):
        return [t for t in (part.strip() for part in value.split(",")) if t]
    if isinstance(value, Sequence) and all(isinstance(item, str) for item in value):
        return [t for item in value for t in _tokens(item) or []]
    return None


def fault_problems(value: Any) -> list[str]:
    """Every problem of a ``training.fault`` value, one per bad token (empty when it is fine)."""
    if value is None:
        return []
    tokens = _tokens(value)
    if tokens is None:
        return [f"expected a string or a list of strings ({SYNTAX}), got {type(value).__name__} {value!r}"]
    problems = []
    for token in tokens:
        try:
            parse_fault(token)
        except FaultError as exc:
            problems.append(str(exc))
    return problems


def parse_faults(value: Any) -> FaultPlan | None:
    """A :class:`FaultPlan` for a ``training.fault`` value, or None when it sets no fault."""
    tokens = _tokens(value) if value is not None else []
    if tokens is None:
        raise FaultError(fault_problems(value)[0])
    faults = [parse_fault(token) for token in tokens]
    return FaultPlan(faults) if faults else None


class FaultPlan:
    """The faults of one training session and what each has done so far."""

    def __init__(self, faults: Sequence[Fault], rank: int | None = None) -> None:
        """``rank``: this process's rank (default torchrun's ``RANK``, 0 without it); faults
        with another ``@rank<k>`` never fire here."""
        self.rank = int(os.environ.get("RANK", "0")) if rank is None else rank
        self.faults = [fault for fault in faults if fault.rank is None or fault.rank == self.rank]
        self.step = 0
        self.leaked: list[bytearray] = []  # kept alive on purpose: this is the leak
        self._fired: set[tuple[int, int]] = set()  # (fault index, step) of one-shot faults already applied
        self._loss_scale: float | None = None  # the loss factor of the current step (None: unchanged)
        self._hang: Fault | None = None  # the hang due in the current step, until it has happened
        self._data_sleep = 0.0  # seconds each batch fetch of the current step sleeps

    def begin(self, step: int) -> None:
        """Arm the faults of ``step`` (called once per step, before its forward/backward)."""
        self.step, self._loss_scale, self._hang, self._data_sleep = step, None, None, 0.0
        for index, fault in enumerate(self.faults):
            if not fault.covers(step) or not self._first_time(index, fault, step):
                continue
            if fault.kind == "nan":
                self._loss_scale = math.nan
            elif fault.kind == "spike":
                self._loss_scale = (1.0 if self._loss_scale is None else self._loss_scale) * float(fault.value or 1.0)
            elif fault.kind in ("hang", "hang_lock"):
                self._hang = fault
            elif fault.kind == "slow_data":
                self._data_sleep += float(fault.value or 0.0)
            elif fault.kind == "slow":
                time.sleep(float(fault.value or 0.0))  # inside the step's time: its peers wait in the all-reduce
            elif fault.kind == "leak":
                # bytearray(n) is zero-filled by the C allocator (calloc may map pages lazily); writing one
                # byte per page makes every page resident, so RSS grows by the full size now.
                block = bytearray(int(fault.value or 0))
                block[::4096] = b"\x01" * len(range(0, len(block), 4096))
                self.leaked.append(block)

    def _first_time(self, index: int, fault: Fault, step: int) -> bool:
        """False for a one-shot fault that already fired at ``step`` (a step trained again after a rollback)."""
        if KINDS[fault.kind].sustained:
            return True
        if (index, step) in self._fired:
            return False
        self._fired.add((index, step))
        return True

    @property
    def leaked_bytes(self) -> int:
        """How many bytes the leak faults hold so far."""
        return sum(len(block) for block in self.leaked)

    def batches(self, source: Any) -> _SlowBatches:
        """``source`` (has ``next()``) with the current step's ``slow_data`` sleep before each fetch."""
        return _SlowBatches(self, source)

    def forward(self, model: Callable[..., Any]) -> Callable[..., Any]:
        """``model`` (returns ``(logits, loss)``) with the current step's loss fault and hang applied.

        The hang happens after the forward pass, before backward: where a hung collective or a
        deadlocked worker would stop a real step.
        """

        def faulty(*args: Any, **kwargs: Any) -> Any:
            logits, loss = model(*args, **kwargs)
            if self._hang is not None:
                hang, self._hang = self._hang, None  # once per step, not once per micro-batch
                _block(hang)
            if self._loss_scale is not None and loss is not None:
                loss = loss * self._loss_scale  # NaN or ×factor: backward then sees it in every gradient
            return logits, loss

        return faulty


class _SlowBatches:
    """A batch source whose ``next()`` first sleeps as the plan says (a slow data loader)."""

    def __init__(self, plan: FaultPlan, source: Any) -> None:
        self.plan, self.source = plan, source

    def next(self) -> Any:
        """The source's next batch, after the current step's ``slow_data`` delay."""
        if self.plan._data_sleep:
            time.sleep(self.plan._data_sleep)
        return self.source.next()


def _block(fault: Fault) -> None:
    """Block the calling thread for the fault's seconds (``inf``: until a signal ends the process).

    ``hang`` sleeps in ``time.sleep``; ``hang_lock`` waits on a lock no thread releases, as a
    deadlocked loader or a collective that never completes would. Both block inside C code with
    the GIL released, so only a watchdog on another thread can notice.
    """
    seconds = float(fault.value if fault.value is not None else 0.0)
    if fault.kind == "hang":
        while seconds > 0:  # time.sleep caps its argument; sleep an infinite hang in long slices
            chunk = min(seconds, 3600.0)
            time.sleep(chunk)
            seconds -= chunk
        return
    lock = threading.Lock()
    lock.acquire()
    lock.acquire(timeout=-1 if math.isinf(seconds) else min(seconds, threading.TIMEOUT_MAX))
