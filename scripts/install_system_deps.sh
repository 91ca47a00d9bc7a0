#!/usr/bin/env bash
# Install the system packages the test suite needs besides Python:
#   - a real Prometheus server (/usr/bin/prometheus, Debian/Ubuntu package `prometheus`) for
#     tests/monitoring/test_prometheus_server.py, with promtool for tests/deploy/test_alert_rules.py;
#   - a real Alertmanager (/usr/bin/prometheus-alertmanager, Debian package `prometheus-alertmanager`)
#     for tests/deploy/test_alertmanager_e2e.py;
#   - headless Chromium (/usr/bin/chromium, Debian package `chromium`) that Playwright drives in
#     tests/viewers/test_browser_viewers.py to open TensorBoard and the MLflow UI;
#   - PostgreSQL 15 (/usr/lib/postgresql/15/bin/postgres, Debian package `postgresql`), the backend
#     store of the MLflow server scripts/mlflow_server.sh starts for tests/team_server/.
#
#   sudo scripts/install_system_deps.sh     # or as root in CI / a container
#
# Idempotent: does nothing for a binary that already exists. Runs `apt-get update` only when a
# package is unknown to apt. Never starts a service for you; the tests start their own instances
# on free 127.0.0.1 ports. Not root and something missing: prints the command to run and exits 1.
set -euo pipefail

# "binary package" pairs, checked in this order.
deps=(
  "/usr/bin/prometheus prometheus"
  "/usr/bin/prometheus-alertmanager prometheus-alertmanager"
  "/usr/bin/chromium chromium"
  "/usr/lib/postgresql/15/bin/postgres postgresql"
)

version_of() {
  # Each prints its version on the first line of stdout; Debian's chromium wrapper script may
  # add shell noise on stderr, so stderr is used only when stdout says nothing.
  local out
  out=$("$1" --version 2>/dev/null | head -n 1)
  [ -n "$out" ] || out=$("$1" --version 2>&1 | head -n 1)
  echo "$out"
}

missing_packages=()
for dep in "${deps[@]}"; do
  read -r binary package <<<"$dep"
  if [ -x "$binary" ]; then
    echo "$package: already installed ($(version_of "$binary"))"
  else
    missing_packages+=("$package")
  fi
done

if [ "${#missing_packages[@]}" -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "error: missing system package(s): ${missing_packages[*]}; this script is not running as root." >&2
  echo "Install them with:  sudo apt-get install -y --no-install-recommends ${missing_packages[*]}" >&2
  echo "  (or run: sudo $0)" >&2
  exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: apt-get not found; install ${missing_packages[*]} (Prometheus and Alertmanager:" \
       "https://prometheus.io/download/, Chromium and PostgreSQL 15: your system's packages) so that" \
       "/usr/bin/prometheus, /usr/bin/prometheus-alertmanager, /usr/bin/chromium and" \
       "/usr/lib/postgresql/15/bin/postgres exist (or set PG_BIN for scripts/mlflow_server.sh), then rerun the tests." >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
for package in "${missing_packages[@]}"; do
  if ! apt-cache show "$package" >/dev/null 2>&1; then
    echo "apt-get update (package lists do not know '$package' yet)"
    apt-get update -qq
    break
  fi
done
echo "apt-get install -y --no-install-recommends ${missing_packages[*]}"
apt-get install -y -qq --no-install-recommends "${missing_packages[@]}"

status=0
for dep in "${deps[@]}"; do
  read -r binary package <<<"$dep"
  if [ ! -x "$binary" ]; then
    echo "error: installed '$package' but $binary is still missing" >&2
    status=1
  else
    echo "$package: installed ($(version_of "$binary"))"
  fi
done
exit "$status"
