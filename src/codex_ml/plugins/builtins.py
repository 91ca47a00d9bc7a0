"""The built-in plugins, by dotted path, so that listing them imports nothing.

Add a built-in by adding one line to the group's tuple below. ``planned=True`` marks an
entry whose module is being written: while the module is absent, ``codex-ml plugins
diagnose`` shows it as *planned* instead of failing; once the module exists it is loaded
and checked like any other. ``requires=(module, extra)`` names the optional package the
plugin needs, so a missing one is reported as *missing-extra* with its install command.
"""

from __future__ import annotations

from codex_ml.backends import BACKENDS
from codex_ml.plugins.spec import PluginSpec


# Tracking sinks: the rows of codex_ml.backends.BACKENDS (add a backend there, not here).
# The NDJSON log is not a plugin: every run always writes it.
def _sinks() -> tuple[tuple[str, str, bool, tuple[str, str]], ...]:
    return tuple((row.name, row.target, False, (row.package, row.extra)) for row in BACKENDS.values())


MODELS = (
    ("gpt", "codex_ml.models.transformer:GPT", False, ("torch", "train")),
)

TOKENIZERS = (
    ("char", "codex_ml.data.char_tokenizer:CharTokenizer", False, None),
    ("bpe", "codex_ml.data.bpe_tokenizer:BPETokenizer", False, ("tokenizers", "train")),
)

DATASETS = (
    ("sample", "codex_ml.data.datasets:sample_dataset", False, None),
    ("corpus", "codex_ml.data.datasets:corpus_dataset", False, None),
)

# The four built-in pipeline stages, in the order they build on each other; each is a
# `stage(state, ctx)` callable (the one stage protocol, see codex_ml.pipeline.runner.PipelineState).
PIPELINE_STAGES = (
    ("pretrain", "codex_ml.pipeline.stages:pretrain_stage", False, ("torch", "train")),
    ("sft", "codex_ml.pipeline.stages:sft_stage", False, ("torch", "train")),
    ("reward", "codex_ml.pipeline.stages:reward_stage", False, ("torch", "train")),
    ("preference", "codex_ml.pipeline.stages:preference_stage", False, ("torch", "train")),
)

_PSUTIL = ("psutil", "system")
SYSTEM_METRIC_COLLECTORS = (
    ("cpu", "codex_ml.monitoring.collectors.cpu:CpuCollector", False, _PSUTIL),
    ("memory", "codex_ml.monitoring.collectors.memory:MemoryCollector", False, _PSUTIL),
    ("load", "codex_ml.monitoring.collectors.load:LoadCollector", False, _PSUTIL),
    ("pressure", "codex_ml.monitoring.collectors.pressure:PressureCollector", False, _PSUTIL),
    ("disk", "codex_ml.monitoring.collectors.disk:DiskCollector", False, _PSUTIL),
    ("network", "codex_ml.monitoring.collectors.network:NetworkCollector", False, _PSUTIL),
    ("process", "codex_ml.monitoring.collectors.process:ProcessCollector", False, _PSUTIL),
    ("gpu", "codex_ml.monitoring.collectors.gpu:GpuCollector", False, ("pynvml", "gpu")),
)

# Health rules (codex_ml.health): evaluated on the run's writer thread and in backtests.
HEALTH_RULES = (
    ("nonfinite", "codex_ml.health.rules:NonFinite", False, None),
    ("spike", "codex_ml.health.rules:Spike", False, None),
    ("grad_explosion", "codex_ml.health.rules:GradExplosion", False, None),
    ("sink_down", "codex_ml.health.rules:SinkDown", False, None),
    ("stall", "codex_ml.health.rules_progress:Stall", False, None),
    ("throughput_drop", "codex_ml.health.rules_progress:ThroughputDrop", False, None),
    ("data_stall", "codex_ml.health.rules_progress:DataStall", False, None),
    ("memory_leak", "codex_ml.health.rules_progress:MemoryLeak", False, None),
)

_TABLE = {
    "models": MODELS,
    "tokenizers": TOKENIZERS,
    "datasets": DATASETS,
    "pipeline_stages": PIPELINE_STAGES,
    "system_metric_collectors": SYSTEM_METRIC_COLLECTORS,
    "health_rules": HEALTH_RULES,
}


def builtin_specs() -> list[PluginSpec]:
    """Every built-in plugin as a PluginSpec (nothing is imported)."""
    return [
        PluginSpec(group, name, target, planned=planned, requires=requires)
        for group, entries in {"sinks": _sinks(), **_TABLE}.items()  # sinks read BACKENDS when asked
        for name, target, planned, requires in entries
    ]
