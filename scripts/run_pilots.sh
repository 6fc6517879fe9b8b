#!/usr/bin/env bash
# Trains every pilot configuration for the same CPU time, side by side (docs/pilots.md,
# docs/objective_pilots.md).
#
#   scripts/run_pilots.sh RUNS_DIR [CONFIG.yaml ...]
#
# Each configuration (default: configs/pilots/*.yaml) is layered over configs/pilot_common.yaml
# and the files of BASE_CONFIGS (data, batches, learning-rate rule, train.cpu_seconds_budget)
# and trained by train.py in RUNS_DIR/<config name>, one TensorFlow thread each, all at once
# under `nice -n 5`, the i-th pinned to core i (mod the cores there are); each stops by itself
# when its run has spent the budget of process CPU time. Running it again resumes every run
# from its checkpoints (a finished run stops at once). Logs: RUNS_DIR/<name>.log.
# Environment: CORPUS_DIR (default corpus/ at the repository root), PYTHON (default
# .venv/bin/python), BASE_CONFIGS (space-separated configs layered before each pilot's),
# INIT_FROM (a model every run starts from; default: fresh weights).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [[ $# -lt 1 || "$1" == -h || "$1" == --help ]]; then
  sed -n '2,16p' "$0"
  [[ $# -ge 1 ]] && exit 0
  exit 2
fi
RUNS="$1"; shift
CORPUS="${CORPUS_DIR:-$ROOT/corpus}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
configs=("$@")
[[ ${#configs[@]} -gt 0 ]] || configs=("$ROOT"/configs/pilots/*.yaml)
base=(--params="$ROOT/configs/pilot_common.yaml")
for config in ${BASE_CONFIGS:-}; do base+=(--params="$config"); done
init=()
[[ -n "${INIT_FROM:-}" ]] && init=(--init_from="$INIT_FROM")
cores="$(nproc)"
mkdir -p "$RUNS"

pids=()
index=0
for config in "${configs[@]}"; do
  name="$(basename "$config" .yaml)"
  core=$((index % cores))
  TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 nice -n 5 taskset -c "$core" "$PYTHON" "$ROOT/train.py" \
    --filelist="$CORPUS/train.txt" --valid_filelist="$CORPUS/valid.txt" \
    --wave_dir="$CORPUS/audio" --lc_dir="$CORPUS/mels" --model_dir="$RUNS/$name" \
    "${base[@]}" --params="$config" "${init[@]}" > "$RUNS/$name.log" 2>&1 &
  pids+=($!)
  echo "pilot $name: pid $!, core $core, log $RUNS/$name.log"
  index=$((index + 1))
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
