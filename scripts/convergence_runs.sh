#!/usr/bin/env bash
# Starts (or resumes) the two convergence runs of docs/convergence.md in the background:
# configs/cpu_convergence.yaml with time_to_batch and with native dilated convolutions.
#   scripts/convergence_runs.sh [CORPUS_DIR] [RUNS_DIR] [LOG_DIR]
# Defaults: corpus/, runs/, runs/logs. Running it again resumes both from their last checkpoints.
# Plot with: python scripts/plot_convergence.py RUNS_DIR/conv_time_to_batch RUNS_DIR/conv_native
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS="${1:-corpus}"
RUNS="${2:-runs}"
LOGS="${3:-$RUNS/logs}"
PYTHON="${PYTHON:-.venv/bin/python}"
mkdir -p "$RUNS" "$LOGS"
for mode in time_to_batch native; do
  TF_CPP_MIN_LOG_LEVEL=2 PYTHONPATH="$PWD" nohup "$PYTHON" train.py \
    --filelist="$CORPUS/train.txt" --valid_filelist="$CORPUS/valid.txt" \
    --wave_dir="$CORPUS/audio" --lc_dir="$CORPUS/mels" \
    --model_dir="$RUNS/conv_$mode" --params=configs/cpu_convergence.yaml \
    --params_override="model.wn.dilated_conv=$mode" >> "$LOGS/conv_$mode.log" 2>&1 &
  echo "conv_$mode: pid $! -> $RUNS/conv_$mode, log $LOGS/conv_$mode.log"
done
