"""Suite-wide hygiene shared by every test directory."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_inherited_wandb_service() -> None:
    """Drop WANDB_SERVICE before each test.

    ``wandb.init`` in this process sets it to the address of its own W&B service so that child
    processes share that service. Once an in-process test has finished its run, a subprocess
    started by a later test would inherit the address and connect to a service that is gone,
    and its W&B sink would fail. Not restored afterwards, on purpose.
    """
    os.environ.pop("WANDB_SERVICE", None)
