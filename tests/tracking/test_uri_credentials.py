"""A password in --mlflow-tracking-uri or --prometheus-pushgateway reaches the server and nothing else.

The MLflow server is a real ``mlflow server`` behind a small proxy that demands HTTP basic auth
(MLflow's own ``--app-name basic-auth`` needs Flask-WTF, which this environment does not ship),
so the run only succeeds if the credentials are really sent; the Pushgateway is a stdlib server
that demands them too. Then every file of the run directory, read as bytes, and everything the
job printed are searched for the passwords.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from codex_ml.tracking import start_run
from codex_ml.tracking.config import TrackingConfig
from codex_ml.secrets.credentials import MLFLOW_ENV, apply_mlflow_credentials, credentials_for, take_credentials

ROOT = Path(__file__).resolve().parents[2]
MLFLOW_PASSWORD = "Mlfl0w-PW-93kq"
GATEWAY_PASSWORD = "PushGW-PW-51zx"


class _BasicAuthServer(ThreadingHTTPServer):
    """Answers 401 unless a request carries ``Authorization: Basic base64(user:password)``."""

    daemon_threads = True

    def __init__(self, user: str, password: str, upstream: str | None = None) -> None:
        self.expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.upstream = upstream  # "host:port" to forward to (a proxy), or None (a Pushgateway)
        self.authorized: list[tuple[str, str]] = []
        self.refused = 0
        super().__init__(("127.0.0.1", 0), _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server_address[1]


class _Handler(BaseHTTPRequestHandler):
    server: _BasicAuthServer

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Authorization") != self.server.expected:
            self.server.refused += 1
            self._reply(401, b"unauthorized", [("WWW-Authenticate", 'Basic realm="test"')])
            return
        self.server.authorized.append((self.command, self.path))
        if self.server.upstream is None:
            self._reply(200, b"", [])
            return
        upstream = http.client.HTTPConnection(self.server.upstream, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("authorization", "host", "connection")}
        upstream.request(self.command, self.path, body=body, headers=headers)
        answer = upstream.getresponse()
        data = answer.read()
        skip = ("transfer-encoding", "connection", "content-length")
        self._reply(answer.status, data, [(k, v) for k, v in answer.getheaders() if k.lower() not in skip])
        upstream.close()

    def _reply(self, status: int, data: bytes, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def guarded_mlflow(mlflow_server: str) -> Iterator[_BasicAuthServer]:
    proxy = _BasicAuthServer("alice", MLFLOW_PASSWORD, upstream=mlflow_server.removeprefix("http://"))
    yield proxy
    proxy.shutdown()
    proxy.server_close()


@pytest.fixture
def gateway() -> Iterator[_BasicAuthServer]:
    server = _BasicAuthServer("pusher", GATEWAY_PASSWORD)
    yield server
    server.shutdown()
    server.server_close()


def _files_holding(root: Path, *secrets: str) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and any(s.encode() in p.read_bytes() for s in secrets))  # fmt: skip


def test_job_with_passwords_in_uris_sends_them_and_stores_or_prints_none(
    tmp_path: Path, guarded_mlflow: _BasicAuthServer, gateway: _BasicAuthServer, mlflow_server: str
) -> None:
    mlflow_uri = f"http://127.0.0.1:{guarded_mlflow.port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true",
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))  # fmt: skip
    command = [sys.executable, str(ROOT / "tools" / "monitoring_integrate.py"), "--steps", "3", "--no-progress",
               "--run-name", "creds", "--output-root", str(tmp_path / "runs"),
               "--enable-tensorboard", "--enable-mlflow", "--enable-wandb",
               "--mlflow-tracking-uri", f"http://alice:{MLFLOW_PASSWORD}@127.0.0.1:{guarded_mlflow.port}",
               "--prometheus-pushgateway", f"http://pusher:{GATEWAY_PASSWORD}@127.0.0.1:{gateway.port}"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=280, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run_dir = tmp_path / "runs" / "creds"
    # The credentials did reach both servers, and nothing went without them.
    assert guarded_mlflow.authorized and guarded_mlflow.refused == 0
    assert any(method == "PUT" and path.endswith("/run/creds") for method, path in gateway.authorized)
    assert gateway.refused == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["errors"] == [], summary["errors"]
    saved = json.loads((run_dir / "run.json").read_text())["backends"]["mlflow"]
    assert saved["tracking_uri"] == mlflow_uri
    from mlflow.tracking import MlflowClient

    assert MlflowClient(mlflow_server).get_run(saved["run_id"]).data.metrics  # the run really is on the server
    # ... and no file, no line of output holds a password (MLflow's own "View run at" line included).
    assert _files_holding(run_dir, MLFLOW_PASSWORD, GATEWAY_PASSWORD) == []
    output = done.stdout + done.stderr
    assert MLFLOW_PASSWORD not in output and GATEWAY_PASSWORD not in output
    assert f"open {mlflow_uri}/#/experiments/" in done.stdout
    assert f"View run creds at: {mlflow_uri}/#/experiments/" in output


def test_train_model_checkpoints_hold_no_password(tmp_path: Path, guarded_mlflow: _BasicAuthServer) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true")
    done = subprocess.run(
        [sys.executable, "-m", "codex_ml.cli", "train-model", "--config", str(ROOT / "configs" / "training" / "tiny.yaml"),
         "--no-progress", "--output-root", str(tmp_path / "runs"), "--run-name", "ckpt", "--mlflow-enable",
         "--mlflow-tracking-uri", f"http://alice:{MLFLOW_PASSWORD}@127.0.0.1:{guarded_mlflow.port}",
         "training.max_steps=3", "training.checkpoint_interval=3", "training.eval_interval=3",
         "training.sample_tokens=8", "training.eval_batches=2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "runs" / "ckpt"
    assert list(run_dir.rglob("*.pt")) and guarded_mlflow.authorized and guarded_mlflow.refused == 0
    assert _files_holding(run_dir, MLFLOW_PASSWORD) == []
    assert MLFLOW_PASSWORD not in done.stdout + done.stderr


@pytest.mark.parametrize(("userinfo", "expected"), [("", "wants credentials"),
                                                    ("alice:wrong-pw-4471@", "refused the credentials given")])
def test_a_server_that_refuses_says_how_to_pass_credentials(
    tmp_path: Path, guarded_mlflow: _BasicAuthServer, capsys: pytest.CaptureFixture[str], userinfo: str, expected: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in MLFLOW_ENV:  # whatever the sink puts there is undone after the test
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    uri = f"http://{userinfo}127.0.0.1:{guarded_mlflow.port}"
    with start_run("refused", output_root=tmp_path, enable_mlflow=True, mlflow_tracking_uri=uri, close_timeout=5.0) as run:
        run.log_metrics({"loss": 1.0}, step=0)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("[monitoring-error] mlflow")]
    assert len(errors) == 1 and expected in errors[0] and "MLFLOW_TRACKING_USERNAME" in errors[0]
    assert "wrong-pw-4471" not in err and _files_holding(run.paths.root, "wrong-pw-4471") == []
    assert guarded_mlflow.refused >= 1 and run.close_report.sinks["mlflow"]["disabled"]


def test_failing_pushgateway_errors_hold_no_password(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # nothing listens there
    url = f"http://pusher:{GATEWAY_PASSWORD}@127.0.0.1:{port}"
    with start_run("gw", output_root=tmp_path, prometheus_pushgateway=url, close_timeout=2.0) as run:
        run.log_metrics({"loss": 1.0}, step=0)
    err = capsys.readouterr().err
    errors = json.loads(run.paths.summary.read_text())["errors"]
    assert errors and f"push to the Pushgateway at http://127.0.0.1:{port} failed" in errors[0]["error"]
    assert "[monitoring-error] prometheus" in err
    assert GATEWAY_PASSWORD not in err and _files_holding(run.paths.root, GATEWAY_PASSWORD) == []


def test_wrong_pushgateway_password_is_refused_and_not_echoed(
    tmp_path: Path, gateway: _BasicAuthServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://pusher:wrong-{GATEWAY_PASSWORD}@127.0.0.1:{gateway.port}"
    with start_run("gw", output_root=tmp_path, prometheus_pushgateway=url, close_timeout=2.0) as run:
        run.log_metrics({"loss": 1.0}, step=0)
    assert gateway.refused >= 1 and not gateway.authorized
    assert "401" in json.loads(run.paths.summary.read_text())["errors"][0]["error"]
    assert GATEWAY_PASSWORD not in capsys.readouterr().err


def test_tracking_config_and_checkpointed_config_keep_uris_without_credentials() -> None:
    from codex_ml.training.config import validate_config

    uri = f"https://alice:{MLFLOW_PASSWORD}@mlflow.example.com:5000"
    config = validate_config({"tracking": {"mlflow_tracking_uri": uri, "prometheus_pushgateway":
                                           f"pusher:{GATEWAY_PASSWORD}@gw.example.com:9091"}})  # fmt: skip
    tracking = config.tracking_config()
    assert tracking.mlflow_tracking_uri == "https://mlflow.example.com:5000"
    assert tracking.prometheus_pushgateway == "http://gw.example.com:9091"
    # What the trainer saves in every checkpoint (config.with_tracking(...).to_dict()).
    saved = json.dumps(config.with_tracking(tracking).to_dict())
    assert MLFLOW_PASSWORD not in saved and GATEWAY_PASSWORD not in saved
    assert credentials_for("https://mlflow.example.com:5000") == ("alice", MLFLOW_PASSWORD)
    assert TrackingConfig(mlflow_tracking_uri="file:///tmp/a@b/mlruns").mlflow_tracking_uri == "file:///tmp/a@b/mlruns"


def test_mlflow_credentials_go_only_to_the_uri_they_came_with(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in MLFLOW_ENV:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    guarded = take_credentials("http://bob:s3cret-1@one.example.com:5000")
    token_only = take_credentials("https://tok-123456@two.example.com")
    apply_mlflow_credentials(guarded)
    assert (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) == ("bob", "s3cret-1")
    apply_mlflow_credentials(token_only)  # a bare token is MLflow's bearer token
    assert os.environ["MLFLOW_TRACKING_TOKEN"] == "tok-123456" and "MLFLOW_TRACKING_PASSWORD" not in os.environ
    apply_mlflow_credentials("http://other.example.com")  # never sent to a server they were not given for
    assert not any(name in os.environ for name in MLFLOW_ENV)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "users-own")
    apply_mlflow_credentials("http://other.example.com")  # what the user set is left alone
    assert os.environ["MLFLOW_TRACKING_TOKEN"] == "users-own"


def test_a_run_json_that_still_holds_credentials_resumes_the_same_mlflow_run(
    tmp_path: Path, mlflow_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from codex_ml.monitoring.replay import replay

    for name in MLFLOW_ENV:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    with start_run("old", output_root=tmp_path, enable_mlflow=True, mlflow_tracking_uri=mlflow_server) as run:
        run.log_metrics({"loss": 1.0}, step=0)
    # What an earlier version wrote: the URI as given, password included.
    state = json.loads(run.paths.run_file.read_text())
    first_id = state["backends"]["mlflow"]["run_id"]
    legacy = mlflow_server.replace("http://", "http://alice:old-pw-8812@")
    state["backends"]["mlflow"]["tracking_uri"] = legacy
    run.paths.run_file.write_text(json.dumps(state))
    replay(run.paths.root, "mlflow", progress=False)
    with start_run("old", output_root=tmp_path, resume=True, enable_mlflow=True, mlflow_tracking_uri=legacy) as again:
        again.log_metrics({"loss": 0.5}, step=1)
    saved = json.loads(run.paths.run_file.read_text())["backends"]["mlflow"]
    assert saved["run_id"] == first_id and saved["tracking_uri"] == mlflow_server
    assert _files_holding(run.paths.root, "old-pw-8812") == []
