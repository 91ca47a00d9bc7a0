"""The alert sink: health events to ``--alert-webhook URL`` (JSON POST, retried) and ``--alert-command CMD`` (stdin).

The webhook is a real ``http.server`` in this process that answers what each test scripts (200, 503,
404, or nothing at all); the command is a real child process. Events reach the sink the way the
run hands them over: ``run.log_event`` (EVENT record -> the sink's worker thread -> ``write_event``),
or ``write_event`` called directly where a test needs the sink object.
"""

from __future__ import annotations

import base64
import json
import math
import shlex
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from codex_ml.backends.alerts import BODY_VERSION, AlertSink, alert_body, webhook_origin
from codex_ml.tracking import start_run
from codex_ml.tracking.config import TrackingConfig, TrackingConfigError

FAST = (0.05, 0.1, 0.2)  # retry delays that keep a test short


def _event(rule: str = "nonfinite", step: int | None = 30, value: float | None = math.nan) -> dict[str, Any]:
    return {"time": 1_700_000_000.5, "step": step, "rule": rule, "severity": "critical", "metric": "train/loss",
            "value": value, "threshold": None, "message": "train/loss is NaN at step 30", "action": "stop"}  # fmt: skip


class Hook:
    """A webhook endpoint answering each POST with the next scripted status (then 200)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.requests: list[tuple[float, dict[str, str], dict[str, Any]]] = []
        self.got = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hook.requests.append((time.monotonic(), dict(self.headers), body))
                status = hook.statuses.pop(0) if hook.statuses else 200
                self.send_response(status)
                self.end_headers()
                if status == 200:
                    hook.got.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook()
    yield server
    server.server.shutdown()


def test_webhook_gets_the_documented_body_through_the_run(tmp_path: Path, hook: Hook) -> None:
    with start_run("alerting", output_root=tmp_path, flush_interval=0.05, alert_webhook=f"{hook.base}/hook") as run:
        assert "alerts" in run.sink_names
        run.log_event(_event())
        assert hook.got.wait(5), "the webhook got nothing"
    (_, headers, body) = hook.requests[0]
    assert headers["Content-Type"] == "application/json"
    assert body["version"] == BODY_VERSION and body["source"] == "codex_ml"
    assert body["run"]["name"] == "alerting" and body["run"]["id"] == run.run_id
    assert body["run"]["dir"] == str(run.paths.root) and body["run"]["host"] == socket.gethostname()
    assert body["event"] == {**_event(), "value": "NaN"}  # encoded like metrics.ndjson
    assert body["text"] == ("[codex_ml] critical: nonfinite in run alerting at step 30: train/loss is NaN at step 30 "
                            "(action: stop)")  # fmt: skip
    saved = json.loads(run.paths.run_file.read_text())["backends"]["alerts"]
    assert saved == {"webhook": hook.base, "command": None}  # the origin only
    from codex_ml.tracking.viewing import describe_outputs

    assert f"  alerts:       health events go to POST {hook.base} (all in events.ndjson)" in describe_outputs(
        run.paths, run.sink_names)


def test_credentials_in_the_url_are_sent_as_auth_and_never_printed(
    tmp_path: Path, hook: Hook, capfd: pytest.CaptureFixture[str]
) -> None:
    hook.statuses = [404]
    url = hook.base.replace("http://", "http://alert-user:S3cretPass@") + "/services/T0/B0/PathT0ken?token=QueryT0ken"
    config = TrackingConfig(alert_webhook=url)
    assert "S3cretPass" not in repr(config)  # kept out of the stored config
    sink = AlertSink.from_config(config)
    with start_run("masked", output_root=tmp_path, flush_interval=0.05, sinks=[sink]):
        sink.write_event(_event())
    (_, headers, _) = hook.requests[0]
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"alert-user:S3cretPass").decode()
    assert len(hook.requests) == 1  # a 404 is not retried
    assert sink.failed == 1 and sink.sent == 0
    err = capfd.readouterr().err
    assert f"[monitoring] alerts: the nonfinite alert (step 30) did not reach the webhook {hook.base} (HTTP 404" in err
    for secret in ("S3cretPass", "alert-user", "PathT0ken", "QueryT0ken"):
        assert secret not in err


def test_a_token_user_is_a_bearer_token(tmp_path: Path, hook: Hook) -> None:
    sink = AlertSink(hook.base.replace("http://", "http://tok3n-abc@") + "/x")
    with start_run("bearer", output_root=tmp_path, flush_interval=0.05, sinks=[sink]):
        sink.write_event(_event())
    assert hook.requests[0][1]["Authorization"] == "Bearer tok3n-abc"


def test_retries_with_backoff_until_the_endpoint_recovers(tmp_path: Path, hook: Hook) -> None:
    hook.statuses = [503, 429, 502]
    sink = AlertSink(f"{hook.base}/hook", retry_delays=FAST)
    with start_run("retry", output_root=tmp_path, flush_interval=0.05, sinks=[sink]):
        sink.write_event(_event())
    times = [t for t, _, _ in hook.requests]
    assert len(times) == 4 and sink.sent == 1 and sink.failed == 0
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(gap >= delay for gap, delay in zip(gaps, FAST)), gaps  # the backoff was waited
    assert all(body == hook.requests[0][2] for _, _, body in hook.requests)  # the same event each time


def test_gives_up_after_the_last_retry_and_stays_on_for_the_next_event(
    tmp_path: Path, hook: Hook, capfd: pytest.CaptureFixture[str]
) -> None:
    hook.statuses = [500] * 4
    sink = AlertSink(f"{hook.base}/hook", retry_delays=FAST)
    with start_run("giveup", output_root=tmp_path, flush_interval=0.05, sinks=[sink]):
        sink.write_event(_event("spike"))
        sink.write_event(_event("stall", step=None, value=None))
    rules = [body["event"]["rule"] for _, _, body in hook.requests]
    assert rules == ["spike"] * 4 + ["stall"]
    assert (sink.failed, sink.sent) == (1, 1)
    err = capfd.readouterr().err
    assert f"the spike alert (step 30) did not reach the webhook {hook.base} (HTTP 500 Internal Server Error, after 4 tries)" in err


def test_a_hung_endpoint_never_blocks_training(tmp_path: Path) -> None:
    """The endpoint accepts and never answers: log_event and log_metrics return at once; close ends the wait."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    try:
        run = start_run("hung", output_root=tmp_path, flush_interval=0.05, alert_webhook=url, close_timeout=1.0)
        began = time.perf_counter()
        run.log_event(_event())
        for step in range(100):
            run.log_metrics({"train/loss": 1.0}, step=step)
        assert time.perf_counter() - began < 0.5
        closing = time.monotonic()
        report = run.close()
        assert time.monotonic() - closing < 10  # close_timeout + the worker's grace, not 5 s x 5 tries
        assert report.status == "FINISHED"
    finally:
        listener.close()


def test_command_gets_the_event_json_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "alerts.jsonl"
    script = "import sys; open(sys.argv[1], 'ab').write(sys.stdin.buffer.read() + b'\\n')"
    command = shlex.join([sys.executable, "-c", script, str(out)])
    with start_run("cmd", output_root=tmp_path, flush_interval=0.05, alert_command=command) as run:
        run.log_event(_event())
        run.log_event(_event("spike", value=12.5))
    bodies = [json.loads(line) for line in out.read_text().splitlines()]
    assert [b["event"]["rule"] for b in bodies] == ["nonfinite", "spike"]
    assert bodies[1]["event"]["value"] == 12.5 and bodies[1]["run"]["name"] == "cmd"


def test_a_failing_command_is_one_warning_with_its_last_stderr_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    sink = AlertSink(command="sh -c 'echo first >&2; echo boom >&2; exit 3'")
    with start_run("cmdfail", output_root=tmp_path, flush_interval=0.05, sinks=[sink]):
        sink.write_event(_event())
    assert sink.failed == 1
    assert "did not reach --alert-command sh (exit status 3: boom)" in capfd.readouterr().err


def test_body_without_a_run_and_origin_of_urls() -> None:
    body = alert_body(None, _event(value=math.inf), host="h")
    assert body["event"]["value"] == "Infinity" and body["run"] == {"name": "", "id": "", "dir": "", "host": "h"}
    json.dumps(body, allow_nan=False)  # strict JSON
    assert webhook_origin("https://u:p@hooks.example.com:8443/services/x?token=y") == "https://hooks.example.com:8443"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"alert_webhook": "ftp://hooks.example.com/x"}, "--alert-webhook (tracking.alert_webhook) must be an http(s)"),
        ({"alert_webhook": "hooks.example.com/x"}, "(got no scheme)"),
        ({"alert_command": "no-such-program-xyz --token abc"}, "names 'no-such-program-xyz', which is not"),
        ({"alert_command": "'unbalanced"}, "cannot be split"),
    ],
)
def test_bad_settings_are_refused_before_the_run(options: dict[str, str], message: str) -> None:
    with pytest.raises(TrackingConfigError) as caught:
        TrackingConfig(**options)
    assert message in str(caught.value) and "abc" not in str(caught.value)


def test_flags_reach_the_tracking_config() -> None:
    import argparse

    from codex_ml.tracking.flags import add_tracking_arguments, tracking_config_from

    parser = argparse.ArgumentParser()
    add_tracking_arguments(parser)
    args = parser.parse_args(["--alert-webhook", "https://u:pw@hooks.example.com/h", "--alert-command", "cat"])
    config = tracking_config_from(args)
    assert (config.alert_webhook, config.alert_command) == ("https://hooks.example.com/h", "cat")


def test_checkpointed_config_keeps_the_webhook_without_its_credentials() -> None:
    from codex_ml.secrets.credentials import credentials_for
    from codex_ml.training.config import validate_config

    config = validate_config({"tracking": {"alert_webhook": "https://bot:W3bhookPw@hooks.example.com/h"}})
    tracking = config.tracking_config()
    assert tracking.alert_webhook == "https://hooks.example.com/h"
    assert "W3bhookPw" not in json.dumps(config.with_tracking(tracking).to_dict())  # what a checkpoint holds
    assert credentials_for("https://hooks.example.com/h") == ("bot", "W3bhookPw")


def test_env_webhook_keeps_a_path_secret_out_of_the_config(
    tmp_path: Path, hook: Hook, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Slack-style URLs carry their secret in the path: ``env:NAME`` leaves only the name in the config."""
    monkeypatch.setenv("TEAM_ALERT_URL", f"{hook.base}/services/T0/B0/Sl4ckPathSecret")
    config = TrackingConfig(alert_webhook="env:TEAM_ALERT_URL")
    assert config.alert_webhook == "env:TEAM_ALERT_URL"
    with start_run("envhook", output_root=tmp_path, flush_interval=0.05, config=config) as run:
        run.log_event(_event())
        assert hook.got.wait(5)
    assert hook.requests[0][2]["event"]["rule"] == "nonfinite"
    assert "Sl4ckPathSecret" not in run.paths.run_file.read_text() + capfd.readouterr().err
    monkeypatch.delenv("TEAM_ALERT_URL")
    with pytest.raises(TrackingConfigError, match=r"reads the URL from \$TEAM_ALERT_URL, which is not set"):
        TrackingConfig(alert_webhook="env:TEAM_ALERT_URL")


def test_the_alerts_sink_without_a_destination_is_refused() -> None:
    """``--sink alerts`` alone would build nothing: it is an error naming the two options."""
    from codex_ml.plugins.registry import PluginError
    from codex_ml.tracking.builtin_sinks import build_sinks
    from codex_ml.tracking.config import TrackingConfig

    with pytest.raises(PluginError, match="--alert-webhook URL or --alert-command CMD"):
        build_sinks(TrackingConfig(extra_sinks=["alerts"]))
