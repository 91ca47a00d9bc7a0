"""Tests for codex_ml.training.checkpoints: round trips, atomicity, pruning, RNG, model mismatch."""

from __future__ import annotations

import dataclasses
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from codex_ml.errors import CodexMLError
from codex_ml.models.transformer import GPT, GPTConfig
from codex_ml.training.checkpoints import (
    BEST_NAME,
    LATEST_NAME,
    CheckpointError,
    capture_rng_state,
    find_latest_checkpoint,
    list_step_checkpoints,
    load_checkpoint,
    load_model_state,
    restore_rng_state,
    save_checkpoint,
)

SRC = Path(__file__).resolve().parents[2] / "src"


def _tiny_gpt(n_embd: int = 16, seed: int = 0) -> GPT:
    """A one-layer GPT small enough to save in milliseconds."""
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=32, block_size=8, n_layer=1, n_head=2, n_embd=n_embd))


def _files(folder: Path) -> list[str]:
    """Names in ``folder``, sorted."""
    return sorted(p.name for p in folder.iterdir())


def _train_steps(model: GPT, opt: torch.optim.Optimizer, steps: int) -> None:
    """A few AdamW updates on random batches drawn from torch's global RNG."""
    for _ in range(steps):
        idx = torch.randint(0, 32, (2, 8))
        _, loss = model(idx, idx)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_round_trip_of_a_training_state(tmp_path: Path) -> None:
    model = _tiny_gpt()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    _train_steps(model, opt, 1)
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "config": model.config,
             "rng": capture_rng_state(), "step": 7, "best_val": np.float32(1.25),
             "data": Path("x.txt")}
    path = save_checkpoint(tmp_path, state, step=7)
    assert path == tmp_path / "step-00000007.pt"
    assert _files(tmp_path) == [LATEST_NAME, "step-00000007.pt"]
    for source in (path, tmp_path, tmp_path / LATEST_NAME):
        loaded = load_checkpoint(source)
        assert loaded["step"] == 7 and loaded["best_val"] == 1.25 and loaded["data"] == "x.txt"
        assert loaded["config"] == dataclasses.asdict(model.config)  # dataclass stored as a dict
        for key, value in model.state_dict().items():
            assert torch.equal(loaded["model"][key], value)
        assert loaded["optimizer"]["param_groups"][0]["lr"] == 1e-2


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path: Path) -> None:
    straight = _tiny_gpt()
    straight_opt = torch.optim.AdamW(straight.parameters(), lr=1e-2)
    torch.manual_seed(1)
    _train_steps(straight, straight_opt, 4)

    first = _tiny_gpt()
    first_opt = torch.optim.AdamW(first.parameters(), lr=1e-2)
    torch.manual_seed(1)
    _train_steps(first, first_opt, 2)
    save_checkpoint(tmp_path, {"model": first.state_dict(), "optimizer": first_opt.state_dict(),
                               "rng": capture_rng_state()}, step=2)
    torch.manual_seed(999)  # the resumed process starts from some other RNG state

    state = load_checkpoint(tmp_path)
    resumed = _tiny_gpt(seed=5)
    load_model_state(resumed, state["model"], "test checkpoint")
    resumed_opt = torch.optim.AdamW(resumed.parameters(), lr=1e-2)
    resumed_opt.load_state_dict(state["optimizer"])
    restore_rng_state(state["rng"])
    _train_steps(resumed, resumed_opt, 2)
    for key, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key


def _draws() -> tuple[object, ...]:
    """A few draws from every global RNG the checkpoint captures."""
    return random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), torch.rand(3).tolist()


def test_rng_restore_reproduces_the_same_draws(tmp_path: Path) -> None:
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    save_checkpoint(tmp_path, {"rng": capture_rng_state()}, step=1)
    first = _draws()
    random.seed(42)
    np.random.seed(42)
    torch.manual_seed(42)
    restore_rng_state(load_checkpoint(tmp_path)["rng"])
    again = _draws()
    assert again == first


def test_restore_rejects_an_invalid_rng_state() -> None:
    with pytest.raises(CheckpointError, match="invalid RNG state"):
        restore_rng_state({"python": (3, (1, 2), None)})


def test_latest_best_and_pruning(tmp_path: Path) -> None:
    for step in range(1, 7):
        save_checkpoint(tmp_path, {"step": step}, step=step * 10, is_best=step == 2, keep_last=3)
    # Newest three kept, plus the step-20 file best.pt shares (hard link).
    assert [s for s, _ in list_step_checkpoints(tmp_path)] == [20, 40, 50, 60]
    assert load_checkpoint(tmp_path / LATEST_NAME)["step"] == 6
    assert load_checkpoint(tmp_path / BEST_NAME)["step"] == 2
    assert find_latest_checkpoint(tmp_path) == tmp_path / LATEST_NAME
    assert not [n for n in _files(tmp_path) if n.endswith(".tmp")]


def test_latest_and_best_stay_valid_after_their_step_file_is_deleted(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, {"v": 1}, step=1, is_best=True)
    (tmp_path / "step-00000001.pt").unlink()
    assert load_checkpoint(tmp_path / LATEST_NAME) == {"v": 1}
    assert load_checkpoint(tmp_path / BEST_NAME) == {"v": 1}


def test_keep_last_none_keeps_everything_and_bad_arguments_are_refused(tmp_path: Path) -> None:
    for step in range(5):
        save_checkpoint(tmp_path, {}, step=step, keep_last=None)
    assert len(list_step_checkpoints(tmp_path)) == 5
    with pytest.raises(CheckpointError, match="keep_last must be at least 1"):
        save_checkpoint(tmp_path, {}, step=9, keep_last=0)
    with pytest.raises(CheckpointError, match="non-negative int"):
        save_checkpoint(tmp_path, {}, step=-1)


def test_find_latest_without_latest_link_uses_the_highest_step(tmp_path: Path) -> None:
    assert find_latest_checkpoint(tmp_path / "missing") is None
    assert find_latest_checkpoint(tmp_path) is None
    for step in (3, 12, 5):
        save_checkpoint(tmp_path, {"s": step}, step=step, keep_last=None)
    (tmp_path / LATEST_NAME).unlink()
    assert find_latest_checkpoint(tmp_path) == tmp_path / "step-00000012.pt"
    assert load_checkpoint(tmp_path) == {"s": 12}


def test_unsupported_objects_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, {"v": 1}, step=1)
    with pytest.raises(CheckpointError, match=r"state\['extra'\]\[0\] \(a builtins.object\)"):
        save_checkpoint(tmp_path, {"extra": [object()]}, step=2)
    with pytest.raises(CheckpointError, match="numpy array"):
        save_checkpoint(tmp_path, {"arr": np.zeros(3)}, step=2)
    assert _files(tmp_path) == [LATEST_NAME, "step-00000001.pt"]


def test_config_objects_are_stored_as_plain_containers(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"lr": 0.1, "model": {"sizes": [1, 2, "${lr}"]}})
    save_checkpoint(tmp_path, {"cfg": cfg, "pair": (1, [2, 3])}, step=1)
    loaded = load_checkpoint(tmp_path)
    assert loaded == {"cfg": {"lr": 0.1, "model": {"sizes": [1, 2, 0.1]}}, "pair": (1, [2, 3])}
    assert type(loaded["cfg"]) is dict and type(loaded["cfg"]["model"]["sizes"]) is list


class _ExplodingTensor(torch.Tensor):
    """A tensor whose pickling fails, to break ``torch.save`` after it has started writing."""

    def __reduce_ex__(self, protocol: object) -> object:
        raise RuntimeError("boom while pickling")


def test_failure_mid_write_keeps_previous_files_and_leaves_no_temp_file(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, {"v": 1}, step=1, is_best=True)
    before = _files(tmp_path)
    bad = {"weights": torch.zeros(1000), "bad": torch.zeros(4).as_subclass(_ExplodingTensor)}
    with pytest.raises(CheckpointError, match="boom while pickling.*checkpoints .* unchanged"):
        save_checkpoint(tmp_path, bad, step=2, is_best=True)
    assert _files(tmp_path) == before
    assert load_checkpoint(tmp_path) == {"v": 1}
    assert load_checkpoint(tmp_path / BEST_NAME) == {"v": 1}


def test_disk_full_mid_write_raises_checkpoint_error_and_keeps_previous(tmp_path: Path) -> None:
    """A real write failure: the file-size limit makes write() fail (EFBIG) mid-checkpoint."""
    script = textwrap.dedent(f"""
        import resource, signal, torch
        from codex_ml.training.checkpoints import CheckpointError, save_checkpoint
        save_checkpoint({str(tmp_path)!r}, {{"v": torch.ones(10)}}, step=1)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
        try:
            save_checkpoint({str(tmp_path)!r}, {{"v": torch.ones(1_000_000)}}, step=2)
        except CheckpointError as err:
            print("ERROR:", err)
    """)
    path = os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "step-00000002.pt: cannot write the checkpoint (File too large)" in done.stdout
    assert _files(tmp_path) == [LATEST_NAME, "step-00000001.pt"]
    assert torch.equal(load_checkpoint(tmp_path)["v"], torch.ones(10))


def test_missing_and_empty_locations_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nope\.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="no checkpoint in this directory"):
        load_checkpoint(tmp_path)
    assert issubclass(CheckpointError, CodexMLError)


def test_truncated_checkpoint_is_named_with_the_earlier_ones(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, {"w": torch.ones(1000)}, step=1)
    path = save_checkpoint(tmp_path, {"w": torch.ones(1000)}, step=2)
    data = path.read_bytes()
    (tmp_path / LATEST_NAME).unlink()  # the hard link would otherwise keep the full data
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"step-00000002\.pt: corrupt: truncated") as info:
        load_checkpoint(tmp_path)
    assert "step-00000001.pt" in str(info.value)


def test_files_that_are_not_our_checkpoints_are_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.pt"
    text.write_text("hello, not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt: neither a zip archive"):
        load_checkpoint(text)
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": {"w": torch.ones(2)}}, foreign)
    with pytest.raises(CheckpointError, match="not a codex_ml checkpoint"):
        load_checkpoint(foreign)


@dataclasses.dataclass
class _Pickled:
    """An object only full unpickling can rebuild."""

    x: int = 1


def test_arbitrary_objects_load_only_when_trusted(tmp_path: Path) -> None:
    path = tmp_path / "old.pt"
    torch.save({"codex_ml_checkpoint": 1, "step": 1, "state": {"obj": _Pickled()}}, path)
    with pytest.raises(CheckpointError, match="trusted=True"):
        load_checkpoint(path)
    assert load_checkpoint(path, trusted=True) == {"obj": _Pickled()}


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_are_called_corrupt_never_unpickled(tmp_path: Path, seed: int) -> None:
    """Random bytes fail the weights-only unpickler like a file holding objects would; they must be
    called corrupt, with no advice to load them trusted, and trusted=True must not unpickle them."""
    path = tmp_path / "latest.pt"
    path.write_bytes(random.Random(seed).randbytes(4096))
    for trusted in (False, True):
        with pytest.raises(CheckpointError, match=r"latest\.pt: corrupt") as info:
            load_checkpoint(path, trusted=trusted)
        assert "trusted" not in str(info.value) and "weights_only" not in str(info.value)


def test_damaged_archive_is_corrupt_and_an_intact_one_with_objects_is_not(tmp_path: Path) -> None:
    """A zip whose pickle is damaged is corrupt; the same objects intact get the trusted=True advice,
    in both torch formats (zip and legacy)."""
    payload = {"codex_ml_checkpoint": 1, "step": 1, "state": {"obj": _Pickled()}}
    intact, legacy = tmp_path / "intact.pt", tmp_path / "legacy.pt"
    torch.save(payload, intact)
    torch.save(payload, legacy, _use_new_zipfile_serialization=False)
    for path in (intact, legacy):
        with pytest.raises(CheckpointError, match=r"holds Python objects.*intact.*trusted=True"):
            load_checkpoint(path)
    data = bytearray(intact.read_bytes())
    data[data.index(b"_Pickled") + 2] ^= 0xFF  # a flipped byte inside data.pkl: the zip CRC no longer matches
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(bytes(data))
    for trusted in (False, True):
        with pytest.raises(CheckpointError, match=r"damaged\.pt: corrupt: the zip member .*data\.pkl fails its CRC"):
            load_checkpoint(damaged, trusted=trusted)


def test_truncated_latest_names_no_hard_link_of_itself(tmp_path: Path) -> None:
    """latest.pt truncated in place truncates its step file too (a hard link): the message says so
    and offers only the checkpoints that are really other files."""
    for step in (1, 2):
        save_checkpoint(tmp_path, {"w": torch.ones(1000)}, step=step)
    with open(tmp_path / LATEST_NAME, "r+b") as f:
        f.truncate(500)
    with pytest.raises(CheckpointError, match=r"latest\.pt: corrupt: truncated") as info:
        load_checkpoint(tmp_path / LATEST_NAME)
    message = str(info.value)
    assert "step-00000002.pt is the same file" in message
    assert message.endswith("other checkpoints there: step-00000001.pt")


def test_load_newest_checkpoint_walks_back_past_corrupt_files(tmp_path: Path) -> None:
    """latest.pt corrupt (with its hard-linked step file) and a bit flip in the next one: the newest
    intact file loads, and each skipped file is named with why."""
    from codex_ml.training.checkpoints import load_newest_checkpoint

    for step in (1, 2, 3):
        save_checkpoint(tmp_path, {"w": torch.full((1000,), float(step))}, step=step)
    with open(tmp_path / LATEST_NAME, "r+b") as f:
        f.truncate(500)
    flipped = bytearray((tmp_path / "step-00000002.pt").read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF  # torch would load this as wrong weights; the CRC check does not
    (tmp_path / "step-00000002.pt").write_bytes(bytes(flipped))
    path, state, skipped = load_newest_checkpoint(tmp_path)
    assert path.name == "step-00000001.pt" and torch.equal(state["w"], torch.full((1000,), 1.0))
    assert skipped[0].startswith("latest.pt (corrupt: truncated")
    assert skipped[1] == "step-00000003.pt (the same file as latest.pt)"
    assert skipped[2].startswith("step-00000002.pt (corrupt: the zip member") and "CRC" in skipped[2]
    (tmp_path / "step-00000001.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match=r"no checkpoint there loads: latest\.pt .*step-00000001\.pt \(corrupt"):
        load_newest_checkpoint(tmp_path)


def test_model_shape_mismatch_lists_each_key_with_both_shapes() -> None:
    small, big = _tiny_gpt(n_embd=16), _tiny_gpt(n_embd=32)
    with pytest.raises(CheckpointError) as info:
        load_model_state(big, small.state_dict(), "runs/x/latest.pt")
    message = str(info.value)
    assert message.startswith("runs/x/latest.pt: checkpoint from a different model shape")
    assert "blocks.0.attn.c_attn.weight (48, 16) vs (96, 32)" in message
    assert "wte.weight (32, 16) vs (32, 32)" in message


def test_missing_and_unexpected_keys_are_listed() -> None:
    model = _tiny_gpt()
    state = dict(model.state_dict())
    state.pop("ln_f.weight")
    state["extra.weight"] = torch.zeros(2, 3)
    with pytest.raises(CheckpointError) as info:
        load_model_state(model, state, "ckpt")
    message = str(info.value)
    assert "ln_f.weight missing from the checkpoint (model (16,))" in message
    assert "extra.weight (2, 3) not in the model" in message


def test_compiled_model_prefix_is_accepted() -> None:
    source, target = _tiny_gpt(seed=1), _tiny_gpt(seed=2)
    compiled_keys = {f"_orig_mod.{k}": v for k, v in source.state_dict().items()}
    load_model_state(target, compiled_keys, "ckpt")
    assert torch.equal(target.wte.weight, source.wte.weight)


@pytest.mark.gpu
def test_cuda_rng_state_round_trips(tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA (torch here is a CPU build or no GPU is visible)")
    torch.cuda.manual_seed_all(5)
    save_checkpoint(tmp_path, {"rng": capture_rng_state()}, step=1)
    first = torch.rand(4, device="cuda").tolist()
    torch.cuda.manual_seed_all(6)
    state = load_checkpoint(tmp_path, map_location="cuda")  # RNG tensors land on the GPU
    restore_rng_state(state["rng"])
    assert torch.rand(4, device="cuda").tolist() == first
