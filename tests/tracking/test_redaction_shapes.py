"""Every common secret shape is masked, in the redaction functions and in every file of every backend.

SHAPES is the table: each row plants one secret (``secret``) in the way users leak it: inside a
logged string (``text``), as the value of a secret key (``key``), or as the value of a secret
environment variable that then shows up in a logged string (``env``). ``kept`` is a part of the
string that is not secret and must survive. NOT_SECRETS are strings that must come back unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from codex_ml.secrets.redaction import REDACTED, is_secret_key, redact_params, redact_text

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Shape:
    """One way a secret reaches a logged value."""

    id: str
    kind: str  # "text", "key" or "env"
    secret: str
    value: str = ""  # text: the logged string; env: the variable name; key: the key
    kept: str = ""


def _text(id: str, value: str, secret: str, kept: str = "") -> Shape:
    return Shape(id, "text", secret, value, kept)


_BEARER = "sk-PLANTsk0123456789abcdefghij"
_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJQTEFOVGp3dCJ9.PLANTjwtSignature0123"
_PEM = "MIIEpAIBAAKCAQEAPLANTpem0123"
SHAPES: list[Shape] = [
    # HTTP credentials
    _text("authorization-bearer", f"Authorization: Bearer {_BEARER}", _BEARER, "Authorization: Bearer "),
    _text("authorization-lowercase", "authorization: bearer PLANTopaque.bearer-123", "PLANTopaque.bearer-123", "authorization"),
    _text("authorization-basic", "Authorization: Basic UExBTlRiYXNpYzpwdw==", "UExBTlRiYXNpYzpwdw==", "Basic"),
    _text("authorization-in-json", '{"Authorization": "token PLANTjsonhdr123", "Accept": "json"}', "PLANTjsonhdr123", '"Accept": "json"'),
    _text("proxy-authorization", "Proxy-Authorization: Digest PLANTproxy0123", "PLANTproxy0123", "Proxy-Authorization"),
    _text("bare-bearer", "the client sent Bearer PLANTbare-98765 to the API", "PLANTbare-98765", "to the API"),
    _text("cookie-header", "Cookie: session=PLANTcookie1; theme=dark", "PLANTcookie1", "Cookie:"),
    # URLs
    _text("url-token-userinfo", "https://PLANTurltok9876@github.com/org/repo.git", "PLANTurltok9876", "@github.com/org/repo.git"),
    _text("url-user-password", "http://alice:PLANTurlpw12@mlflow.local:5000/x", "PLANTurlpw12", "alice"),
    _text("url-database", "postgresql://bob:PLANTdbpw55@db.local/runs", "PLANTdbpw55", "db.local/runs"),
    _text("url-empty-user", "redis://:PLANTredis77@cache:6379/0", "PLANTredis77", "cache:6379/0"),
    _text("url-password-with-at", "http://carol:PLANT@t@host:1/", "PLANT@t", "host:1/"),
    _text("query-token", "https://example.com/data.csv?token=PLANTqtok1&x=1", "PLANTqtok1", "x=1"),
    _text("query-api-key", "https://api.example.com/v1?api_key=PLANTqkey2", "PLANTqkey2", "api.example.com"),
    _text("query-access-token", "https://x.org/cb?state=ok&access_token=PLANTqacc3", "PLANTqacc3", "state=ok"),
    _text("query-aws-presigned", "https://b.s3.amazonaws.com/f?X-Amz-Signature=PLANTamz4a&X-Amz-Security-Token=PLANTamz4b",
          "PLANTamz4", "s3.amazonaws.com"),
    _text("query-azure-sas", "https://a.blob.core.windows.net/c?sv=2020-08-04&sig=PLANTsas5%2Bx", "PLANTsas5", "sv=2020-08-04"),
    # key=value in free text
    _text("assign-equals", "password=PLANTkv1", "PLANTkv1", "password="),
    _text("assign-yaml", "db_pass: PLANTkv2", "PLANTkv2", "db_pass"),
    _text("assign-json-spaces", '{"api_key": "PLANTkv3 with space", "lr": 0.1}', "PLANTkv3", '"lr": 0.1'),
    _text("assign-python-repr", "{'client_secret': 'PLANTkv4'}", "PLANTkv4", "client_secret"),
    _text("assign-inside-another-value", "generated: password=PLANTkv6", "PLANTkv6", "generated: password="),
    _text("assign-shell-export", "export MY_SERVICE_SECRET=PLANTkv5", "PLANTkv5", "export"),
    _text("cli-flag-space", "--api-key PLANTcli1 --lr 0.1", "PLANTcli1", "--lr 0.1"),
    _text("cli-flag-equals", "--password=PLANTcli2 --steps 3", "PLANTcli2", "--steps 3"),
    # tokens whose format names them
    _text("openai", "key sk-proj-PLANTopenai1x2y3z4w5v6u7t8s9r0 here", "sk-proj-PLANTopenai1x2y3z4w5v6u7t8s9r0", "here"),
    _text("anthropic", "sk-ant-api03-PLANTanthropic0123456789abcdef", "PLANTanthropic"),
    _text("github-classic", "ghp_PLANTgh00000000000000000000000000000", "PLANTgh"),
    _text("github-fine-grained", "github_pat_11PLANTfinegrained0123456789_abcdefghij", "PLANTfinegrained"),
    _text("gitlab", "glpat-PLANTgitlab012345678", "PLANTgitlab"),
    _text("aws-access-key-id", "id AKIAPLANTAWS00000001 here", "AKIAPLANTAWS00000001", "here"),
    _text("slack", "xoxb-123456789012-PLANTslack0123456", "PLANTslack"),
    _text("jwt", f"session {_JWT}", _JWT, "session"),
    _text("huggingface", "hf_PLANThuggingface0123456789abcdefgh", "PLANThuggingface"),
    _text("stripe", "sk_live_PLANTstripe0123456789ab", "PLANTstripe"),
    _text("google-api-key", "AIzaSyPLANTgoogle0123456789abcdefghijkl", "PLANTgoogle"),
    _text("databricks", "dapi0f1e2d3c4b5a69788796a5b4c3d2e1f0", "0f1e2d3c4b5a69788796a5b4c3d2e1f0"),
    _text("npm", "npm_PLANTnpm0123456789abcdefghijklmnopqr", "PLANTnpm"),
    _text("pypi", "pypi-AgEIcHlwaS5vcmcPLANTpypi0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH", "PLANTpypi"),
    _text("sendgrid", "SG.PLANTsendgrid012345678.PLANTsendgridSecret0123456789abcdefghijklmn", "PLANTsendgrid"),
    _text("telegram", "bot 123456789:AAPLANTtelegram0123456789abcdefghij", "PLANTtelegram", "bot"),
    _text("private-key-block", f"-----BEGIN RSA PRIVATE KEY-----\n{_PEM}\n-----END RSA PRIVATE KEY----- done", _PEM, "done"),
    # environment variables whose values show up in a logged string
    *[Shape(f"env-{name}", "env", f"PLANTenv{n}x{name[:3]}42", name)
      for n, name in enumerate(["OPENAI_API_KEY", "GITHUB_TOKEN", "AWS_SESSION_TOKEN", "DATABRICKS_TOKEN", "HF_TOKEN",
                                "MYAPP_TOKEN", "MYAPP_KEY", "MYAPP_SECRET", "MYAPP_PASSWORD"])],
    # keys that name a secret
    *[Shape(f"key-{key}", "key", f"PLANTkey{n}v", key)
      for n, key in enumerate(["auth", "secretkey", "ssh_key", "openai_key", "cookie", "jwt", "db_pass", "passwd",
                               "credential", "credentials", "x-api-key", "Authorization", "apiKey", "sshKey",
                               "wandb.api_key", "session_token"])],
]  # fmt: skip

NOT_SECRETS = [
    "ssh://git@github.com/org/repo", "git@github.com:org/repo.git", "https://host/path?page=2&sort=asc",
    "max_tokens=100 tokenizer: bpe", "Basic setup finished", "the bearer of the message", "author: Jane",
    "commit 3f786850e387550fdab836ed7e6dc881de23001b", "run 7d2a9c1e0b4f4e6a8c3d5f7a9b1c3e5d",
    "runs/demo/checkpoints/step-00000500.pt", "key: value", "monkey=3", "sk-1", "http://127.0.0.1:5000/#/experiments/1",
]  # fmt: skip
ORDINARY_KEYS = ["tokenizer", "max_tokens", "monkey", "pass_rate", "primary_key", "keys", "author", "num_passes",
                 "tokens_per_s", "sort_key", "authority"]  # fmt: skip


def _logged_string(shape: Shape) -> str:
    """The string a user would log that carries ``shape``'s secret."""
    if shape.kind == "env":
        return f"uses {shape.secret} here"
    if shape.kind == "key":
        return f"{shape.value}={shape.secret}"
    return shape.value


def test_the_table_has_at_least_40_shapes() -> None:
    assert len(SHAPES) >= 40 and len({s.id for s in SHAPES}) == len(SHAPES)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.id)
def test_each_shape_is_masked_where_it_is_logged(shape: Shape, monkeypatch: pytest.MonkeyPatch) -> None:
    if shape.kind == "env":
        monkeypatch.setenv(shape.value, shape.secret)
    out = redact_text(_logged_string(shape))
    assert shape.secret not in out and REDACTED in out
    assert shape.kept in out
    if shape.kind == "key":
        assert is_secret_key(shape.value)
        assert redact_params({shape.value: shape.secret}) == {shape.value: REDACTED}
    else:
        assert redact_params({"note": _logged_string(shape)}) == {"note": out}


@pytest.mark.parametrize("text", NOT_SECRETS)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact_text(text, secrets=()) == text


@pytest.mark.parametrize("key", ORDINARY_KEYS)
def test_ordinary_keys_are_not_secret(key: str) -> None:
    assert not is_secret_key(key)


def test_booleans_under_secret_keys_stay_readable() -> None:
    assert redact_params({"use_auth_token": True, "api_key": None, "password": 1234}) == {
        "use_auth_token": True, "api_key": None, "password": REDACTED}  # fmt: skip


def test_short_suffix_env_values_do_not_blank_ordinary_words(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SORT_KEY", "name")
    monkeypatch.setenv("CACHE_KEY", "default")
    assert redact_text("name and default") == "name and default"


# -- end to end: every backend on, every file read as bytes ----------------------------------
PLANT_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from codex_ml.tracking import start_run
    from codex_ml.rundir.sink import Sink

    shapes = json.load(open(sys.argv[2]))

    class Leaky(Sink):
        name = "leaky"
        def start(self, run):
            raise RuntimeError("could not connect:\\n" + "\\n".join(s["logged"] for s in shapes))

    params, tags = {}, {}
    for n, s in enumerate(shapes):
        key = s["value"] if s["kind"] == "key" else "note"
        params[f"s{n}.{key}"] = s["secret"] if s["kind"] == "key" else s["logged"]
        tags[f"t{n}_{key}"] = params[f"s{n}.{key}"]
    with start_run("secret", output_root=sys.argv[1], params=params, tags=tags, enable_tensorboard=True,
                   enable_mlflow=True, enable_wandb=True, sinks=[Leaky()], sink_max_failures=1) as run:
        for n, s in enumerate(shapes):
            run.log_text(f"sample{n}", "generated: " + s["logged"], step=n)
            run.log_metrics({"train/loss": 1.0 / (n + 1)}, step=n)
    """
)


def test_planted_shapes_reach_no_file_of_any_backend(tmp_path: Path) -> None:
    shapes = [{"kind": s.kind, "value": s.value, "secret": s.secret, "logged": _logged_string(s)} for s in SHAPES]
    (tmp_path / "shapes.json").write_text(json.dumps(shapes))
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           **{s.value: s.secret for s in SHAPES if s.kind == "env"}}  # fmt: skip
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run([sys.executable, "-c", PLANT_SCRIPT, str(tmp_path / "runs"), str(tmp_path / "shapes.json")],
                          capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    run_dir = tmp_path / "runs" / "secret"
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    # Every backend wrote something, and the planted error was recorded, so the grep covers them all.
    assert any("tensorboard" in p.parts for p in files) and any("mlruns" in p.parts for p in files)
    assert any(p.suffix == ".wandb" for p in files)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert any(e["sink"] == "leaky" and "could not connect" in e["error"] for e in summary["errors"])
    assert "[monitoring-error] leaky" in done.stderr
    contents = {p: p.read_bytes() for p in files}
    leaks = sorted({(s.id, str(p.relative_to(run_dir))) for s in SHAPES for p, data in contents.items()
                    if s.secret.encode() in data})  # fmt: skip
    assert leaks == []
    output = done.stdout + done.stderr
    assert [s.id for s in SHAPES if s.secret in output] == []
    # What is not secret is still there.
    assert "to the API" in (run_dir / "params.json").read_text()
