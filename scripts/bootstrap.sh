#!/usr/bin/env bash
# Install lensguard (.venv) and Label Studio (.venv-ls, its own pins) from the locks. Safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
# This machine's pip config may add a find-links folder with a CPU-only torch that breaks PyPI's torchvision;
# uv ignores pip's config, and the bootstrap pip below is told to ignore it too.
export PIP_CONFIG_FILE=/dev/null

if [ ! -x .venv/bin/uv ]; then
    echo "==> creating .venv"
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install -q --disable-pip-version-check "uv==0.13.8"
fi
UV=.venv/bin/uv

echo "==> installing lensguard into .venv (torch and torchvision from PyPI, both pinned)"
$UV pip install -q --python .venv/bin/python -r requirements.lock -e ".[dev]"
.venv/bin/python - <<'PY'
import importlib.metadata as md
expected = {"torch": "2.13.0", "torchvision": "0.28.0"}
found = {name: md.version(name).split("+")[0] for name in expected}
assert found == expected, f"wrong torch install: {found}, expected {expected}"
import torchvision  # noqa: F401  (fails on a CPU-torch/CUDA-torchvision mix)
PY

if [ ! -x .venv-ls/bin/python ]; then
    echo "==> creating .venv-ls for Label Studio"
    $UV venv -q --python "$(.venv/bin/python -c 'import sys; print(sys.executable)')" .venv-ls
fi
echo "==> installing Label Studio into .venv-ls"
$UV pip install -q --python .venv-ls/bin/python -r labelstudio.lock
# uv installs no bytecode, and where PYTHONDONTWRITEBYTECODE is set (CI machines, many containers) every process
# would compile torch, open_clip and Django from source again: 18 s instead of 7 s to import the serving stack
# here. Compiled once; later runs skip what is up to date. (A few vendored test files do not parse: ignored.)
echo "==> compiling bytecode"
for venv in .venv .venv-ls; do
    "$venv/bin/python" -m compileall -q -j 0 "$venv/lib" > /dev/null 2>&1 || true
done
echo "==> bootstrap done"
