"""Text data helpers: tokenizers and the bundled sample corpus (no torch imports here)."""
