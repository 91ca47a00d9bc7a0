"""Finding third-party plugins: the ``codex_ml.<group>`` entry points of installed distributions.

Only metadata is read (each distribution's ``entry_points.txt``); no plugin is imported here.
"""

from __future__ import annotations

from codex_ml.plugins.spec import ENTRY_POINT_PREFIX, GROUPS, PluginSpec


def discover_entry_points() -> list[tuple[PluginSpec, str | None]]:
    """Every ``codex_ml.*`` entry point on ``sys.path``: ``(spec, problem or None)``.

    A distribution found twice on the path counts once (the first, as Python imports it):
    ``entry_points()`` keeps one distribution per normalised name. An entry point in an
    unknown group is returned with a problem naming the valid groups.
    """
    from importlib.metadata import entry_points

    everything = entry_points()  # 3.10/3.11: SelectableGroups; 3.12+: EntryPoints; both have these
    groups = sorted(g for g in everything.groups if g.startswith(ENTRY_POINT_PREFIX))
    return [_spec(entry, _source(entry)) for group in groups for entry in everything.select(group=group)]


def _source(entry: object) -> str:
    dist = getattr(entry, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"


def _spec(entry: object, source: str) -> tuple[PluginSpec, str | None]:
    group = entry.group[len(ENTRY_POINT_PREFIX):]  # type: ignore[attr-defined]
    target = entry.module + (f":{entry.attr}" if entry.attr else "")  # type: ignore[attr-defined]
    spec = PluginSpec(group, entry.name, target, source=source)  # type: ignore[attr-defined]
    if group not in GROUPS:
        valid = ", ".join(ENTRY_POINT_PREFIX + g for g in GROUPS)
        return spec, f"unknown entry-point group {entry.group!r}; valid groups: {valid}"  # type: ignore[attr-defined]
    return spec, None
