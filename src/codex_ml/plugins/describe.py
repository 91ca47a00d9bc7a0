"""What ``codex-ml plugins show`` prints about one loaded plugin."""

from __future__ import annotations

import inspect
from typing import Any

from codex_ml.plugins.registry import PluginStatus


def describe(status: PluginStatus) -> dict[str, Any]:
    """Module, file, summary (first docstring line), signature and API version of a plugin."""
    spec, obj = status.spec, status.obj
    info: dict[str, Any] = {
        "group": spec.group, "name": spec.name, "state": status.state, "detail": status.detail,
        "target": spec.target, "source": spec.source, "module": spec.module,
    }  # fmt: skip
    if obj is None:
        return info
    info["kind"] = "class" if inspect.isclass(obj) else type(obj).__name__
    info["file"] = _source_file(obj)
    info["summary"] = summary(obj)
    info["signature"] = signature(obj)
    info["api_version"] = status.api_version
    return info


def summary(obj: Any) -> str:
    """The first line of ``obj``'s own docstring ('' when it has none)."""
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def signature(obj: Any) -> str:
    """How to call ``obj``: ``Name(arg: type = default, ...)``; '' when Python cannot tell."""
    try:
        return f"{getattr(obj, '__name__', '')}{inspect.signature(obj)}"
    except (TypeError, ValueError):
        return ""


def _source_file(obj: Any) -> str:
    try:
        return inspect.getsourcefile(obj) or ""
    except TypeError:  # a builtin or an instance
        return ""
