#!/usr/bin/env bash
# Trains every pilot configuration for the same CPU time, side by side (docs/pilots.md).
#
#   scripts/run_pilots.sh RUNS_DIR [CONFIG.yaml ...]
#
# Each configuration (default: configs/pilots/*.yaml) is layered over configs/pilot_common.yaml
# (data, batches, learning-rate rule, train.cpu_seconds_budget) and trained by train.py in
# RUNS_DIR/<config name>, one TensorFlow thread each, all at once under `nice -n 5`; each stops by
# itself when its run has spent the budget of process CPU time. Running it again resumes every
# run from its checkpoints (a finished run stops at once). Logs: RUNS_DIR/<name>.log.
# Environment: CORPUS_DIR (default corpus/ at the repository root), PYTHON (default .venv/bin/python).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [[ $# -lt 1 || "$1" == -h || "$1" == --help ]]; then
  sed -n '2,12p' "$0"
  [[ $# -ge 1 ]] && exit 0
  exit 2
fi
RUNS="$1"; shift
CORPUS="${CORPUS_DIR:-$ROOT/corpus}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
configs=("$@")
[[ ${#configs[@]} -gt 0 ]] || configs=("$ROOT"/configs/pilots/*.yaml)
mkdir -p "$RUNS"

pids=()
for config in "${configs[@]}"; do
  name="$(basename "$config" .yaml)"
  TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 nice -n 5 "$PYTHON" "$ROOT/train.py" \
    --filelist="$CORPUS/train.txt" --valid_filelist="$CORPUS/valid.txt" \
    --wave_dir="$CORPUS/audio" --lc_dir="$CORPUS/mels" --model_dir="$RUNS/$name" \
    --params="$ROOT/configs/pilot_common.yaml" --params="$config" > "$RUNS/$name.log" 2>&1 &
  pids+=($!)
  echo "pilot $name: pid $!, log $RUNS/$name.log"
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
