"""Keeping secrets out of every sink.

Params, config and tags pass through :func:`redact_params` before they are queued, so no
sink (NDJSON files, TensorBoard, MLflow, W&B) ever receives them:

- a value whose key names a secret (``api_key``, ``token``, ``secret``, ``password``,
  ``access_key``, ``credentials``...) becomes ``"***"``;
- credentials inside URLs (``https://user:pw@host``) become ``https://user:***@host``;
- the values of secret environment variables (``WANDB_API_KEY``, ``MLFLOW_TRACKING_PASSWORD``,
  ...) are replaced wherever they appear in a string value.

Keys are split into words, so ``tokenizer`` or ``max_tokens`` are not secrets but
``hf_token`` and ``wandb.api_key`` are.
"""

from __future__ import annotations

import os
import re
from typing import Any

REDACTED = "***"

#: One word of a key that marks its value as secret.
_SECRET_WORDS = frozenset({"token", "secret", "password", "passwd", "pwd", "apikey", "credential", "credentials",
                           "passphrase", "privatekey", "authorization"})  # fmt: skip
#: Two adjacent words that do (``api_key``, ``access-key``, ``private.key``).
_SECRET_PAIRS = frozenset({("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key"),
                           ("auth", "token"), ("client", "secret")})  # fmt: skip
#: Environment variables whose values must never be logged.
SECRET_ENV_VARS = ("WANDB_API_KEY", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "HF_TOKEN",
                   "HUGGING_FACE_HUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "AZURE_STORAGE_ACCESS_KEY",
                   "GOOGLE_APPLICATION_CREDENTIALS_JSON")  # fmt: skip

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@")
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def is_secret_key(key: str) -> bool:
    """Whether a (dotted) param key names a secret, judged by its last component's words."""
    last = re.split(r"[./]", key)[-1]
    words = [w for w in _WORD_SPLIT.split(_CAMEL.sub("_", last).lower()) if w]
    if any(w in _SECRET_WORDS for w in words):
        return True
    return any(pair in _SECRET_PAIRS for pair in zip(words, words[1:]))


def redact_text(text: str, secrets: tuple[str, ...] | None = None) -> str:
    """``text`` with URL credentials and known secret values replaced by ``***``."""
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    for secret in _env_secrets() if secrets is None else secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_params(flat: dict[str, Any]) -> dict[str, Any]:
    """A copy of flattened params with every secret value replaced (see the module doc)."""
    secrets = _env_secrets()
    return {key: REDACTED if is_secret_key(key) and value not in (None, "") else _redact_value(value, secrets)
            for key, value in flat.items()}  # fmt: skip


def _redact_value(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, list):
        return [_redact_value(v, secrets) for v in value]
    return value


def _env_secrets() -> tuple[str, ...]:
    # Very short values would blank out ordinary words; real keys are long.
    return tuple(v for v in (os.environ.get(name, "") for name in SECRET_ENV_VARS) if len(v) >= 6)
