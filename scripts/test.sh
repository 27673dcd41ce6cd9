#!/usr/bin/env bash
# The test command (README): installs what the tests need, then runs ruff, mypy and pytest.
# As root it installs the Debian servers the tests start (PostgreSQL, Redis, ClickHouse, Prometheus,
# Alertmanager, blackbox_exporter, nginx, dnsmasq) and Chromium with its WebDriver (the status page's browser
# tests); otherwise it expects them installed. axe-core comes from npm, pinned by .ci/npm/package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(postgresql redis-server redis-sentinel clickhouse-server clickhouse-client
  prometheus prometheus-alertmanager prometheus-blackbox-exporter nginx-light dnsmasq-base systemd chromium
  chromium-driver)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "missing Debian packages (install them as root): ${missing[*]}" >&2
  fi
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev,uvloop]' -r .ci/requirements-test.txt
if command -v npm >/dev/null; then
  npm ci --prefix .ci/npm --no-audit --no-fund --silent
else
  echo "npm is missing: the accessibility test (axe-core) will fail in CI" >&2
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports --no-cache
.venv/bin/python -m pytest "$@"
