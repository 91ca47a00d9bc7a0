"""One rule says whether a word is a ``key=value`` override: the shared tracking flags, the Hydra
CLI and ``train-model`` all use ``codex_ml.config_schema.is_override`` and so always agree on
whether ``--system-metrics WORD`` is a path or a bare flag followed by an override."""

from __future__ import annotations

import pytest

from codex_ml.cli.main import split_tracking_flags
from codex_ml.cli.train_command import split_override_from_flag
from codex_ml.config_schema import is_override
from codex_ml.tracking.config import TrackingConfig
from codex_ml.tracking.flags import fill_optional_values

WORDS = {
    "training.max_steps=5": True,
    "+extra.key=1": True,
    "~training.seed=": True,
    "hydra/launcher=basic": True,
    "training@_global_=tiny": True,
    "data.val-fraction=0.1": True,
    "out/system.jsonl": False,
    "metrics.jsonl": False,
    "1st=2": False,
    "=value": False,
}


@pytest.mark.parametrize(("word", "expected"), WORDS.items())
def test_every_entry_point_reads_a_word_the_same_way(word: str, expected: bool) -> None:
    assert is_override(word) is expected
    # argparse tools (tracking/flags.py): a bare flag gets its default value before an override
    assert (fill_optional_values(["--system-metrics", word]) == ["--system-metrics", "AUTO", word]) is expected
    # train-model (Typer took the word as the flag's value)
    tracking, overrides = split_override_from_flag(TrackingConfig(system_metrics=word), [])
    assert (overrides == [word] and tracking.system_metrics == "AUTO") is expected
    # the Hydra CLI
    tracking, rest = split_tracking_flags(["--system-metrics", word])
    assert (tracking.system_metrics == "AUTO") is expected, (tracking.system_metrics, rest)
