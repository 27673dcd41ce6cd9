#!/usr/bin/env bash
# Regenerate requirements.lock: the runtime dependencies of pyproject.toml, pinned, with the hashes of
# every published file (pip-tools). The Dockerfile installs from it with --require-hashes, so two images
# built from one commit carry the same bytes. Run it after changing `dependencies` in pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/pip-compile ] || .venv/bin/python -m pip install -q pip-tools
.venv/bin/pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links \
  --output-file requirements.lock pyproject.toml
sed -i 's|^#    pip-compile .*|#    bash scripts/lock.sh  (pip-compile --generate-hashes from pyproject.toml)|' requirements.lock
