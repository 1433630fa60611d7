#!/usr/bin/env bash
# Sourced by scripts/demo.sh and scripts/test.sh: creates .venv with the pinned stack on first use.
#   TORCH_SPEC      torch requirement (default torch==2.13.0, a CPU build; e.g. "torch==2.13.0" from a CUDA index)
#   ROBUSTSEG_VENV  where the virtual environment lives (default <repo>/.venv)
#   PYTHON          interpreter that creates it (default python3.11, else python3)
# Sourced from an interactive shell (`source scripts/setup_env.sh`) it leaves that shell's options as they were.
_robustseg_shell_options="$(set +o)"  # a command substitution reports errexit as off: keep it from $-
case $- in *e*) _robustseg_shell_options+=$'\nset -e';; esac
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ROBUSTSEG_VENV:-$REPO_ROOT/.venv}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"

want="$(cat "$REPO_ROOT/pyproject.toml" "$REPO_ROOT/constraints.txt" | sha256sum | cut -c1-16) $TORCH_SPEC"
stamp="$VENV/.robustseg-setup"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    (  # in a subshell: a failed install stops here, not the shell that sourced this file
        set -euo pipefail
        echo "[robustseg] setting up $VENV (first use; a few minutes)..."
        "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "robustseg needs Python >= 3.11"'
        [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$TORCH_SPEC"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c "$REPO_ROOT/constraints.txt" \
            -e "$REPO_ROOT[dev]"
        echo "$want" > "$stamp"
        echo "[robustseg] environment ready."
    ) || { eval "$_robustseg_shell_options"; echo "[robustseg] setting up $VENV failed" >&2; return 1 2>/dev/null || exit 1; }
fi
export PATH="$VENV/bin:$PATH"
export PYTHONPATH="$REPO_ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
cd "$REPO_ROOT"
eval "$_robustseg_shell_options"
unset _robustseg_shell_options
