"""Suite-wide hygiene shared by every test directory."""

from __future__ import annotations

import os
import signal

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Let Ctrl-C work in the tests even when the suite itself was started in the background.

    A shell starts a background job (``make test &``, ``nohup ... &``) with SIGINT ignored, Python
    then installs no KeyboardInterrupt handler, and every child process inherits the ignored
    signal: the tests of Ctrl-C handling would fail for a reason that has nothing to do with the
    code. Restore Python's default handler (children exec'd from here then get the default action).
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _no_inherited_wandb_service() -> None:
    """Drop WANDB_SERVICE before each test.

    ``wandb.init`` in this process sets it to the address of its own W&B service so that child
    processes share that service. Once an in-process test has finished its run, a subprocess
    started by a later test would inherit the address and connect to a service that is gone,
    and its W&B sink would fail. Not restored afterwards, on purpose.
    """
    os.environ.pop("WANDB_SERVICE", None)
