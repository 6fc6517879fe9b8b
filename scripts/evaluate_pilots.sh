#!/usr/bin/env bash
# Scores every pilot run at its final checkpoint (docs/pilots.md): copy synthesis of the first
# 12 held-out utterances (CORPUS_DIR/valid.txt) with evaluate.py at the model's own export
# defaults, next to Griffin-Lim, and the served synthesis speed (benchmarks/served_speed.py,
# batch 1, 10 s, 2 threads); then the table of scripts/pilot_table.py.
#
#   scripts/evaluate_pilots.sh RUNS_DIR OUT_DIR
#
# Result: OUT_DIR/<run>/evaluation.{json,md}, OUT_DIR/<run>.speed.json, OUT_DIR/pilots.md.
# Environment: CORPUS_DIR (default corpus/ at the repository root), PYTHON (default .venv/bin/python).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [[ $# -ne 2 || "$1" == -h || "$1" == --help ]]; then
  sed -n '2,10p' "$0"
  [[ $# -ge 1 && ( "$1" == -h || "$1" == --help ) ]] && exit 0
  exit 2
fi
RUNS="$1"
OUT="$2"
CORPUS="${CORPUS_DIR:-$ROOT/corpus}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
"$ROOT/scripts/link_heldout.sh" "$CORPUS" "$OUT/heldout12" 12
for run in "$RUNS"/*/; do
  name="$(basename "$run")"
  [[ -d "$run/checkpoints" ]] || continue
  "$PYTHON" "$ROOT/evaluate.py" --reference_dir="$OUT/heldout12" --model="$run" --output_dir="$OUT/$name" \
    --save_audio=false --progress=false > "$OUT/$name.log" 2>&1
  "$PYTHON" "$ROOT/benchmarks/served_speed.py" --model="$run" > "$OUT/$name.speed.json" 2>> "$OUT/$name.log"
  echo "evaluated $name"
done
"$PYTHON" "$ROOT/scripts/pilot_table.py" "$RUNS" "$OUT" | tee "$OUT/pilots.md"
