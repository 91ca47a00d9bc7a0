"""Reading a W&B offline run file (``run-<id>.wandb``) with W&B's own record protobufs.

The file is W&B's 7-byte header (``:W&B``, magic 0xBEE1, version 0) followed by a LevelDB
log: 32 KiB blocks of chunks, each ``crc32c(4) length(2, little-endian) type(1)`` plus
payload, with types FULL=1, FIRST=2, MIDDLE=3, LAST=4. Each whole payload is a
``wandb_internal_pb2.Record``. Used by tests and by replay to read what W&B stored.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def iter_payloads(path: str | os.PathLike[str]) -> Iterator[bytes]:
    """Yield every complete record payload in the file (a torn tail is ignored)."""
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B run file (missing ':W&B' header)")
    pos, parts = HEADER, []
    while pos + HEADER <= len(data):
        room = BLOCK - pos % BLOCK
        if room < HEADER:  # block trailer padding
            pos += room
            continue
        length, kind = struct.unpack_from("<HB", data, pos + 4)
        payload = data[pos + HEADER : pos + HEADER + length]
        if kind == 0 and length == 0:  # zero padding
            pos += room
            continue
        pos += HEADER + length
        if kind == FULL:
            yield payload
        elif kind == FIRST:
            parts = [payload]
        elif kind == MIDDLE:
            parts.append(payload)
        elif kind == LAST:
            parts.append(payload)
            yield b"".join(parts)
            parts = []


def read_history(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The ``run.log`` rows of a .wandb file, as dicts of decoded JSON values."""
    from wandb.proto import wandb_internal_pb2

    rows = []
    for payload in iter_payloads(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        if record.WhichOneof("record_type") == "history":
            rows.append({_key(item): json.loads(item.value_json) for item in record.history.item})
    return rows


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The run config as W&B stored it (last update wins)."""
    from wandb.proto import wandb_internal_pb2

    config: dict[str, Any] = {}
    for payload in iter_payloads(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "config":
            for item in record.config.update:
                config[_key(item)] = json.loads(item.value_json)
        elif kind == "run" and record.run.HasField("config"):
            for item in record.run.config.update:
                config[_key(item)] = json.loads(item.value_json)
    return config


def find_run_files(run_dir: str | os.PathLike[str]) -> list[Path]:
    """All ``run-*.wandb`` files under a codex_ml run directory, oldest first."""
    return sorted(Path(run_dir).glob("wandb/*run-*/run-*.wandb"), key=lambda p: p.stat().st_mtime)


def _key(item: Any) -> str:
    return item.key if item.key else "/".join(item.nested_key)
