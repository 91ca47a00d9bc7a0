"""checkpoint_integrity.damage: why a file is not an intact torch.save file, without unpickling it."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from codex_ml.training.checkpoint_integrity import damage


def test_an_intact_checkpoint_has_no_damage(tmp_path: Path) -> None:
    path = tmp_path / "ok.pt"
    torch.save({"step": 3, "w": torch.zeros(2)}, path)
    assert damage(path) is None


def test_a_zip_whose_pickle_is_cut_short_is_unreadable(tmp_path: Path) -> None:
    # Every CRC is right (zipfile writes them), but data.pkl stops mid-pickle: only parsing finds it.
    path = tmp_path / "cut.pt"
    whole = pickle.dumps({"step": 3, "name": "x" * 50}, protocol=2)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", whole[: len(whole) // 2])
    assert damage(path).startswith("unreadable (")


def test_a_legacy_file_cut_after_its_magic_number_is_unreadable(tmp_path: Path) -> None:
    from torch.serialization import MAGIC_NUMBER

    path = tmp_path / "legacy.pt"
    path.write_bytes(pickle.dumps(MAGIC_NUMBER, protocol=2) + pickle.dumps(1001, protocol=2)[:3])
    assert damage(path).startswith("unreadable (")


def test_random_bytes_are_not_a_torch_file(tmp_path: Path) -> None:
    path = tmp_path / "noise.pt"
    path.write_bytes(bytes(range(7, 250)))
    assert damage(path) == "neither a zip archive (torch.save's format) nor a legacy torch file"


def _damaged_copy(tmp_path: Path, name: str, change) -> Path:
    """A real torch.save file with ``change(bytearray)`` applied to its bytes."""
    import io

    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(4)}, buffer)
    raw = bytearray(buffer.getvalue())
    change(raw)
    path = tmp_path / name
    path.write_bytes(bytes(raw))
    return path


def _central_entries(raw: bytearray) -> list[int]:
    found, at = [], raw.find(b"PK\x01\x02")
    while at >= 0:
        found.append(at)
        at = raw.find(b"PK\x01\x02", at + 4)
    return found


def test_every_kind_of_zip_damage_is_named_unreadable(tmp_path: Path) -> None:
    """One file per exception damage() catches: each becomes an 'unreadable (...)' answer, never a crash."""
    import struct

    def bad_directory(raw: bytearray) -> None:  # zipfile.BadZipFile
        at = _central_entries(raw)[0]
        raw[at:at + 4] = b"PK\x09\x09"

    def unknown_method(raw: bytearray) -> None:  # NotImplementedError
        struct.pack_into("<H", raw, _central_entries(raw)[0] + 10, 99)

    def size_past_the_end(raw: bytearray) -> None:  # EOFError
        at = _central_entries(raw)[-1]
        struct.pack_into("<II", raw, at + 20, 10**7, 10**7)

    expected = {"dir": "BadZipFile", "method": "NotImplementedError", "size": "EOFError"}
    for name, change in (("dir", bad_directory), ("method", unknown_method), ("size", size_past_the_end)):
        answer = damage(_damaged_copy(tmp_path, f"{name}.pt", change))
        assert answer.startswith("unreadable (") and expected[name] in answer, (name, answer)
    assert damage(tmp_path).startswith("unreadable (")  # OSError: a directory is not a readable file
