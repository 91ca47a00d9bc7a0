"""Keeping secrets out of every sink, file and message.

Params, config and tags pass through :func:`redact_params` before they are queued, text records
and every ``[monitoring-error]``/``[monitoring]`` line through :func:`redact_text`, so no sink
(NDJSON files, TensorBoard, MLflow, W&B), summary.json or stderr ever receives them:

- a value whose key names a secret becomes ``"***"`` (:func:`is_secret_key`: ``api_key``,
  ``token``, ``password``, ``auth``, ``cookie``, ``jwt``, ``ssh_key``, ``db_pass``, ...);
  booleans and None stay, they hold no secret;
- inside any string: URL userinfo (``https://user:***@host``, ``https://***@host``), secret
  query parameters (``?token=***``, ``&api_key=***``, ``&X-Amz-Signature=***``), HTTP
  credentials (``Authorization: Bearer ***``, ``Cookie: ***``, a bare ``Bearer ***``),
  ``key=value``/``key: value``/``"key": "value"``/``--key value`` with a secret key, and tokens
  whose format names them (OpenAI/Anthropic ``sk-``, GitHub, GitLab, AWS key ids, Slack, JWTs,
  Hugging Face, Stripe, Google, Databricks, npm, PyPI, SendGrid, Telegram, private key blocks);
- the values of secret environment variables (``WANDB_API_KEY``, ``OPENAI_API_KEY``, ... and any
  variable whose name ends in ``_TOKEN``, ``_KEY``, ``_SECRET``, ``_PASSWORD``) wherever they appear.

Keys are split into words, so ``tokenizer``, ``max_tokens`` or ``monkey`` are not secrets but
``hf_token`` and ``wandb.api_key`` are. High-entropy guessing is deliberately left out: it would
hide run ids, git hashes and checkpoint digests, which users need to read.

Why not Yelp's detect-secrets (1.5.0, May 2024): it flags *lines* of files; for many detectors
the value it reports is a regex group (``ghp``, ``BEGIN RSA PRIVATE KEY``), not the span to mask,
its keyword detector needs quotes (``password = "x"``, not ``password=x``), its OpenAI detector
knows only the old ``...T3BlbkFJ...`` keys, and without its entropy plugins it flagged 13 of the
67 shapes of tests/tracking/test_redaction_shapes.py (with them, nearly every word) at ~150 us a
line. The token formats below are the ones its detectors and the issuers document.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator
from typing import Any

REDACTED = "***"

#: One word of a key that marks its value as secret, wherever it is in the key.
_SECRET_WORDS = frozenset({
    "token", "secret", "secrets", "password", "passwords", "passwd", "pwd", "passphrase", "credential",
    "credentials", "creds", "authorization", "auth", "oauth", "cookie", "cookies", "jwt", "bearer",
})  # fmt: skip
#: Words that are secret as the last word only (``db_pass``; ``pass_rate`` is not).
_SECRET_LAST_WORDS = frozenset({"pass", "pw"})
#: ``<word>_key`` and ``<word>key`` are secret for these words (``ssh_key``, ``apikey``, ``openai_key``).
_KEY_QUALIFIERS = frozenset({
    "api", "access", "private", "secret", "ssh", "openai", "anthropic", "wandb", "hf", "github", "gitlab",
    "stripe", "aws", "gcp", "azure", "encryption", "signing", "master", "client", "account", "storage",
    "service", "session", "hmac", "gpg", "pgp", "license", "auth", "pass", "app", "consumer", "subscription",
    "shared", "deploy", "admin",
})  # fmt: skip
_SECRET_PAIRS = frozenset({("client", "secret"), ("access", "token"), ("auth", "token")})
#: Environment variables whose values must never be logged (besides the suffix rule below).
SECRET_ENV_VARS = ("WANDB_API_KEY", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "HF_TOKEN",
                   "HUGGING_FACE_HUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN",
                   "AZURE_STORAGE_ACCESS_KEY", "AZURE_STORAGE_CONNECTION_STRING", "GOOGLE_APPLICATION_CREDENTIALS_JSON",
                   "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GITHUB_TOKEN", "GH_TOKEN", "DATABRICKS_TOKEN",
                   "DATABRICKS_CLIENT_SECRET", "NPM_TOKEN", "PYPI_TOKEN")  # fmt: skip
SECRET_ENV_SUFFIXES = ("_TOKEN", "_KEY", "_SECRET", "_PASSWORD", "_PASSWD", "_CREDENTIALS")
#: Shorter values would blank out ordinary words; real keys are long (suffix-matched names need 8).
_MIN_LISTED, _MIN_SUFFIXED = 6, 8

_WORD_SPLIT = re.compile(r"[^a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
#: A bare user in these schemes is a login name (``ssh://git@github.com``), not a token.
_LOGIN_SCHEMES = ("ssh://", "git+ssh://", "sftp://", "scp://")
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#\s@\"'<>]+(?:@[^/?#\s@\"'<>]+)*)@")
_QUERY_PARAM = re.compile(r"(?P<head>[?&;](?P<name>[A-Za-z0-9_.\-]+)=)(?P<value>[^&#\s\"'<>]+)")
_SECRET_QUERY_NAMES = frozenset({"key", "sig", "signature", "x-amz-signature", "x-goog-signature", "sas", "code"})
_AUTH_HEADER = re.compile(
    r"(?i)(?P<head>\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?"
    r"(?:(?:bearer|basic|token|digest|negotiate|apikey|sso-key)\s+)?)(?P<value>[^\s\"',;]+)"
)
_COOKIE_HEADER = re.compile(r"(?i)(?P<head>\b(?:set-)?cookie[\"']?\s*[:=]\s*[\"']?)(?P<value>[^\r\n\"']+)")
_BARE_BEARER = re.compile(r"(?i)(?P<head>\bbearer\s+)(?P<value>(?=[A-Za-z0-9\-._~+/]*[0-9\-._~+/])[A-Za-z0-9\-._~+/]{8,}=*)")
#: ``key=`` / ``key:`` / ``"key": `` (the value after it is read by _mask_assignments).
_ASSIGNMENT_HEAD = re.compile(r"(?P<key>(?<![\w.])[A-Za-z_][A-Za-z0-9_.\-]*)[\"']?\s*(?:=|:(?!//))\s*")
_QUOTED_VALUE = re.compile(r"([\"'])[^\"'\r\n]*\1")
_BARE_VALUE = re.compile(r"[^\s\"',;&}\])]+")
_FLAG_VALUE = re.compile(r"(?P<head>(?<!\S)--(?P<key>[A-Za-z][A-Za-z0-9_\-]*)\s+)(?P<value>[^\s\"'-][^\s\"']*)")
#: Tokens whose own format says they are secret (the prefixes their issuers document), each with
#: the literal strings one of which it needs: a plain ``in`` test skips the regex on most text.
_TOKEN_FORMATS = [(needles, re.compile(pattern)) for needles, pattern in [
    (("PRIVATE KEY",), r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?"
                       r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)"),
    (("eyJ",), r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),  # JWT: header.payload.signature
    (("sk-",), r"\bsk-(?:proj-|ant-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),  # OpenAI, Anthropic
    (("gh", "github_pat_"), r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})"),
    (("glpat-",), r"\bglpat-[A-Za-z0-9_-]{20,}"),
    (("AKIA", "ASIA", "ABIA", "ACCA"), r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b"),  # AWS access key ids
    (("xox",), r"\bxox[abposre]-[A-Za-z0-9-]{10,}"),  # Slack
    (("hf_",), r"\bhf_[A-Za-z0-9]{30,}"),  # Hugging Face
    (("k_live_", "k_test_"), r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}"),  # Stripe
    (("AIza",), r"\bAIza[0-9A-Za-z_-]{35}"),  # Google API keys
    (("dapi",), r"\bdapi[0-9a-f]{32}(?:-\d+)?\b"),  # Databricks
    (("npm_",), r"\bnpm_[A-Za-z0-9]{36}\b"),
    (("pypi-",), r"\bpypi-AgE[A-Za-z0-9_-]{50,}"),
    (("SG.",), r"\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}\b"),  # SendGrid
    ((":AA",), r"\b\d{8,10}:AA[A-Za-z0-9_-]{33}\b"),  # Telegram bots
]]  # fmt: skip


def is_secret_key(key: str) -> bool:
    """Whether a (dotted) param key names a secret, judged by its last component's words."""
    last = re.split(r"[./]", key)[-1]
    words = [w for w in _WORD_SPLIT.split(_CAMEL.sub("_", last).lower()) if w]
    if not words:
        return False
    if any(w in _SECRET_WORDS for w in words) or words[-1] in _SECRET_LAST_WORDS:
        return True
    if any(w.endswith("key") and w[:-3] in _KEY_QUALIFIERS for w in words):
        return True
    pairs = list(zip(words, words[1:]))
    return any(b == "key" and a in _KEY_QUALIFIERS for a, b in pairs) or any(p in _SECRET_PAIRS for p in pairs)


def redact_text(text: str, secrets: tuple[str, ...] | None = None) -> str:
    """``text`` with every secret shape of the module doc replaced by ``***``."""
    for secret in secret_env_values() if secrets is None else secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for needles, pattern in _TOKEN_FORMATS:
        if any(needle in text for needle in needles):
            text = pattern.sub(_mask_token, text)
    if "@" in text:
        text = _URL_USERINFO.sub(_mask_userinfo, text)
    if "=" in text:
        text = _QUERY_PARAM.sub(_mask_query_param, text)
    lower = text.lower()
    for needle, pattern in (("authorization", _AUTH_HEADER), ("cookie", _COOKIE_HEADER), ("bearer", _BARE_BEARER)):
        if needle in lower:
            text = pattern.sub(_mask_value, text)
    if "--" in text:
        text = _FLAG_VALUE.sub(_mask_if_secret_key, text)
    return _mask_assignments(text) if "=" in text or ":" in text else text


def redact_params(flat: dict[str, Any]) -> dict[str, Any]:
    """A copy of flattened params with every secret value replaced (see the module doc)."""
    secrets = secret_env_values()
    return {key: REDACTED if is_secret_key(key) and _may_hold_secret(value) else _redact_value(value, secrets)
            for key, value in flat.items()}  # fmt: skip


def secret_env_values(environ: dict[str, str] | None = None) -> tuple[str, ...]:
    """Values of the secret environment variables, longest first (so none is left half-masked)."""
    environ = os.environ if environ is None else environ
    found = set()
    for name, value in environ.items():
        upper = name.upper()
        if upper in SECRET_ENV_VARS and len(value) >= _MIN_LISTED:
            found.add(value)
        elif upper.endswith(SECRET_ENV_SUFFIXES) and len(value) >= _MIN_SUFFIXED:
            found.add(value)
    return tuple(sorted(found, key=len, reverse=True))


@contextlib.contextmanager
def redacted_argv() -> Iterator[None]:
    """``sys.argv`` redacted for the duration (for libraries that record the command line, like W&B)."""
    original = sys.argv
    sys.argv = [redact_text(arg) for arg in _redact_flag_values(original)]
    try:
        yield
    finally:
        sys.argv = original


def _redact_flag_values(argv: list[str]) -> list[str]:
    # ``--api-key VALUE`` as two words: the value is secret because of the flag before it.
    out = list(argv)
    for index in range(1, len(out)):
        previous = out[index - 1]
        if previous.startswith("--") and "=" not in previous and is_secret_key(previous.lstrip("-")):
            out[index] = REDACTED
    return out


def _may_hold_secret(value: Any) -> bool:
    return value is not None and value != "" and not isinstance(value, bool)


def _redact_value(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, list):
        return [_redact_value(v, secrets) for v in value]
    return value


def _mask_token(match: re.Match[str]) -> str:
    found = match.group(0)
    if found.startswith("-----BEGIN"):
        return f"-----BEGIN PRIVATE KEY-----{REDACTED}-----END PRIVATE KEY-----"
    return REDACTED


def _mask_userinfo(match: re.Match[str]) -> str:
    scheme, userinfo = match["scheme"], match["userinfo"]
    if userinfo == REDACTED or userinfo.endswith(":" + REDACTED):
        return match.group(0)
    if ":" in userinfo:
        return f"{scheme}{userinfo.split(':', 1)[0]}:{REDACTED}@"
    if scheme.lower() in _LOGIN_SCHEMES:
        return match.group(0)
    return f"{scheme}{REDACTED}@"


def _mask_query_param(match: re.Match[str]) -> str:
    name = match["name"].lower()
    if name in _SECRET_QUERY_NAMES or is_secret_key(name):
        return match["head"] + REDACTED
    return match.group(0)


def _mask_value(match: re.Match[str]) -> str:
    return match["head"] + REDACTED


def _mask_if_secret_key(match: re.Match[str]) -> str:
    return match["head"] + REDACTED if is_secret_key(match["key"]) else match.group(0)


def _mask_assignments(text: str) -> str:
    # Heads are found without their values, so a non-secret ``note: password=x`` cannot hide
    # the secret ``password=`` inside its own value.
    out, pos = [], 0
    for head in _ASSIGNMENT_HEAD.finditer(text):
        key = head["key"]
        if head.start() < pos or not is_secret_key(key) or key.lower().endswith("authorization"):
            continue  # authorization headers: _AUTH_HEADER already masked the value and kept the scheme
        value = _QUOTED_VALUE.match(text, head.end()) or _BARE_VALUE.match(text, head.end())
        if value is None:
            continue
        quote = value.group(1) if value.re is _QUOTED_VALUE else ""
        out += [text[pos : head.end()], quote, REDACTED, quote]
        pos = value.end()
    return "".join(out) + text[pos:]
