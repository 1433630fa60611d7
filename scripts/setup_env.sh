#!/usr/bin/env bash
# Sourced by scripts/demo.sh and scripts/test.sh: creates .venv with the pinned stack on first use.
#   TORCH_SPEC      torch requirement (default torch==2.13.0, a CPU build; e.g. "torch==2.13.0" from a CUDA index)
#   ROBUSTSEG_VENV  where the virtual environment lives (default <repo>/.venv)
#   PYTHON          interpreter that creates it (default python3.11, else python3)
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ROBUSTSEG_VENV:-$REPO_ROOT/.venv}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"

want="$(cat "$REPO_ROOT/pyproject.toml" "$REPO_ROOT/constraints.txt" | sha256sum | cut -c1-16) $TORCH_SPEC"
stamp="$VENV/.robustseg-setup"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "[robustseg] setting up $VENV (first use; a few minutes)..."
    "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "robustseg needs Python >= 3.11"'
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$TORCH_SPEC"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c "$REPO_ROOT/constraints.txt" -e "$REPO_ROOT[dev]"
    echo "$want" > "$stamp"
    echo "[robustseg] environment ready."
fi
export PATH="$VENV/bin:$PATH"
export PYTHONPATH="$REPO_ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
cd "$REPO_ROOT"
