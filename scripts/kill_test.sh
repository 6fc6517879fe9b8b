#!/usr/bin/env bash
# Kill safety of training (see scripts/kill_test.py): SIGKILL train.py at random moments,
# resume, and check that every listed checkpoint reads back and the step never goes back.
# Usage: scripts/kill_test.sh [--rounds N] [--seed S] [--work_dir DIR]   (about 1-2 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
TF_CPP_MIN_LOG_LEVEL=2 PYTHONPATH="$PWD" exec "$PYTHON" scripts/kill_test.py "$@"
