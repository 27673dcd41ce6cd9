#!/usr/bin/env bash
# Drift check: the newest releases of every library the code reaches into (ignoring pyproject's upper
# bounds), in a scratch venv, against the probe and metrics tests. A maintainer sees aiohttp 3.15, redis-py 9
# or prometheus-client 1.0 break something here before users do. Writes scripts/check-latest.md.
#
#   bash scripts/check-latest.sh            # needs the test servers of scripts/test.sh (installed there)
set -uo pipefail
cd "$(dirname "$0")/.."
LIBRARIES=(aiohttp asyncpg "clickhouse-connect[async]" minio prometheus-client pymongo redis
  common-expression-language dnspython grpclib protobuf python-dotenv)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
python3 -m venv "$scratch/venv"
pip=("$scratch/venv/bin/python" -m pip install -q --disable-pip-version-check)
# the project without its pins, its dependencies without upper bounds, then the newest of each library
"${pip[@]}" --no-deps -e . >/dev/null
unbounded=$("$scratch/venv/bin/python" - <<'PY'
import re, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
print(" ".join(re.split(r"[<>=!~;, ]", line, maxsplit=1)[0] for line in project["dependencies"]))
PY
)
# shellcheck disable=SC2086
"${pip[@]}" $unbounded "hypothesis>=6.100" "pytest>=8" "pytest-asyncio>=0.23" trustme packaging -r .ci/requirements-test.txt
"${pip[@]}" --upgrade "${LIBRARIES[@]}"
versions=$("$scratch/venv/bin/python" -m pip list --format=freeze 2>/dev/null \
  | grep -iE '^(aiohttp|asyncpg|clickhouse-connect|minio|prometheus[-_]client|pymongo|redis|common-expression-language|dnspython|grpclib|protobuf|python-dotenv)==' | tr '\n' ' ')
log="$scratch/pytest.log"
CI= "$scratch/venv/bin/python" -m pytest -q -p no:cacheprovider tests/probes tests/test_metrics.py tests/test_conditions.py tests/test_zero_config.py >"$log" 2>&1
status=$?
{
  echo "# Newest releases against the probe and metrics tests"
  echo
  echo "Written by \`bash scripts/check-latest.sh\` on $(date -u +%Y-%m-%d) ($(uname -m), Python $("$scratch/venv/bin/python" -V | cut -d' ' -f2))."
  echo
  echo "- newest releases installed: \`${versions% }\`"
  echo "- pinned in requirements.lock: \`$(grep -iE '^(aiohttp|asyncpg|clickhouse-connect|minio|prometheus-client|pymongo|redis|common-expression-language|dnspython|grpclib|protobuf|python-dotenv)==' requirements.lock | cut -d' ' -f1 | tr '\n' ' ' | sed 's/ $//')\`"
  echo "- result: $([ $status = 0 ] && echo "all passed" || echo "FAILED (pytest exit $status)")"
  echo
  echo '```'
  grep -E "^(FAILED|ERROR)|passed|failed" "$log" | tail -40
  echo '```'
} > scripts/check-latest.md
cat scripts/check-latest.md
exit $status
