#!/usr/bin/env bash
# The long training run (docs/long_run.md): trains RUN_DIR in stretches of EVERY steps with
# train.py and, after each stretch, scores the latest checkpoint by copy synthesis of the first
# 12 held-out utterances (evaluate.py, the model's defaults), appending one JSON line per
# checkpoint to RUN_DIR/heldout_curve.jsonl (step, training examples seen across batch changes,
# training and CPU hours, validation NLL, STOI, PESQ-WB, log-mel distance; Griffin-Lim's, which do
# not change, are computed at the first scored step and carried on). Safe to kill at any
# time and to start again: training resumes from the last checkpoint and a step already scored
# is not scored again.
#
#   scripts/long_run.sh RUN_DIR [EVERY] [-- train.py flags for a new run, e.g. --params=... --init_from=...]
#
# RUN_DIR must hold a run (params.yaml + checkpoints) or the extra flags must start one.
# It stops at train.steps of the run's params. Environment: CORPUS_DIR (default corpus/),
# PYTHON (default .venv/bin/python), THREADS (TensorFlow threads, default 2).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [[ $# -lt 1 || "$1" == -h || "$1" == --help ]]; then
  sed -n '2,14p' "$0"
  [[ $# -ge 1 ]] && exit 0
  exit 2
fi
RUN="$(mkdir -p "$1" && cd "$1" && pwd)"; shift
EVERY=5000
if [[ $# -gt 0 && "$1" != "--" ]]; then EVERY="$1"; shift; fi
[[ $# -gt 0 && "$1" == "--" ]] && shift
extra=("$@")
CORPUS="${CORPUS_DIR:-$ROOT/corpus}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
THREADS="${THREADS:-2}"
HELDOUT="$RUN/heldout12"
"$ROOT/scripts/link_heldout.sh" "$CORPUS" "$HELDOUT" 12

latest_step() {
  "$PYTHON" - "$RUN" <<'PY'
import sys, tensorflow as tf
path = tf.train.latest_checkpoint(sys.argv[1] + "/checkpoints")
print(int(path.rsplit("-", 1)[1]) if path else 0)
PY
}

final_steps() {
  "$PYTHON" - "$RUN" <<'PY'
import sys, yaml
print(yaml.safe_load(open(sys.argv[1] + "/params.yaml"))["train"]["steps"])
PY
}

score() {  # score STEP: evaluate the latest checkpoint once, append to heldout_curve.jsonl
  local step="$1" out="$RUN/heldout_eval/step_$1"
  local baseline=--griffin_lim
  if [[ -f "$RUN/heldout_curve.jsonl" ]]; then
    grep -q "\"step\": $step," "$RUN/heldout_curve.jsonl" && return
    grep -q '"griffin_lim_stoi"' "$RUN/heldout_curve.jsonl" && baseline=--nogriffin_lim
  fi
  TF_NUM_INTRAOP_THREADS="$THREADS" TF_NUM_INTEROP_THREADS="$THREADS" "$PYTHON" "$ROOT/evaluate.py" \
    --reference_dir="$HELDOUT" --model="$RUN" --output_dir="$out" --save_audio=false --progress=false \
    "$baseline" > "$RUN/heldout_eval.log" 2>&1
  PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" - "$RUN" "$step" "$out/evaluation.json" \
    >> "$RUN/heldout_curve.jsonl" <<'PY'
import csv, json, os, sys
import tfwaveglow
from tfwaveglow.training import examples_trained, read_params_changes
run, step, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
result = json.load(open(path))["average"]
rows = [r for r in csv.DictReader(open(run + "/metrics.csv")) if int(r["step"]) <= step]
train = [r for r in rows if r["split"] == "train"][-1]
valid = [r for r in rows if r["split"] == "valid"]
params = tfwaveglow.load_params(run + "/params.yaml")
examples = examples_trained(params, read_params_changes(run), step)
line = {"step": step, "examples": examples, "train_hours": float(train["train_hours"]),
        "cpu_hours": float(train["cpu_hours"]),
        "valid_nll": float(valid[-1]["loss/total"]) if valid else None,
        "valid_step": int(valid[-1]["step"]) if valid else None}
earlier = []
if os.path.exists(run + "/heldout_curve.jsonl"):
    earlier = [json.loads(text) for text in open(run + "/heldout_curve.jsonl") if text.strip()]
for system in ("waveglow", "griffin_lim"):
    for metric in ("stoi", "pesq_wb", "log_mel_distance"):
        key = f"{system}_{metric}"
        if system in result:
            line[key] = result[system][metric]["mean"]
        else:  # evaluated without the baseline: its figures from the last scored step
            line[key] = [e for e in earlier if key in e][-1][key]
print(json.dumps(line))
PY
}

first=1
while :; do
  step="$(latest_step)"
  if [[ -f "$RUN/params.yaml" ]]; then total="$(final_steps)"; else total=$((step + EVERY)); fi
  [[ "$step" -gt 0 ]] && score "$step"
  [[ "$step" -ge "$total" ]] && break
  target=$(( (step / EVERY + 1) * EVERY ))
  [[ "$target" -gt "$total" ]] && target="$total"
  args=(--filelist="$CORPUS/train.txt" --valid_filelist="$CORPUS/valid.txt" --wave_dir="$CORPUS/audio"
        --lc_dir="$CORPUS/mels" --model_dir="$RUN" --steps="$target")
  if [[ "$first" == 1 ]]; then args+=("${extra[@]}"); fi
  first=0
  TF_NUM_INTRAOP_THREADS="$THREADS" TF_NUM_INTEROP_THREADS="$THREADS" \
    "$PYTHON" "$ROOT/train.py" "${args[@]}" >> "$RUN/train.log" 2>&1
done
echo "long run finished at step $(latest_step)"
