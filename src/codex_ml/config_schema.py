"""What the config modules share: dataclass schemas filled from mappings, overrides, YAML files.

:mod:`codex_ml.training.config` and :mod:`codex_ml.pipeline.config` each own their schema, their
error class and their message formats; the machinery under them lives here. Checks append to a
``problems`` list instead of raising, so a config with five mistakes is reported once, not over
five runs; each problem names its key by dotted path (``model.n_layer``).

Neither yaml nor omegaconf is imported at import time: ``import codex_ml`` stays light.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from codex_ml.errors import CodexMLError

__all__ = [
    "YamlFileError", "build_dataclass", "check_mapping", "coerce", "copy_tree", "delete_dotted", "describe",
    "dotted", "merge_tree", "parse_value", "read_yaml_file", "set_dotted", "split_override",
]  # fmt: skip

T = TypeVar("T")


def dotted(path: str, key: Any) -> str:
    """``key`` under ``path`` as problems name it: ``dotted("", "seed")`` is ``seed``, else ``path.key``."""
    return f"{path}.{key}" if path else f"{key}"


# -- values against type hints -------------------------------------------------------------------


def coerce(value: Any, hint: Any, *, numeric_strings: bool = False) -> tuple[bool, Any]:
    """``(True, converted)`` if ``value`` fits type hint ``hint``, else ``(False, None)``.

    Understands ``Literal``, ``X | None`` (any union), bool, int, float and str; an int is
    accepted (and converted) for a float. With ``numeric_strings`` a string that parses as a
    float is one too. Lists and other hints are accepted as given: their dataclass normalises
    them (``TrackingConfig.extra_sinks`` takes one string as one name).
    """
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            ok, converted = coerce(value, option, numeric_strings=numeric_strings)
            if ok:
                return True, converted
        return False, None
    if hint is float:
        return _coerce_float(value, numeric_strings)
    if origin is Literal:
        ok = value in typing.get_args(hint)
    elif hint is type(None):
        ok = value is None
    elif hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:  # a bool is an int subclass, but `max_steps: true` is a typo, not a number
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is str:
        ok = isinstance(value, str)
    else:
        ok = True
    return (True, value) if ok else (False, None)


def _coerce_float(value: Any, numeric_strings: bool) -> tuple[bool, Any]:
    if numeric_strings and isinstance(value, str):
        try:  # PyYAML's safe loader reads 1e-3 (no dot) as a string; it is still clearly a number
            return True, float(value)
        except ValueError:
            return False, None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return ok, float(value) if ok else None


def describe(hint: Any) -> str:
    """A type hint as problems spell it: ``int``, ``str or null``, ``one of 'char', 'bpe'``."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if typing.get_args(hint):
        return " or ".join(describe(a) for a in typing.get_args(hint))
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


# -- mappings into dataclasses -------------------------------------------------------------------


def check_mapping(data: Mapping[Any, Any], hints: Mapping[str, Any], path: str, problems: list[str], *,
                  numeric_strings: bool = False) -> dict[str, Any]:
    """The values of ``data`` converted to ``hints``; every unknown key or misfit adds a problem.

    Problems follow ``data``'s order and name keys under ``path``. A misfit is left out of the
    result, so the caller's default stands in for it while the problems are being collected.
    """
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in hints:
            problems.append(f"{dotted(path, key)}: unknown key (valid: {', '.join(sorted(hints))})")
            continue
        ok, converted = coerce(value, hints[key], numeric_strings=numeric_strings)
        if ok:
            values[key] = converted
        else:
            problems.append(f"{dotted(path, key)}: expected {describe(hints[key])}, got {type(value).__name__} {value!r}")
    return values


def build_dataclass(cls: type[T], data: Any, path: str, problems: list[str], *, default: T | None = None,
                    numeric_strings: bool = False) -> T:
    """An instance of dataclass ``cls`` from nested mappings, appending (not raising) every problem.

    Keys ``data`` leaves out keep ``default``'s values (``cls()`` when None): a section whose
    defaults differ from its class's (one stage with more steps) keeps them. A field whose default
    is a dataclass is built recursively from its sub-mapping. Problems list unknown keys first
    (sorted), then misfits in field order, then the nested sections' problems in field order.
    """
    base = cls() if default is None else default
    if not isinstance(data, Mapping):
        problems.append(f"{path or '(top level)'}: expected a mapping, got {type(data).__name__}")
        return base
    all_hints = typing.get_type_hints(cls)
    hints = {f.name: all_hints[f.name] for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    nested = [name for name in hints if name in data and dataclasses.is_dataclass(getattr(base, name))]
    # Unknown keys lead: a misspelt key usually explains the misfits after it (PipelineConfigError's order).
    ordered = {key: data[key] for key in sorted(set(data) - set(hints))}
    ordered.update((name, data[name]) for name in hints if name in data and name not in nested)
    values = check_mapping(ordered, hints, path, problems, numeric_strings=numeric_strings)
    for name in nested:
        section = getattr(base, name)
        values[name] = build_dataclass(type(section), data[name], dotted(path, name), problems, default=section,
                                       numeric_strings=numeric_strings)
    return dataclasses.replace(base, **values)  # type: ignore[type-var]


# -- key=value overrides and nested trees --------------------------------------------------------


#: ``key=value`` where key is a dotted config key, optionally ``+``/``++``/``~`` prefixed, with Hydra's
#: ``group/option`` and ``@package`` forms: what every command line treats as an override.
_OVERRIDE = re.compile(r"^[+~]{0,2}[A-Za-z_][\w.@/-]*=")


def is_override(word: str) -> bool:
    """Whether ``word`` is a ``key=value`` override rather than a value (a path, a URI) of a flag.

    The one rule for every entry point: an option with an optional value (``--system-metrics``)
    takes its default when the next word is an override.
    """
    return bool(_OVERRIDE.match(word))


def split_override(item: str) -> tuple[str, str] | None:
    """``key=value`` as ``(key, value_text)``, split at the first ``=`` (a value may hold more).

    None when there is no ``=`` or nothing before it; each config module adds its own rules.
    """
    key, sep, text = item.partition("=")
    return (key, text) if sep and key else None


def parse_value(text: str, loader: Any = None) -> Any:
    """An override's right-hand side read as YAML (``3``, ``true``, ``[a, b]``); blank is None.

    ``loader`` defaults to PyYAML's safe loader; pass OmegaConf's to read ``1e-3`` as Hydra does.
    A malformed value raises ``yaml.YAMLError``: whether that is an error is the caller's choice.
    """
    import yaml  # lazily: importing codex_ml must not need it

    return yaml.load(text, Loader=loader or yaml.SafeLoader) if text.strip() else None


def set_dotted(tree: dict[str, Any], parts: list[str], value: Any, *, replace: bool = False) -> str | None:
    """Set ``tree[parts[0]]...[parts[-1]] = value``, creating missing sections on the way.

    A non-dict in the way is replaced by a new section when ``replace``; otherwise nothing is set
    and its name is returned (the caller reports it). None means the value was set.
    """
    node = tree
    for part in parts[:-1]:
        if replace and not isinstance(node.get(part), dict):
            node[part] = {}
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            return part
    node[parts[-1]] = value
    return None


def delete_dotted(tree: dict[str, Any], key: str) -> None:
    """Remove dotted ``key`` from nested dicts ``tree``; a key that is not there is no error."""
    *parents, leaf = key.split(".")
    node: Any = tree
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(leaf, None)


def merge_tree(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` merged in recursively (mappings merge, anything else replaces)."""
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_tree(merged[key], value)
        else:
            merged[key] = value
    return merged


def copy_tree(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of nested dicts that can be changed without touching ``data`` (leaves are shared)."""
    return {k: copy_tree(v) if isinstance(v, dict) else v for k, v in data.items()}


# -- YAML files ----------------------------------------------------------------------------------


class YamlFileError(CodexMLError, ValueError):
    """A YAML file that is missing or not valid YAML; the message reads ``file:line: problem``.

    ``missing``, ``line`` (1-based, None if unknown) and ``detail`` (the parser's full text)
    let each config module phrase the problem in its own error.
    """

    def __init__(self, path: Path, problem: str, *, missing: bool = False, line: int | None = None,
                 detail: str = "") -> None:
        super().__init__(f"{path}{'' if line is None else f':{line}'}: {problem}")
        self.path, self.problem, self.missing, self.line, self.detail = path, problem, missing, line, detail


def read_yaml_file(path: str | Path, parse: Callable[[Path], Any] | None = None) -> Any:
    """The document in YAML file ``path`` (None when empty), read by ``parse`` (default: safe loader).

    Raises :class:`YamlFileError` when the file does not exist or is not valid YAML, with the
    line the parser stopped at. Other errors of ``parse`` (e.g. OmegaConf's) pass through.
    """
    import yaml  # lazily: importing codex_ml must not need it

    file = Path(path)
    if not file.is_file():
        raise YamlFileError(file, "does not exist", missing=True)
    try:
        return parse(file) if parse is not None else yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        line = mark.line + 1 if mark is not None else None
        raise YamlFileError(file, f"not valid YAML: {problem}", line=line, detail=str(exc)) from exc
