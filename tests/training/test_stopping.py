"""GracefulStop: the first SIGINT/SIGTERM is deferred to a step boundary, a second one acts at once,
and under DDP a signal that lands while the ranks agree is never lost."""

from __future__ import annotations

import signal

import pytest
import torch
import torch.distributed as dist

from codex_ml.training.distributed import DistInfo
from codex_ml.training.stopping import GracefulStop


def test_first_signal_is_recorded_and_the_second_acts_at_once() -> None:
    """Ctrl-C once: recorded, training goes on; Ctrl-C again: KeyboardInterrupt now; handlers restored after."""
    before = signal.getsignal(signal.SIGINT)
    with GracefulStop() as stop:
        signal.raise_signal(signal.SIGINT)
        assert stop.agreed(DistInfo(), torch.device("cpu")) and stop.name == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def test_an_ignored_signal_stays_ignored() -> None:
    """SIGINT ignored (a background job): GracefulStop leaves it so, and nothing is recorded."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with GracefulStop() as stop:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            signal.raise_signal(signal.SIGINT)
            assert not stop.agreed(DistInfo(), torch.device("cpu"))
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_signal_during_the_ranks_agreement_counts_at_the_next_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """The handler can run right after the all-reduce returns and before its result is stored: that
    signal must stop the next step (it was once overwritten by the all-reduce's 0, so torchrun's SIGTERM
    was lost and the ranks trained on until SIGKILL)."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        stop = GracefulStop()
        real = dist.all_reduce

        def reduce_then_signal(tensor: torch.Tensor, *args: object, **kwargs: object) -> object:
            done = real(tensor, *args, **kwargs)
            stop._record(signal.SIGTERM, None)  # where a Python handler runs: after the C call returns
            return done

        info = DistInfo(rank=0, world_size=2)  # the agreement path (a real one-process gloo group)
        monkeypatch.setattr(dist, "all_reduce", reduce_then_signal)
        assert not stop.agreed(info, torch.device("cpu"))
        monkeypatch.setattr(dist, "all_reduce", real)
        assert stop.agreed(info, torch.device("cpu")) and stop.signum == signal.SIGTERM
    finally:
        dist.destroy_process_group()
