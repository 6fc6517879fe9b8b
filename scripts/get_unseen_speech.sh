#!/usr/bin/env bash
# Fetches real speech from speakers and languages the training corpus does not have.
#
#   scripts/get_unseen_speech.sh [OUT_DIR]        (OUT_DIR defaults to unseen_speech/, which git ignores)
#
# Source: the Debian packages asterisk-core-sounds-{en,fr,it}-g722 (version 1.6.1-1), the
# voice prompts of the Asterisk telephone exchange: studio recordings of professional voice
# talents, one speaker per language, stored as G.722 (64 kbit/s ADPCM, 16 kHz, audio band
# 50 Hz - 7 kHz). Speakers, from the packages' copyright files; the sex is the one the
# packages' own directory names state (<lang>_<COUNTRY>_<f|m>_<Name>):
#   en  US English         Allison Smith  (en_US_f_Allison)     CC-BY-SA-3.0
#   fr  Canadian French    June Wallack   (fr_CA_f_June)        CC-BY-SA-3.0
#   it  Italian            Carlo Flora    (it_IT_m_Carlo)       CC-BY-3.0
# The same twelve prompts (one sentence each, 2.0-5.5 s in all three languages) are taken
# from each language, so the three sets say the same things. They are decoded with ffmpeg
# to 16-bit mono 16 kHz wav; evaluate.py resamples them to the model's rate.
#
# Result:
#   OUT_DIR/<lang>/<prompt>.wav        12 clips per language
#   OUT_DIR/manifest.tsv               one line per clip: file, language, speaker, sex, package,
#                                      source file in the package, licence, seconds
#   OUT_DIR/COPYRIGHT.<lang>           the package's copyright file (credits and licence texts)
# The .deb files are kept in OUT_DIR/download. Safe to run again: the download and the
# decoding are skipped when done. Needs apt-get, dpkg-deb and ffmpeg (apt-get install ffmpeg).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
case "${1:-}" in
  -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
esac
OUT="${1:-$ROOT/unseen_speech}"
VERSION=1.6.1-1

# The prompts, identical in every language (file names of the Asterisk core sounds).
PROMPTS=(
  auth-incorrect
  cannot-complete-as-dialed
  check-number-dial-again
  conf-onlyperson
  conf-waitforleader
  dir-nomatch
  pbx-invalid
  privacy-unident
  queue-youarenext
  tt-weasels
  vm-mailboxfull
  vm-nobox
)
# language|voice directory in the package|speaker|sex|licence
LANGUAGES=(
  "en|en_US_f_Allison|Allison Smith|female|CC-BY-SA-3.0"
  "fr|fr_CA_f_June|June Wallack|female|CC-BY-SA-3.0"
  "it|it_IT_m_Carlo|Carlo Flora|male|CC-BY-3.0"
)

for tool in apt-get dpkg-deb ffmpeg; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "get_unseen_speech.sh: '$tool' not found (ffmpeg: apt-get install -y ffmpeg)" >&2
    exit 1
  fi
done

mkdir -p "$OUT/download"
OUT="$(cd "$OUT" && pwd)"
DOWNLOAD="$OUT/download"

# Download what is missing or unreadable.
missing=()
for entry in "${LANGUAGES[@]}"; do
  lang="${entry%%|*}"
  deb="$DOWNLOAD/asterisk-core-sounds-${lang}-g722_${VERSION}_all.deb"
  if [[ ! -f "$deb" ]] || ! dpkg-deb --info "$deb" >/dev/null 2>&1; then
    rm -f "$deb"
    missing+=("asterisk-core-sounds-${lang}-g722=${VERSION}")
  fi
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "Downloading ${missing[*]} with apt-get ..."
  if [[ "$(id -u)" == 0 ]]; then
    apt-get update -q
  elif command -v sudo >/dev/null 2>&1; then
    sudo apt-get update -q
  else
    echo "get_unseen_speech.sh: not root and no sudo: using the package lists as they are" >&2
  fi
  # apt-get download writes into the current directory; '_apt' may not be able to, which is harmless.
  (cd "$DOWNLOAD" && apt-get download "${missing[@]}")
fi

if [[ -f "$OUT/.complete" ]]; then
  echo "Clips: $(cat "$OUT/.complete") in $OUT (manifest $OUT/manifest.tsv)"
  exit 0
fi

manifest="$OUT/manifest.tsv.partial"
printf 'file\tlanguage\tspeaker\tsex\tpackage\tsource\tlicence\tseconds\n' > "$manifest"
count=0
for entry in "${LANGUAGES[@]}"; do
  IFS='|' read -r lang voice speaker sex licence <<< "$entry"
  package="asterisk-core-sounds-${lang}-g722"
  deb="$DOWNLOAD/${package}_${VERSION}_all.deb"
  extract="$DOWNLOAD/extract-$lang"
  rm -rf "$extract" "$OUT/$lang"
  dpkg-deb -x "$deb" "$extract"
  mkdir -p "$OUT/$lang"
  for prompt in "${PROMPTS[@]}"; do
    source="usr/share/asterisk/sounds/$voice/$prompt.g722"
    if [[ ! -f "$extract/$source" ]]; then
      echo "get_unseen_speech.sh: $deb has no $source" >&2
      exit 1
    fi
    # G.722 files are a headerless bitstream: name the format, the decoder gives 16 kHz.
    ffmpeg -nostdin -hide_banner -loglevel error -y -f g722 -i "$extract/$source" \
      -ac 1 -ar 16000 -c:a pcm_s16le "$OUT/$lang/$prompt.wav"
    # 16-bit mono wav with a 44-byte header: 32000 bytes a second.
    bytes=$(stat -c %s "$OUT/$lang/$prompt.wav")
    seconds=$(awk -v b="$bytes" 'BEGIN { printf "%.2f", (b - 44) / 32000 }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$lang/$prompt.wav" "$lang" "$speaker" "$sex" \
      "${package}_${VERSION}" "/$source" "$licence" "$seconds" >> "$manifest"
    count=$((count + 1))
  done
  cp "$extract/usr/share/doc/$package/copyright" "$OUT/COPYRIGHT.$lang"
  rm -rf "$extract"
done
mv "$manifest" "$OUT/manifest.tsv"
echo "$count" > "$OUT/.complete"
echo "Clips: $count in $OUT (manifest $OUT/manifest.tsv)"
