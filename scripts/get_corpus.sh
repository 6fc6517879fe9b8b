#!/usr/bin/env bash
# Fetches a real speech corpus and prepares it for training.
#
#   scripts/get_corpus.sh [--dest DIR] [--num_workers N] [--no-preprocess]
#
# Source: the Debian package fillets-ng-data-cs (GPL-2): the Czech voice acting of the
# game Fish Fillets - Next Generation, 22.05 kHz mono Ogg Vorbis. Two speakers:
# files *-m-*.ogg are the small fish (female voice, about 34 min), *-v-*.ogg the big
# fish (male voice, about 35 min); 1238 files in all. The package is downloaded with
# apt-get and unpacked with dpkg-deb (nothing is installed).
#
# Result (DIR defaults to corpus/ at the repository root, which git ignores):
#   DIR/wavs/{female,male}/<level>-<name>.ogg   the clips (names repeat across levels,
#                                               hence the level prefix)
#   DIR/wavs/COPYRIGHT                          the package's copyright and licence
#   DIR/audio/, DIR/mels/, DIR/train.txt, DIR/valid.txt, DIR/preprocess_report.json
#                                               from preprocess_data.py (see docs/data.md)
# Safe to run again: the download, the unpacking and the preprocessing are each
# skipped when already done.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/corpus"
NUM_WORKERS=""
PREPROCESS=1
PACKAGE=fillets-ng-data-cs

while [[ $# -gt 0 ]]; do
  case "$1" in
    --dest) DEST="$2"; shift 2 ;;
    --dest=*) DEST="${1#*=}"; shift ;;
    --num_workers) NUM_WORKERS="$2"; shift 2 ;;
    --num_workers=*) NUM_WORKERS="${1#*=}"; shift ;;
    --no-preprocess) PREPROCESS=0; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "get_corpus.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
done

mkdir -p "$DEST"
DEST="$(cd "$DEST" && pwd)"
DOWNLOAD="$DEST/download"
WAVS="$DEST/wavs"
mkdir -p "$DOWNLOAD"

deb="$(ls "$DOWNLOAD"/${PACKAGE}_*.deb 2>/dev/null | head -n 1 || true)"
if [[ -z "$deb" ]] || ! dpkg-deb --info "$deb" >/dev/null 2>&1; then
  rm -f "$DOWNLOAD"/${PACKAGE}_*.deb
  echo "Downloading $PACKAGE with apt-get ..."
  if [[ "$(id -u)" == 0 ]]; then
    apt-get update -q
  elif command -v sudo >/dev/null 2>&1; then
    sudo apt-get update -q
  else
    echo "get_corpus.sh: not root and no sudo: using the package lists as they are" >&2
  fi
  # apt-get download writes into the current directory; '_apt' may not be able to, which is harmless.
  (cd "$DOWNLOAD" && apt-get download "$PACKAGE")
  deb="$(ls "$DOWNLOAD"/${PACKAGE}_*.deb | head -n 1)"
fi
echo "Package: $deb"

if [[ ! -f "$WAVS/.complete" ]]; then
  rm -rf "$DOWNLOAD/extract" "$WAVS.partial"
  dpkg-deb -x "$deb" "$DOWNLOAD/extract"
  sound="$DOWNLOAD/extract/usr/share/games/fillets-ng/sound"
  mkdir -p "$WAVS.partial/female" "$WAVS.partial/male"
  count=0
  for path in "$sound"/*/cs/*-[mv]-*.ogg; do
    name="$(basename "$path")"
    level="$(basename "$(dirname "$(dirname "$path")")")"
    case "$name" in
      *-m-*) speaker=female ;;
      *) speaker=male ;;
    esac
    cp "$path" "$WAVS.partial/$speaker/$level-$name"
    count=$((count + 1))
  done
  if [[ "$count" -eq 0 ]]; then
    echo "get_corpus.sh: no clips found under $sound/*/cs/" >&2
    exit 1
  fi
  cp "$DOWNLOAD/extract/usr/share/doc/$PACKAGE/copyright" "$WAVS.partial/COPYRIGHT"
  echo "$count" > "$WAVS.partial/.complete"
  rm -rf "$WAVS"
  mv "$WAVS.partial" "$WAVS"
  rm -rf "$DOWNLOAD/extract"
fi
echo "Clips: $(cat "$WAVS/.complete") in $WAVS" \
  "(female $(ls "$WAVS/female" | wc -l), male $(ls "$WAVS/male" | wc -l))"

if [[ "$PREPROCESS" == 1 ]]; then
  PYTHON="${PYTHON:-}"
  if [[ -z "$PYTHON" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
  fi
  args=(--wave_dir="$WAVS" --mel_dir="$DEST/mels" --data_dir="$DEST")
  if [[ -n "$NUM_WORKERS" ]]; then args+=(--num_workers="$NUM_WORKERS"); fi
  (cd "$ROOT" && TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}" PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
    "$PYTHON" preprocess_data.py "${args[@]}")
  echo "Train with: --wave_dir=$DEST/audio --lc_dir=$DEST/mels (lists $DEST/train.txt, $DEST/valid.txt)"
fi
