#!/usr/bin/env bash
# Links the first COUNT held-out utterances of a corpus (CORPUS/valid.txt, the order of the
# list) into OUT_DIR as OUT_DIR/<id>.wav -> CORPUS/audio/<id>.wav, for evaluate.py's
# --reference_dir. Links already there are replaced; nothing is copied.
#
#   scripts/link_heldout.sh CORPUS OUT_DIR [COUNT]     # COUNT: default 12; 0 links them all
set -euo pipefail

if [[ $# -lt 2 || $# -gt 3 || "$1" == -h || "$1" == --help ]]; then
  sed -n '2,6p' "$0"
  [[ $# -ge 1 && ( "$1" == -h || "$1" == --help ) ]] && exit 0
  exit 2
fi
CORPUS="$1"
[[ -d "$CORPUS" ]] || { echo "link_heldout: no corpus directory $CORPUS" >&2; exit 1; }
CORPUS="$(cd "$CORPUS" && pwd)"  # absolute, so that the links resolve from OUT_DIR
OUT="$2"
COUNT="${3:-12}"
[[ -f "$CORPUS/valid.txt" ]] || { echo "link_heldout: no held-out list $CORPUS/valid.txt" >&2; exit 1; }
mkdir -p "$OUT"
if [[ "$COUNT" -gt 0 ]]; then ids="$(head -n "$COUNT" "$CORPUS/valid.txt")"; else ids="$(cat "$CORPUS/valid.txt")"; fi
while read -r id; do
  [[ -n "$id" ]] || continue
  [[ -f "$CORPUS/audio/$id.wav" ]] || { echo "link_heldout: $id is listed but $CORPUS/audio/$id.wav is missing" >&2; exit 1; }
  mkdir -p "$(dirname "$OUT/$id")" && ln -sf "$CORPUS/audio/$id.wav" "$OUT/$id.wav"
done <<< "$ids"
