"""Finding third-party plugins: the ``codex_ml.<group>`` entry points of installed distributions.

Only metadata is read (each distribution's ``entry_points.txt``); no plugin is imported here.
"""

from __future__ import annotations

import re

from codex_ml.plugins.registry import ENTRY_POINT_PREFIX, GROUPS, PluginSpec


def discover_entry_points() -> list[tuple[PluginSpec, str | None]]:
    """Every ``codex_ml.*`` entry point on ``sys.path``: ``(spec, problem or None)``.

    A distribution found twice on the path counts once (the first, as Python imports it).
    An entry point in an unknown group is returned with a problem naming the valid groups.
    """
    from importlib.metadata import distributions

    found: list[tuple[PluginSpec, str | None]] = []
    seen: set[str] = set()
    for dist in distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        key = re.sub(r"[-_.]+", "-", name or "").lower()
        if not name or key in seen:
            continue
        seen.add(key)
        source = f"{name} {dist.version}"
        for entry in dist.entry_points:
            if entry.group.startswith(ENTRY_POINT_PREFIX):
                found.append(_spec(entry, source))
    return found


def _spec(entry: object, source: str) -> tuple[PluginSpec, str | None]:
    group = entry.group[len(ENTRY_POINT_PREFIX):]  # type: ignore[attr-defined]
    target = entry.module + (f":{entry.attr}" if entry.attr else "")  # type: ignore[attr-defined]
    spec = PluginSpec(group, entry.name, target, source=source)  # type: ignore[attr-defined]
    if group not in GROUPS:
        valid = ", ".join(ENTRY_POINT_PREFIX + g for g in GROUPS)
        return spec, f"unknown entry-point group {entry.group!r}; valid groups: {valid}"  # type: ignore[attr-defined]
    return spec, None
