#!/usr/bin/env bash
# Create .venv when missing and install codex-ml with the given extras, pinned by
# constraints.txt. The install is skipped when pyproject.toml, constraints.txt and the
# extras are unchanged since the last successful one.
#
#   scripts/bootstrap.sh all        # what `make demo` uses
#   scripts/bootstrap.sh dev        # what `make test` uses
set -euo pipefail
extras="${1:-all}"
cd "$(dirname "$0")/.."

python_bin="${PYTHON:-python3}"
if ! "$python_bin" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "error: codex-ml needs Python 3.10+ as '$python_bin' (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv with $("$python_bin" --version)"
  "$python_bin" -m venv .venv
fi

digest=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
stamp=".venv/.codex-ml-installed-${digest}-${extras//[^a-z]/_}"
if [ -f "$stamp" ]; then
  exit 0
fi
echo "Installing codex-ml[${extras}] into .venv (pinned by constraints.txt)..."
.venv/bin/python -m pip install --disable-pip-version-check -q -c constraints.txt -e ".[${extras}]"
# Hydra's Optuna sweeper declares optuna<3, whose storages break on SQLAlchemy 2 (MLflow's);
# it runs on the Optuna the sweep extra installs, so it goes in without its declared deps.
.venv/bin/python -m pip install --disable-pip-version-check -q -c constraints.txt --no-deps hydra-optuna-sweeper
rm -f .venv/.codex-ml-installed-*
touch "$stamp"
