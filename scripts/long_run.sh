#!/usr/bin/env bash
# The long training run (docs/long_run.md): trains RUN_DIR in stretches of EVERY steps with
# train.py and, after each stretch, scores the latest checkpoint by copy synthesis of the first
# 12 held-out utterances (evaluate.py, the model's defaults), appending one JSON line per
# checkpoint to RUN_DIR/heldout_curve.jsonl: step, training examples seen across batch changes,
# training and CPU hours, validation NLL (and the validation mel and STFT terms when metrics.csv
# has them), and every metric evaluate.py reports (STOI, PESQ-WB, log-mel distance, MCD, DNSMOS
# SIG/BAK/OVRL/P.808) for WaveGlow, Griffin-Lim and the recordings; the last two do not change,
# so they are computed at the first scored step and carried on. Safe to kill at any time and to
# start again: training resumes from the last checkpoint and a step already scored is not scored
# again.
#
#   scripts/long_run.sh RUN_DIR [EVERY] [-- train.py flags for a new run, e.g. --params=... --init_from=...]
#
# RUN_DIR must hold a run (params.yaml + checkpoints) or the extra flags must start one.
# It stops at train.steps of the run's params. Environment: CORPUS_DIR (default corpus/),
# PYTHON (default .venv/bin/python), THREADS (TensorFlow threads, default 2), SCORE_HOURS
# (unset: stretches of EVERY steps; a number of training hours, e.g. 2: each stretch is at most
# EVERY steps and at most that many training hours at the rate metrics.csv shows over the last
# EVERY steps, a multiple of train.checkpoint_every, at least one checkpoint interval).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [[ $# -lt 1 || "$1" == -h || "$1" == --help ]]; then
  sed -n '2,20p' "$0"
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
SCORE_HOURS="${SCORE_HOURS:-}"
if [[ -n "$SCORE_HOURS" ]] && ! [[ "$SCORE_HOURS" =~ ^([0-9]+\.?[0-9]*|\.[0-9]+)$ && "$SCORE_HOURS" =~ [1-9] ]]; then
  echo "long_run.sh: SCORE_HOURS must be a positive number of training hours, got '$SCORE_HOURS'" >&2
  exit 2
fi
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

stretch_steps() {  # the next stretch's length: EVERY, or with SCORE_HOURS what fits in that many training hours
  if [[ -z "$SCORE_HOURS" ]]; then echo "$EVERY"; return; fi
  "$PYTHON" - "$RUN" "$EVERY" "$SCORE_HOURS" <<'PY'
import csv, math, os, sys
import yaml
run, every, score_hours = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
hours = {}  # training step -> training hours (a later row of a step, written after a resume, wins)
if os.path.exists(run + "/params.yaml") and os.path.exists(run + "/metrics.csv"):
    interval = int(yaml.safe_load(open(run + "/params.yaml"))["train"]["checkpoint_every"])
    for row in csv.DictReader(open(run + "/metrics.csv")):
        try:
            if row["split"] == "train":
                hours[int(row["step"])] = float(row["train_hours"])
        except (KeyError, TypeError, ValueError):
            continue  # a line cut short by a kill, or a row without training hours
steps = sorted(hours)
if len(steps) < 2:  # a new run: nothing to estimate the rate from before its first stretch
    print(every)
    sys.exit()
last = steps[-1]
before = [s for s in steps if s <= last - every]
first = before[-1] if before else steps[0]
per_step = (hours[last] - hours[first]) / (last - first)
if not per_step > 0:
    print(every)
    sys.exit()
length = min(every, math.floor(score_hours / per_step))
length = max(interval, length // interval * interval)
print(length)
print(
    f"long_run.sh: {per_step * 3600:.3g} s of training a step (steps {first} to {last}): stretch of {length} "
    f"steps, SCORE_HOURS={score_hours:g}",
    file=sys.stderr,
)
PY
}

score() {  # score STEP: evaluate the latest checkpoint once, append to heldout_curve.jsonl
  local step="$1" out="$RUN/heldout_eval/step_$1"
  local baseline=--griffin_lim
  if [[ -f "$RUN/heldout_curve.jsonl" ]]; then
    grep -q "\"step\": $step," "$RUN/heldout_curve.jsonl" && return
    # The baselines are carried on once a line holds their last key (a curve begun by an earlier
    # version of this script has no recordings' row and fewer metrics: they are scored once more).
    grep -q '"reference_dnsmos_p808"' "$RUN/heldout_curve.jsonl" && baseline=--nogriffin_lim
  fi
  TF_NUM_INTRAOP_THREADS="$THREADS" TF_NUM_INTEROP_THREADS="$THREADS" "$PYTHON" "$ROOT/evaluate.py" \
    --reference_dir="$HELDOUT" --model="$RUN" --output_dir="$out" --save_audio=false --progress=false \
    "$baseline" > "$RUN/heldout_eval.log" 2>&1
  PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" - "$RUN" "$step" "$out/evaluation.json" <<'PY'
import csv, json, os, sys
import tfwaveglow
from tfwaveglow.training import examples_trained, read_params_changes
run, step, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
curve = run + "/heldout_curve.jsonl"
result = json.load(open(path))["average"]
rows = []
for row in csv.DictReader(open(run + "/metrics.csv")):
    try:
        if int(row["step"]) <= step:
            rows.append(row)
    except (TypeError, ValueError):
        continue  # a line cut short by a kill
train = [r for r in rows if r["split"] == "train"][-1]
valid = [r for r in rows if r["split"] == "valid"]
params = tfwaveglow.load_params(run + "/params.yaml")
examples = examples_trained(params, read_params_changes(run), step)
line = {"step": step, "examples": examples, "train_hours": float(train["train_hours"]),
        "cpu_hours": float(train["cpu_hours"]),
        "valid_nll": float(valid[-1]["loss/total"]) if valid else None,
        "valid_step": int(valid[-1]["step"]) if valid else None}
for term in ("mel", "stft"):  # logged by runs with reverse-pass (spectral) terms
    if valid and valid[-1].get(f"loss/{term}"):
        line[f"valid_{term}"] = float(valid[-1][f"loss/{term}"])
earlier = []
if os.path.exists(curve):
    for text in open(curve):
        try:
            earlier.append(json.loads(text))
        except ValueError:
            continue  # a line cut short by a kill
metrics = ("stoi", "pesq_wb", "log_mel_distance", "mcd", "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808")
for system in ("waveglow", "griffin_lim", "reference"):
    for metric in metrics:
        key = f"{system}_{metric}"
        if system in result:
            line[key] = result[system].get(metric, {}).get("mean")
        else:  # evaluated without the baselines: their figures from the last line that has them
            line[key] = next((e[key] for e in reversed(earlier) if key in e), None)
with open(curve, "a+") as f:  # one write, on a line of its own
    f.seek(0, os.SEEK_END)
    if f.tell() > 0:
        f.seek(f.tell() - 1)
        if f.read(1) != "\n":
            f.write("\n")
    f.write(json.dumps(line) + "\n")
PY
}

first=1
while :; do
  step="$(latest_step)"
  if [[ -f "$RUN/params.yaml" ]]; then total="$(final_steps)"; else total=$((step + EVERY)); fi
  [[ "$step" -gt 0 ]] && score "$step"
  [[ "$step" -ge "$total" ]] && break
  length="$(stretch_steps)"
  target=$(( (step / length + 1) * length ))
  [[ "$target" -gt "$total" ]] && target="$total"
  args=(--filelist="$CORPUS/train.txt" --valid_filelist="$CORPUS/valid.txt" --wave_dir="$CORPUS/audio"
        --lc_dir="$CORPUS/mels" --model_dir="$RUN" --steps="$target")
  if [[ "$first" == 1 ]]; then args+=("${extra[@]}"); fi
  first=0
  TF_NUM_INTRAOP_THREADS="$THREADS" TF_NUM_INTEROP_THREADS="$THREADS" \
    "$PYTHON" "$ROOT/train.py" "${args[@]}" >> "$RUN/train.log" 2>&1
done
echo "long run finished at step $step"
