"""Watching training from outside the loop: system telemetry, exporters, inspection tools.

``codex_ml.monitoring.system_metrics`` holds the telemetry sampler (a thread of small
collectors under ``collectors/``); see docs/system-metrics.md. This package imports
nothing on its own, so ``import codex_ml.monitoring`` stays instant.
"""
