#!/usr/bin/env bash
# tfwaveglow against the PyTorch reference of NVIDIA's WaveGlow (docs/convergence.md,
# "PyTorch reference vs tfwaveglow"): the same config (configs/parity.yaml), the same initial
# weights, the same batches in the same order, the same steps; one run after the other.
#   scripts/parity_runs.sh [CORPUS_DIR] [RUNS_DIR]
# Defaults: corpus/, runs/. Writes RUNS_DIR/parity_init (the shared initial weights, a seeded
# fresh WaveGlow saved by tfwaveglow.save_model, with its step-0 validation NLL),
# RUNS_DIR/parity_tf (train.py), RUNS_DIR/parity_torch (scripts/torch_reference_train.py),
# logs in RUNS_DIR/logs, and the plot docs/convergence_torch_vs_tf.png.
# Both trainings use one thread (TensorFlow intra/inter-op and PyTorch) and run under nice -n 10.
# Set PAUSABLE_PIDS=<file> to have each training's pid appended to that file while it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS="${1:-corpus}"
RUNS="${2:-runs}"
PYTHON="${PYTHON:-.venv/bin/python}"
CONFIG=configs/parity.yaml
LOGS="$RUNS/logs"
mkdir -p "$RUNS" "$LOGS"
export PYTHONPATH="$PWD" TF_CPP_MIN_LOG_LEVEL=2
export OMP_NUM_THREADS=1 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1

run_logged() {  # run_logged LOG CMD...: runs CMD niced, logging to LOG, its pid listed in $PAUSABLE_PIDS meanwhile
  local log="$1"; shift
  nice -n 10 "$@" >> "$log" 2>&1 &
  local pid=$! status=0
  if [ -n "${PAUSABLE_PIDS:-}" ]; then echo "$pid" >> "$PAUSABLE_PIDS"; fi
  echo "pid $pid: $* (log $log)"
  wait "$pid" || status=$?
  # A finished pid left in the list could later name someone else's process.
  if [ -n "${PAUSABLE_PIDS:-}" ]; then sed -i "/^$pid\$/d" "$PAUSABLE_PIDS"; fi
  return "$status"
}

if [ ! -f "$RUNS/parity_init/weights.npz" ]; then
  nice -n 10 "$PYTHON" - "$CONFIG" "$RUNS/parity_init" "$CORPUS" <<'PY'
import json, os, sys

import keras
import tensorflow as tf

import tfwaveglow
from tfwaveglow import data
from tfwaveglow.losses import nll_terms

config, out, corpus = sys.argv[1:4]
params = tfwaveglow.load_params(config)
keras.utils.set_random_seed(params.train.seed)
model = tfwaveglow.WaveGlow.from_params(params)
tfwaveglow.save_model(model, out, params)
# The validation NLL of the initial weights, on train.py's validation clips.
ids = data.read_filelist(os.path.join(corpus, "valid.txt"))[: params.train.valid_max_clips or None]
valid = data.make_validation_dataset(ids, os.path.join(corpus, "audio"), os.path.join(corpus, "mels"), params)
terms = [nll_terms(model.forward(mel, audio), sigma=params.train.sigma) for mel, audio in valid]
mean = {k: sum(float(t[k]) for t in terms) / len(terms) for k in terms[0]}
with open(os.path.join(out, "step0_valid.json"), "w") as f:
    json.dump(mean, f, indent=2)
print(f"initial weights in {out}; step-0 validation NLL {mean['loss/total']:.6f}")
PY
fi

COMMON=(--filelist="$CORPUS/train.txt" --valid_filelist="$CORPUS/valid.txt"
        --wave_dir="$CORPUS/audio" --lc_dir="$CORPUS/mels" --params="$CONFIG" --init_from="$RUNS/parity_init")
run_logged "$LOGS/parity_tf.log" "$PYTHON" train.py "${COMMON[@]}" --model_dir="$RUNS/parity_tf"
if [ ! -f "$RUNS/parity_torch/weights.npz" ]; then
  rm -f "$RUNS/parity_torch/metrics.csv"  # an unfinished reference run starts over (it does not resume)
  run_logged "$LOGS/parity_torch.log" "$PYTHON" scripts/torch_reference_train.py "${COMMON[@]}" \
    --model_dir="$RUNS/parity_torch" --threads=1
fi
"$PYTHON" scripts/plot_convergence.py "$RUNS/parity_tf" "$RUNS/parity_torch" --labels=tfwaveglow,"PyTorch reference" \
  --difference --out docs/convergence_torch_vs_tf.png
