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


#: Variables removed for every test. codex_ml itself sets some of them with
#: ``os.environ.setdefault`` (mlflow_utils.prepare_environment); unsetting them through
#: monkeypatch also restores the original state afterwards, so tests stay independent.
_UNSET = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_EXPERIMENT_ID",  # set by mlflow.set_experiment (fluent API)
    "MLFLOW_RUN_ID",
    "MLFLOW_ALLOW_FILE_STORE",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "WANDB_PROJECT",
    "WANDB_DIR",
)


def unset_env(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Remove ``name`` for this test and restore whatever it was (even if unset) afterwards."""
    monkeypatch.setenv(name, "")  # records the original value, set or not
    monkeypatch.delenv(name)


@pytest.fixture
def clean_backend_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No inherited MLflow settings; W&B offline and quiet, project unset."""
    for name in _UNSET:
        unset_env(monkeypatch, name)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture(autouse=True)
def _no_inherited_wandb_service() -> None:
    """Drop WANDB_SERVICE before each test.

    ``wandb.init`` in this process sets it to the address of its own W&B service so that child
    processes share that service. Once an in-process test has finished its run, a subprocess
    started by a later test would inherit the address and connect to a service that is gone,
    and its W&B sink would fail. Not restored afterwards, on purpose.
    """
    os.environ.pop("WANDB_SERVICE", None)
