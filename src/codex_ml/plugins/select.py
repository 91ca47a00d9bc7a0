"""Plugins chosen by name in a config: the check a config runs and the loads a job runs.

Every group is used by a job (docs/plugins.md, "What is loaded where"): ``model.name`` builds
the model, ``data.tokenizer`` trains/loads the tokenizer, ``data.dataset`` reads the documents,
``system_metrics.collectors`` picks the sampler's collectors and the pipeline's ``stages`` its
stages. A config names a plugin; :func:`name_problem` refuses an unregistered name while the
config is read (before anything is written), listing the registered ones. Nothing is imported
until a job calls :func:`load`.
"""

from __future__ import annotations

from typing import Any

from codex_ml.plugins.registry import Registry, UnknownPluginError

__all__ = ["build_model", "load", "name_problem"]


def name_problem(group: str, name: str) -> str | None:
    """Why ``name`` cannot be selected in ``group`` (not registered: the message lists the
    registered names), or None. Reads entry-point metadata only; imports no plugin."""
    try:
        Registry().spec(group, name)
    except UnknownPluginError as exc:
        return str(exc)
    return None


def load(group: str, name: str) -> Any:
    """The plugin object (class or factory) registered as ``name`` in ``group``.

    Raises UnknownPluginError, PluginLoadError or MissingExtraError (all CodexMLErrors).
    """
    return Registry().load(group, name)


def build_model(name: str, config: Any) -> Any:
    """The model plugin ``name`` called with ``config`` (a :class:`~codex_ml.models.transformer.GPTConfig`).

    A model plugin is a class or factory taking that config and returning a ``torch.nn.Module``
    with the built-in GPT's interface (``forward(idx, targets) -> (logits, loss)``, ``generate``,
    ``num_parameters``); the built-in ``gpt`` is :class:`~codex_ml.models.transformer.GPT` itself.
    """
    return load("models", name)(config)
