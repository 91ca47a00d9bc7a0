"""Secrets never reach a sink: params/config/tags redaction, read back from every backend's files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from codex_ml.secrets.redaction import REDACTED, is_secret_key, redact_params, redact_text

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "key",
    ["api_key", "wandb.api_key", "apiKey", "hf_token", "auth.token", "db.password", "AWS_SECRET_ACCESS_KEY",
     "client_secret", "credentials", "access-key", "private_key"],
)  # fmt: skip
def test_secret_keys(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key", ["tokenizer", "data.tokenizer.kind", "max_tokens", "train/tokens_per_s", "keys", "model.n_embd", "monkey"]
)
def test_ordinary_keys_are_not_secrets(key: str) -> None:
    assert not is_secret_key(key)


def test_url_credentials_are_masked_and_the_rest_kept() -> None:
    assert redact_text("http://alice:hunter22@mlflow.local:5000/x", secrets=()) == f"http://alice:{REDACTED}@mlflow.local:5000/x"
    assert redact_text("http://mlflow.local:5000", secrets=()) == "http://mlflow.local:5000"


def test_env_secret_values_are_replaced_anywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "abcdef0123456789")
    out = redact_params({"note": "key is abcdef0123456789!", "lr": 0.1, "tags": ["abcdef0123456789"], "token": None})
    assert out == {"note": f"key is {REDACTED}!", "lr": 0.1, "tags": [REDACTED], "token": None}


PLANTED = textwrap.dedent(
    """
    import sys
    from codex_ml.tracking import start_run
    params = {"model": {"n_layer": 2}, "wandb": {"api_key": "PLANTED-KEY-1a2b3c"},
              "hf_token": "PLANTED-TOKEN-4d5e6f", "db": {"password": "PLANTED-PW-7g8h9i"},
              "store": "postgresql://bob:PLANTED-URLPW-0j1k2l@db.local/runs",
              "note": "uses PLANTED-ENVKEY-3m4n5o5p6q"}
    with start_run("secret", output_root=sys.argv[1], params=params, enable_tensorboard=True,
                   enable_mlflow=True, enable_wandb=True, tags={"auth_token": "PLANTED-TAG-7r8s9t"}) as run:
        for step in range(5):
            run.log_metrics({"train/loss": 1.0 / (step + 1)}, step=step)
    """
)


def test_planted_secrets_reach_no_file_of_any_sink(tmp_path: Path) -> None:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_API_KEY": "PLANTED-ENVKEY-3m4n5o5p6q",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run([sys.executable, "-c", PLANTED, str(tmp_path)], capture_output=True, text=True,
                          timeout=240, env=env, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    run_dir = tmp_path / "secret"
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    # Every backend wrote something, so the grep below covers them all.
    assert any("tensorboard" in p.parts for p in files)
    assert any("mlruns" in p.parts for p in files)
    assert any(p.suffix == ".wandb" for p in files)
    leaks = [str(p.relative_to(run_dir)) for p in files if b"PLANTED-" in p.read_bytes()]
    assert leaks == []
    assert b"PLANTED" not in (done.stdout + done.stderr).encode()
    # The non-secret parts are still there.
    params = (run_dir / "params.json").read_text()
    assert '"model.n_layer": 2' in params and "postgresql://bob:***@db.local/runs" in params
