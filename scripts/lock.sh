#!/usr/bin/env bash
# Re-resolve the pinned dependency locks after changing pyproject.toml or the Label Studio version.
set -euo pipefail
cd "$(dirname "$0")/.."
uv pip compile -q pyproject.toml --extra dev --python-version 3.11 --universal -o requirements.lock
echo "label-studio==${LABEL_STUDIO_VERSION:-1.23.2}" | uv pip compile -q - --python-version 3.11 --universal -o labelstudio.lock
