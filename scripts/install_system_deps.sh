#!/usr/bin/env bash
# Install the system packages the test suite needs besides Python: a real Prometheus server
# (/usr/bin/prometheus, Debian/Ubuntu package `prometheus`) for tests/monitoring/test_prometheus_server.py.
#
#   sudo scripts/install_system_deps.sh     # or as root in CI / a container
#
# Idempotent: does nothing when /usr/bin/prometheus already exists. Runs `apt-get update` only
# when the package is unknown to apt. Never starts a Prometheus service for you; the tests
# start their own instance on a free 127.0.0.1 port. Not root and missing: prints the command
# to run and exits 1.
set -euo pipefail

binary=/usr/bin/prometheus
package=prometheus

if [ -x "$binary" ]; then
  echo "prometheus: already installed ($("$binary" --version 2>&1 | head -n 1))"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "error: $binary is missing and this script is not running as root." >&2
  echo "Install it with:  sudo apt-get install -y --no-install-recommends $package" >&2
  echo "  (or run: sudo $0)" >&2
  exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: apt-get not found; install Prometheus so that $binary exists" \
       "(https://prometheus.io/download/), then rerun the tests." >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if ! apt-cache show "$package" >/dev/null 2>&1; then
  echo "apt-get update (package lists do not know '$package' yet)"
  apt-get update -qq
fi
echo "apt-get install -y --no-install-recommends $package"
apt-get install -y -qq --no-install-recommends "$package"

if [ ! -x "$binary" ]; then
  echo "error: installed '$package' but $binary is still missing" >&2
  exit 1
fi
echo "prometheus: installed ($("$binary" --version 2>&1 | head -n 1))"
