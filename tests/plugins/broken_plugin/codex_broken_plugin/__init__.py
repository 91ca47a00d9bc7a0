"""Broken codex_ml plugins for the registry tests."""
