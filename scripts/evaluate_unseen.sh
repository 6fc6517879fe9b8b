#!/usr/bin/env bash
# Copy-synthesis evaluation on speakers and languages the model never heard, next to held-out
# speech of the training speakers, as one markdown table.
#
#   scripts/evaluate_unseen.sh MODEL_DIR OUT_DIR [evaluate.py flags, e.g. --sigma=0.8]
#
# MODEL_DIR: whatever evaluate.py --model accepts. An inference directory (params.yaml +
# weights.npz) is first copied to OUT_DIR/model, so that every set is measured with the same
# weights even while a training run keeps rewriting it.
# Sets, each evaluated by its own `evaluate.py` run (one after another, under `nice -n 10`):
#   en       US English, female (Allison Smith)    12 prompts  } from scripts/get_unseen_speech.sh,
#   fr       Canadian French, female (June Wallack) 12 prompts  } fetched first when missing
#   it       Italian, male (Carlo Flora)           12 prompts  }
#   heldout  Czech, the two training speakers: the first 5 female and the first 5 male ids of
#            CORPUS_DIR/valid.txt (held out of training), CORPUS_DIR/audio/<id>.wav
# Result: OUT_DIR/<set>/evaluation.{json,md} (+ the synthesised audio), OUT_DIR/<set>.log, and
# OUT_DIR/summary.md (+ summary.json) with the mean scores per set, also printed.
# Environment: UNSEEN_SPEECH_DIR (default unseen_speech/ at the repository root), CORPUS_DIR
# (default corpus/ at the repository root; without its valid.txt the held-out set is left out),
# PYTHON (default .venv/bin/python at the root, else python3).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [[ $# -lt 2 || "$1" == -h || "$1" == --help ]]; then
  sed -n '2,20p' "$0"
  [[ $# -ge 1 && ( "$1" == -h || "$1" == --help ) ]] && exit 0
  exit 2
fi
MODEL="$1"
OUT="$2"
shift 2
SPEECH="${UNSEEN_SPEECH_DIR:-$ROOT/unseen_speech}"
CORPUS="${CORPUS_DIR:-$ROOT/corpus}"
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

if [[ ! -e "$MODEL" && ! -e "$MODEL.index" ]]; then
  echo "evaluate_unseen.sh: $MODEL: no such model" >&2
  exit 2
fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

if [[ ! -f "$SPEECH/.complete" ]]; then
  "$ROOT/scripts/get_unseen_speech.sh" "$SPEECH"
fi

# Which weights: a snapshot of an inference directory, and the run's newest checkpoint then.
note="Model \`$MODEL\`"
checkpoint_file=""
if [[ -f "$MODEL/weights.npz" && -f "$MODEL/params.yaml" ]]; then
  checkpoint_file="$(dirname "$MODEL")/checkpoints/checkpoint"
  rm -rf "$OUT/model"
  mkdir -p "$OUT/model"
  cp "$MODEL/params.yaml" "$MODEL/weights.npz" "$OUT/model/"
  note="$note (copied to \`$OUT/model\`, weights.npz sha256 $(sha256sum "$OUT/model/weights.npz" | cut -c1-12),"
  note="$note written $(date -u -r "$MODEL/weights.npz" '+%Y-%m-%d %H:%M UTC'))"
  MODEL="$OUT/model"
elif [[ -f "$MODEL/checkpoints/checkpoint" ]]; then
  checkpoint_file="$MODEL/checkpoints/checkpoint"
fi
if [[ -n "$checkpoint_file" && -f "$checkpoint_file" ]]; then
  newest="$(sed -n 's/^model_checkpoint_path: "\(.*\)"$/\1/p' "$checkpoint_file" | head -n 1)"
  [[ -n "$newest" ]] && note="$note; newest checkpoint of its run at the time: $newest"
fi
note="$note. Measured $(date -u '+%Y-%m-%d %H:%M UTC')."

sets=(en fr it)
labels=("English (US), female, unseen" "French (CA), female, unseen" "Italian, male, unseen")
refs=("$SPEECH/en" "$SPEECH/fr" "$SPEECH/it")
if [[ -f "$CORPUS/valid.txt" ]]; then
  heldout="$OUT/refs/heldout"
  rm -rf "$heldout"
  for speaker in female male; do
    grep "^$speaker/" "$CORPUS/valid.txt" | head -n 5 | while read -r id; do
      mkdir -p "$heldout/$(dirname "$id")"
      cp "$CORPUS/audio/$id.wav" "$heldout/$id.wav"
    done
  done
  sets+=(heldout)
  labels+=("Czech held-out, training speakers (5 f + 5 m)")
  refs+=("$heldout")
else
  echo "evaluate_unseen.sh: $CORPUS/valid.txt not found: the held-out set is left out" >&2
fi

failed=()
summary_args=()
for i in "${!sets[@]}"; do
  set_name="${sets[$i]}"
  echo "Evaluating $set_name (${labels[$i]}): ${refs[$i]} -> $OUT/$set_name (log $OUT/$set_name.log)"
  if (cd "$ROOT" && nice -n 10 "$PYTHON" evaluate.py --reference_dir="${refs[$i]}" --model="$MODEL" \
    --output_dir="$OUT/$set_name" --noprogress "$@") > "$OUT/$set_name.log" 2>&1; then
    summary_args+=("--evaluation=${labels[$i]}=$OUT/$set_name")
  else
    echo "evaluate_unseen.sh: the $set_name evaluation failed; see $OUT/$set_name.log" >&2
    tail -n 3 "$OUT/$set_name.log" >&2
    failed+=("$set_name")
  fi
done

if [[ ${#summary_args[@]} -gt 0 ]]; then
  "$PYTHON" "$ROOT/scripts/summarize_evaluations.py" "${summary_args[@]}" --note="$note" --output="$OUT/summary.md"
  echo "Table: $OUT/summary.md"
fi
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "evaluate_unseen.sh: failed sets: ${failed[*]}" >&2
  exit 1
fi
