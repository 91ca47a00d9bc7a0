"""Tests for codex_ml.backends.names: keys mapped to names MLflow's own validators accept."""

from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException
from mlflow.utils.validation import _validate_metric_name, _validate_param_name

from codex_ml.backends.names import MLFLOW_MAX_KEY, KeyMapper, mlflow_name

LEGAL = ["loss", "train/loss", "eval/acc_1", "lr-0.1", "a b:c", "x.y_z", "k" * 250]
ILLEGAL = [
    "a@b", "x(y)", "../up", "/lead", "k" * 300, "a//b", "a/./b", "a/", ".", "..", "tr~ain/loß",
    "a/../b", "é" * 260, "q?=1&r=2", "tab\there", "a/" + "b" * 260,
]
#: MLflow refuses every name that *starts with* "..", not only a ".." segment.
LEADING_DOTS = ["...", "..hidden", "..a/b", "." * 300]


def _mlflow_accepts(name: str) -> bool:
    try:
        _validate_metric_name(name)
        _validate_param_name(name)
    except MlflowException:
        return False
    return len(name) <= MLFLOW_MAX_KEY


@pytest.mark.parametrize("key", ILLEGAL, ids=lambda k: ascii(k)[:24])
def test_illegal_keys_are_rejected_by_mlflow_and_mapped_to_accepted_names(key: str) -> None:
    # The premise: MLflow refuses the raw key (as a metric/param name, or by length).
    assert not _mlflow_accepts(key)
    name = mlflow_name(key)
    assert _mlflow_accepts(name), name
    assert mlflow_name(key) == name  # deterministic


@pytest.mark.parametrize("key", LEGAL, ids=lambda k: ascii(k)[:24])
def test_legal_keys_are_kept_verbatim(key: str) -> None:
    assert _mlflow_accepts(key)
    assert mlflow_name(key) == key


@pytest.mark.parametrize("key", LEADING_DOTS, ids=lambda k: ascii(k)[:24])
def test_keys_starting_with_two_dots_are_mapped_to_accepted_names(key: str) -> None:
    assert not _mlflow_accepts(key)
    assert _mlflow_accepts(mlflow_name(key)), mlflow_name(key)


def test_non_ascii_keys_become_deterministic_ascii_names() -> None:
    # MLflow's own regex accepts Unicode word characters on Linux; codex_ml maps to ASCII so
    # the names work on every store and OS. The mapping must still be legal and stable.
    for key in ["λ", "loss/λ", "日本語"]:
        name = mlflow_name(key)
        assert name.isascii() and _mlflow_accepts(name)
        assert mlflow_name(key) == name


def test_specific_mappings() -> None:
    assert mlflow_name("a@b") == "a_b"
    assert mlflow_name("x(y)") == "x_y_"
    assert mlflow_name("../up") == "__/up"
    assert mlflow_name("/lead") == "_/lead"
    assert mlflow_name("λ") == "_"


def test_long_keys_keep_a_prefix_and_differ_by_hash() -> None:
    first, second = "k" * 300, "k" * 299 + "j"
    a, b = mlflow_name(first), mlflow_name(second)
    assert len(a) == len(b) == MLFLOW_MAX_KEY
    assert a.startswith("k" * 200) and b.startswith("k" * 200)
    assert a != b
    assert mlflow_name("k" * MLFLOW_MAX_KEY) == "k" * MLFLOW_MAX_KEY  # exactly at the limit: kept


def test_key_mapper_resolves_a_collision_with_one_warning() -> None:
    warnings: list[str] = []
    mapper = KeyMapper(mlflow_name, warnings.append)
    first = mapper("a@b")
    second = mapper("a#b")  # maps to the same "a_b"
    third = mapper("a_b")  # and so does the legal key itself
    assert first == "a_b"
    assert len({first, second, third}) == 3
    assert all(_mlflow_accepts(n) for n in (first, second, third))
    # Stable for the life of the mapper: asking again gives the same names, no new warnings.
    assert [mapper("a@b"), mapper("a#b"), mapper("a_b")] == [first, second, third]
    assert len(warnings) == 2
    assert "'a@b'" in warnings[0] and "'a#b'" in warnings[0]


def test_key_mapper_single_collision_warns_once() -> None:
    warnings: list[str] = []
    mapper = KeyMapper(mlflow_name, warnings.append)
    names = {mapper(k) for k in ["loss", "x(y)", "x)y(", "loss", "x(y)", "x)y("]}
    assert len(names) == 3
    assert len(warnings) == 1


def test_key_mapper_hashed_name_of_a_long_key_stays_within_the_limit() -> None:
    warnings: list[str] = []
    mapper = KeyMapper(mlflow_name, warnings.append)
    # Both are over the limit and share their first 241 characters; the hash is of the raw key.
    long_a = "m" * 241 + "@" * 20
    long_b = "m" * 241 + "#" * 20
    a, b = mapper(long_a), mapper(long_b)
    assert a != b
    assert len(a) <= MLFLOW_MAX_KEY and len(b) <= MLFLOW_MAX_KEY
    assert warnings == []  # distinct digests: not a collision
