#!/usr/bin/env bash
# README command 1: install everything, start Label Studio and the backend, and open a demo project.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
scripts/services.sh
exec .venv/bin/lensguard up "$@"
