"""Credentials written into a URI (``http://user:password@host``) stay in memory only.

A tracking URI or Pushgateway URL is stored (TrackingConfig, run.json, checkpoints, params) and
printed ("MLflow: open ...", MLflow's own "View run at" line, error messages). So codex_ml
takes the userinfo out as soon as it sees the URI: :func:`take_credentials` returns the URI
without it and keeps ``(user, password)`` in this process's memory, keyed by that clean URI.
The sinks then hand them to their backend without a URL: MLflow through the environment
variables it reads (``MLFLOW_TRACKING_USERNAME``/``PASSWORD``, or ``MLFLOW_TRACKING_TOKEN`` for a
bare ``https://token@host``), the Pushgateway through prometheus_client's basic-auth handler.

Nothing here is written to disk: a resumed run in a new process needs the credentials again
(the URI with them, or MLflow's environment variables).
"""

from __future__ import annotations

import os
import threading
from typing import NamedTuple
from urllib.parse import unquote, urlsplit, urlunsplit

from codex_ml.secrets.redaction import REDACTED


class Credentials(NamedTuple):
    """User and password from a URI's userinfo (password None for ``https://token@host``)."""

    user: str
    password: str | None


_store: dict[str, Credentials] = {}
_store_lock = threading.Lock()
#: MLflow variables this process set, and to what: cleared again for a URI without credentials.
_applied_env: dict[str, str] = {}
MLFLOW_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


def split_credentials(uri: str) -> tuple[str, Credentials | None]:
    """``(uri without userinfo, its credentials or None)``; the rest of the URI is kept as it was."""
    if "@" not in uri or "://" not in uri:
        return uri, None
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    creds = Credentials(unquote(user), unquote(password) if colon else None)
    return urlunsplit(parts._replace(netloc=hostport)), creds


def take_credentials(uri: str | None, default_scheme: str | None = None) -> str | None:
    """``uri`` without userinfo; its credentials are kept in memory for :func:`credentials_for`.

    With ``default_scheme``, a URI without a scheme gets it first (a Pushgateway's
    ``user:pw@host:9091`` is http, as prometheus_client reads it).
    """
    if not isinstance(uri, str) or not uri:
        return uri  # TrackingConfig reports a value of the wrong type itself
    if default_scheme and "://" not in uri:
        uri = f"{default_scheme}://{uri}"
    clean, creds = split_credentials(uri)
    if creds is not None:
        with _store_lock:
            _store[clean] = creds
    return clean


def keep_credentials(uri: str, creds: Credentials | tuple[str, str | None]) -> None:
    """Keep ``creds`` for the clean ``uri`` in memory (a run's sink process, handed them over a pipe)."""
    with _store_lock:
        _store[uri] = Credentials(*creds)


def credentials_for(uri: str) -> Credentials | None:
    """Credentials taken from a URI that is now ``uri`` (or from ``uri`` itself), else None."""
    clean, creds = split_credentials(uri)
    if creds is not None:
        return creds
    with _store_lock:
        return _store.get(clean) or _store.get(clean.rstrip("/"))


def mask_uri(uri: str) -> str:
    """``uri`` with any userinfo shown as ``***`` (for messages about URIs from elsewhere)."""
    clean, creds = split_credentials(uri)
    if creds is None:
        return uri
    scheme, _, rest = clean.partition("://")
    return f"{scheme}://{REDACTED}@{rest}"


def apply_mlflow_credentials(uri: str) -> None:
    """Put the credentials known for ``uri`` where MLflow reads them (this process's environment).

    Basic auth needs a user and a password; a bare ``https://token@host`` becomes MLflow's bearer
    token. Values this process set for another URI are removed, so they never go to a server they
    were not given for; variables the user set are left alone.
    """
    creds = credentials_for(uri)
    wanted: dict[str, str] = {}
    if creds is not None and creds.password is not None:
        wanted = {MLFLOW_ENV[0]: creds.user, MLFLOW_ENV[1]: creds.password}
    elif creds is not None:
        wanted = {MLFLOW_ENV[2]: creds.user}
    for name in MLFLOW_ENV:
        if name in wanted:
            os.environ[name] = _applied_env[name] = wanted[name]
        elif name in _applied_env and os.environ.get(name) == _applied_env.pop(name):
            del os.environ[name]
