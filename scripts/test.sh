#!/usr/bin/env bash
# The README's test command: lint (ruff), type-check (mypy on src/) and the whole pytest suite, on CPU.
# Extra arguments go to pytest, e.g. scripts/test.sh -k phantom
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
echo "[robustseg] ruff"
ruff check src tests scripts
ruff format --check src tests scripts
echo "[robustseg] mypy src"
mypy
echo "[robustseg] pytest"
python -m pytest "$@"
