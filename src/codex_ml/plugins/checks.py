"""What each plugin group accepts: the type checks run when a plugin is loaded."""

from __future__ import annotations

import inspect
from typing import Any

#: The methods a sink that does not subclass ``codex_ml.rundir.sink.Sink`` must provide.
SINK_METHODS = ("start", "write_metrics", "write_system", "write_histogram", "write_text",
                "write_params", "write_tags", "write_artifact", "flush", "close")  # fmt: skip

#: One line per group: what a plugin of that group is (shown by `codex-ml plugins list`).
GROUP_HELP = {
    "sinks": "tracking sinks: a codex_ml.tracking.sink.Sink subclass (or a class with its methods), or a factory returning one",
    "models": "models built by model.name=NAME: a class or factory taking a GPTConfig, returning a torch.nn.Module",
    "tokenizers": "tokenizers chosen by data.tokenizer=NAME: a class with train(texts, vocab_size) and load(path)",
    "datasets": "datasets chosen by data.dataset=NAME: a callable dataset(path) returning the documents",
    "pipeline_stages": "pipeline stages listed in the pipeline's stages: a callable stage(state, ctx) returning metrics",
    "system_metric_collectors": "collectors chosen by system_metrics.collectors: codex_ml.monitoring.collectors.Collector subclasses",
    "health_rules": "health rules chosen under health.rules: a codex_ml.health.rules.Rule subclass (see docs/health.md)",
}


def type_problem(group: str, obj: Any) -> str | None:
    """Why ``obj`` cannot be a plugin of ``group``, or None when it can."""
    if group == "sinks":
        return sink_problem(obj)
    if group == "system_metric_collectors":
        return _collector_problem(obj)
    if not callable(obj):
        return f"{_describe(obj)} is not callable (a {group} plugin is a class or a factory function)"
    return None


def sink_problem(obj: Any) -> str | None:
    """Why ``obj`` (a class, a factory or an instance) cannot be a sink, or None."""
    from codex_ml.rundir.sink import Sink

    if isinstance(obj, Sink) or (inspect.isclass(obj) and issubclass(obj, Sink)):
        return None
    if inspect.isclass(obj) or not callable(obj):
        missing = [m for m in SINK_METHODS if not callable(getattr(obj, m, None))]
        if missing:
            return (f"{_describe(obj)} is not a codex_ml.tracking.sink.Sink subclass and lacks "
                    f"{', '.join(missing)}; subclass Sink to inherit them")  # fmt: skip
    return None  # a factory function: its result is checked when the sink is built


def sink_instance_problem(sink: Any) -> str | None:
    """Why a built sink object cannot be driven by the tracker, or None."""
    from codex_ml.rundir.sink import Sink

    if isinstance(sink, Sink):
        return None
    if isinstance(sink, type):
        return "its factory returned a class, not an instance"
    missing = [m for m in SINK_METHODS if not callable(getattr(sink, m, None))]
    if missing:
        return f"{_describe(sink)} is not a Sink and lacks {', '.join(missing)}; subclass codex_ml.tracking.sink.Sink"
    return None


def _collector_problem(obj: Any) -> str | None:
    # Checked by shape, not by isinstance: the Collector base lives in monitoring, a layer above.
    if inspect.isclass(obj) and callable(getattr(obj, "collect", None)):
        return None
    if inspect.isfunction(obj):
        return None  # a factory
    return f"{_describe(obj)} is not a codex_ml.monitoring.collectors.Collector subclass"


def _describe(obj: Any) -> str:
    if inspect.isclass(obj):
        return f"class {obj.__qualname__}"
    if inspect.isfunction(obj) or inspect.ismodule(obj):
        return f"{type(obj).__name__} {obj.__name__}"
    return f"an object of type {type(obj).__name__}"
