"""Alerts without Prometheus: each health event POSTed to ``--alert-webhook URL`` and/or piped to ``--alert-command CMD``.

The sink only overrides ``write_event``: scalars, text and the rest are not its business. It runs
on its own SinkWorker thread like every sink, so a slow or dead endpoint never blocks training.

- Webhook: one ``POST`` per event, ``Content-Type: application/json``, the body of
  :func:`alert_body` (documented in docs/alerting.md). A failed try (connection error, timeout,
  HTTP 408/425/429/5xx) is retried after ``RETRY_DELAYS`` seconds (1, 2, 4, 8: five tries, about
  15 s), a ``Retry-After`` up to ``MAX_RETRY_AFTER`` s is honoured; any other 4xx is not retried.
  ``https://user:password@host/...`` is sent as HTTP basic auth and ``https://token@host/...`` as
  ``Authorization: Bearer token``; the credentials are taken out of the URL when the config is built
  (codex_ml.secrets.credentials), so they are never stored or printed. ``env:NAME`` stands for the
  URL in ``$NAME`` (read here, kept in memory): for webhooks whose path is the secret (Slack).
- Command: ``CMD`` is split like a shell would (``shlex``, no shell: use ``sh -c '...'`` for pipes)
  and run once per event with the same JSON on stdin; a non-zero exit or a timeout is reported, not
  retried (a command may not be safe to run twice).

An event that still fails is one ``[monitoring] alerts: ...`` warning naming the webhook by its
origin only (``https://hooks.example.com``: paths and queries of webhook URLs often hold tokens)
with every message passed through ``redact_text``; the sink stays on, so the next event is tried
again. ``failed`` counts those events.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from codex_ml.backends import NOT_STARTED
from codex_ml.rundir.encoding import encode_number
from codex_ml.rundir.paths import RunPaths
from codex_ml.rundir.sink import RunInfo, Sink
from codex_ml.secrets.credentials import credentials_for, split_credentials, take_credentials
from codex_ml.secrets.redaction import redact_text

__all__ = ["BODY_VERSION", "RETRY_DELAYS", "AlertSink", "alert_body", "view_line", "webhook_origin"]

#: Version of the JSON body; a change that removes or renames a key bumps it.
BODY_VERSION = 1
#: Seconds to wait before the 2nd, 3rd, ... try of a webhook POST.
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)
#: Seconds one POST may take.
TIMEOUT = 5.0
#: The longest ``Retry-After`` honoured (seconds); a longer one is cut to this.
MAX_RETRY_AFTER = 30.0
#: Seconds ``--alert-command`` may run per event.
COMMAND_TIMEOUT = 30.0
_RETRY_STATUS = frozenset({408, 425, 429})
_EVENT_KEYS = ("time", "step", "rule", "severity", "metric", "value", "threshold", "message", "action")


def webhook_origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: how messages name a webhook (no userinfo, path or query)."""
    parts = urlsplit(split_credentials(url)[0])
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else "the webhook"


def alert_body(run: RunInfo | None, event: dict[str, Any], host: str | None = None) -> dict[str, Any]:
    """The JSON object sent for ``event``: version, a one-line ``text``, the run and the event.

    NaN and infinite ``value``/``threshold`` are the strings ``"NaN"``, ``"Infinity"``,
    ``"-Infinity"``, as in metrics.ndjson. ``text`` is what Slack- and Mattermost-style webhooks show.
    """
    fields = {key: event.get(key) for key in _EVENT_KEYS}
    for key in ("value", "threshold"):
        if isinstance(fields[key], float):
            fields[key] = encode_number(fields[key])
    fields["message"] = redact_text(str(fields["message"] or ""))
    name = run.name if run is not None else ""
    step = f" at step {fields['step']}" if fields["step"] is not None else ""
    text = (f"[codex_ml] {fields['severity'] or 'warning'}: {fields['rule']} in run {name}{step}: "
            f"{fields['message']} (action: {fields['action'] or 'log'})")  # fmt: skip
    return {
        "version": BODY_VERSION,
        "source": "codex_ml",
        "text": text,
        "run": {"name": name, "id": run.run_id if run is not None else "",
                "dir": str(run.paths.root) if run is not None else "", "host": host or socket.gethostname()},
        "event": fields,
    }  # fmt: skip


class _Failed(Exception):
    """One try failed; ``retry_after`` is the wait the server asked for, ``final`` means do not retry."""

    def __init__(self, why: str, final: bool = False, retry_after: float = 0.0) -> None:
        super().__init__(why)
        self.final, self.retry_after = final, retry_after


class AlertSink(Sink):
    """Delivers every health event to a webhook, a command, or both (see the module doc)."""

    name = "alerts"

    def __init__(
        self,
        webhook: str | None = None,
        command: str | None = None,
        timeout: float = TIMEOUT,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
        command_timeout: float = COMMAND_TIMEOUT,
    ) -> None:
        if not webhook and not command:
            raise ValueError("AlertSink needs a webhook URL, a command, or both")
        # Credentials in the URL stay in memory (TrackingConfig has already taken them out).
        self._webhook = take_credentials(_resolve(webhook)) if webhook else None
        self._argv = shlex.split(command) if command else None
        self._timeout = timeout
        self._delays = tuple(retry_delays)
        self._command_timeout = command_timeout
        self._run: RunInfo | None = None
        self._host = socket.gethostname()
        self._stop = threading.Event()
        #: Events delivered to every target, and events at least one target did not get.
        self.sent = 0
        self.failed = 0

    @classmethod
    def from_config(cls, config: Any) -> AlertSink:
        """The sink a TrackingConfig asks for: ``alert_webhook`` and ``alert_command``."""
        return cls(config.alert_webhook, config.alert_command)

    def start(self, run: RunInfo) -> None:
        """Remember the run (its name goes into every body) and where alerts go, for the outputs' line."""
        self._run = run
        targets = {"webhook": webhook_origin(self._webhook) if self._webhook else None,
                   "command": self._argv[0] if self._argv else None}  # fmt: skip
        run.remember(self.name, targets)

    def write_event(self, event: dict[str, Any]) -> None:
        """Send ``event`` to each target; a target that still fails is one warning (never raised)."""
        body = json.dumps(alert_body(self._run, event, self._host), allow_nan=False).encode("utf-8")
        problems = []
        if self._webhook:
            problems += self._try(lambda: self._post(body), f"the webhook {webhook_origin(self._webhook)}")
        if self._argv:
            problems += self._try(lambda: self._run_command(body), f"--alert-command {self._argv[0]}")
        if problems:
            self.failed += 1
            if self._stop.is_set():
                return  # close() gave up on this sink and has reported it: say nothing after it
            self._warn(f"the {event.get('rule')} alert (step {event.get('step')}) did not reach "
                       f"{'; '.join(problems)}; it is in events.ndjson, training goes on")  # fmt: skip
        else:
            self.sent += 1

    def abort(self) -> None:
        """Stop waiting between retries (close() gave up on this sink)."""
        self._stop.set()

    # -- delivery ----------------------------------------------------------------------------
    def _try(self, deliver: Any, target: str) -> list[str]:
        try:
            deliver()
            return []
        except _Failed as exc:
            return [f"{target} ({exc})"]

    def _post(self, body: bytes) -> None:
        """POST ``body``, retrying with backoff; raises _Failed with the last reason."""
        assert self._webhook is not None
        attempts = len(self._delays) + 1
        for attempt in range(attempts):
            try:
                self._post_once(body)
                return
            except _Failed as exc:
                if exc.final or attempt == attempts - 1:
                    raise _Failed(f"{exc}, after {attempt + 1} tr{'y' if attempt == 0 else 'ies'}") from None
                if self._stop.wait(max(self._delays[attempt], exc.retry_after)):
                    raise _Failed(f"{exc}; the run closed before the next try") from None

    def _post_once(self, body: bytes) -> None:
        request = urllib.request.Request(self._webhook, data=body, method="POST", headers=self._headers())
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            retry = exc.code in _RETRY_STATUS or exc.code >= 500
            raise _Failed(f"HTTP {exc.code} {exc.reason}", final=not retry, retry_after=_retry_after(exc)) from None
        except (urllib.error.URLError, OSError) as exc:  # refused, unreachable, timed out, TLS
            reason = getattr(exc, "reason", exc)
            raise _Failed(f"{type(reason).__name__}: {reason}") from None

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": "codex_ml-alerts"}
        creds = credentials_for(self._webhook or "")
        if creds is not None and creds.password is not None:
            pair = f"{creds.user}:{creds.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        elif creds is not None:
            headers["Authorization"] = f"Bearer {creds.user}"
        return headers

    def _run_command(self, body: bytes) -> None:
        assert self._argv is not None
        try:
            done = subprocess.run(self._argv, input=body, capture_output=True, timeout=self._command_timeout,
                                  check=False)  # fmt: skip
        except FileNotFoundError:
            raise _Failed("command not found") from None
        except subprocess.TimeoutExpired:
            raise _Failed(f"still running after {self._command_timeout:g} s, stopped") from None
        except OSError as exc:
            raise _Failed(f"{type(exc).__name__}: {exc.strerror or exc}") from None
        if done.returncode != 0:
            tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            raise _Failed(f"exit status {done.returncode}" + (f": {tail[0][:200]}" if tail[0] else ""))

    def _warn(self, message: str) -> None:
        if self._run is not None:
            self._run.warn(self.name, redact_text(message))


def _resolve(webhook: str) -> str:
    """``webhook``, or the URL in ``$NAME`` for ``env:NAME`` (TrackingConfig has checked it is set)."""
    if not webhook.startswith("env:"):
        return webhook
    url = os.environ.get(webhook[4:])
    if not url:
        raise ValueError(f"--alert-webhook {webhook}: ${webhook[4:]} is not set")
    return url


def _retry_after(exc: urllib.error.HTTPError) -> float:
    """The server's ``Retry-After`` in seconds (numeric form only), capped; 0 when absent."""
    try:
        return min(max(float(exc.headers.get("Retry-After", 0)), 0.0), MAX_RETRY_AFTER)
    except (TypeError, ValueError):
        return 0.0


def view_line(paths: RunPaths, saved: dict[str, Any] | None = None) -> str:
    """Where the run's health alerts went (webhook origin and/or command)."""
    if not saved:
        return f"  alerts:       {NOT_STARTED}"
    targets = []
    if saved.get("webhook"):
        targets.append(f"POST {saved['webhook']}")
    if saved.get("command"):
        targets.append(f"command {saved['command']}")
    return f"  alerts:       health events go to {' and '.join(targets) or 'nowhere'} (all in events.ndjson)"
