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
