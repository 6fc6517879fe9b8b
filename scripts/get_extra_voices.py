"""Fetches more training voices: the spoken stamp descriptions of Tux Paint, deduplicated and checked.

    python scripts/get_extra_voices.py [--dest=voices] [--corpus=corpus] [--package_dir=DIR]

Source: the Debian package ``tuxpaint-stamps-default`` (GPL-2), whose stamps carry short spoken
descriptions, ``<stamp>_desc_<lang>.ogg``, about one speaker per language (e.g. "a red apple").
The package is fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x`` into
``DEST/download`` (nothing is installed); ``--package_dir`` takes an already unpacked tree.

Every description goes through these checks, in order; the first that fails names the file's
reason in the report:

1. readable audio at ``MIN_RATE`` Hz or more (the corpus is 22.05 kHz; 8 kHz files are dropped);
2. channels: a channel ``SILENT_CHANNEL_DB`` below the other is dropped, otherwise the channels
   are averaged when they agree (correlation at least ``MIN_CHANNEL_CORRELATION``);
3. at least ``MIN_SECONDS`` long, peak above ``MIN_PEAK_DBFS``;
4. not clipped: at most ``MAX_CLIPPED_FRACTION`` of the samples at or above ``CLIP_LEVEL``;
5. not band-limited: the 4-8 kHz band holds at least ``MIN_HIGH_BAND_DB`` of the 50 Hz-8 kHz
   energy (speech of the training corpus: about -17 dB; telephone-band audio: under -40 dB);
6. not a duplicate: the same language and the same samples (after the steps above, at 16 bits)
   as a file earlier in sorted order.

A kept file is high-passed at ``HIGHPASS_HZ`` (4th-order Butterworth, forwards and backwards:
zero phase) to remove DC offset and rumble, which several of the languages carry and which would
otherwise fill the lowest mel band, and written as 16-bit mono wav at its source rate
(``preprocess_data.py`` resamples it) to ``DEST/wavs/tuxpaint_<lang>/<folder>-<stamp>.wav``.
Languages with fewer than ``MIN_LANGUAGE_SECONDS`` of kept audio are left out.

With ``--corpus`` (a corpus from ``scripts/get_corpus.sh``), ``DEST/all_wavs/`` is made of
links to the corpus's speaker folders and to the new ones, ready for
``preprocess_data.py --wave_dir=DEST/all_wavs``: the corpus's utterance ids, and so its
train/valid split, stay what they were.

Writes ``DEST/extra_voices_report.json``: per language, files and seconds kept and dropped by
reason; every dropped file with its reason. Safe to run again: the download and the unpacking
are skipped when done, and the wavs are rewritten.
"""

from __future__ import annotations

import collections
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tfwaveglow import audio as audio_lib  # noqa: E402

PACKAGE = "tuxpaint-stamps-default"
STAMPS_SUBDIR = os.path.join("usr", "share", "tuxpaint", "stamps")
DESCRIPTION = re.compile(r"^(?P<stamp>.+)_desc_(?P<lang>[a-z]{2}(?:_[A-Z]{2})?)\.ogg$")

MIN_RATE = 22050
SILENT_CHANNEL_DB = 40.0
MIN_CHANNEL_CORRELATION = 0.9
MIN_SECONDS = 0.4
MIN_PEAK_DBFS = -40.0
CLIP_LEVEL = 0.99
MAX_CLIPPED_FRACTION = 1e-3
MIN_HIGH_BAND_DB = -40.0
HIGHPASS_HZ = 50.0
MIN_LANGUAGE_SECONDS = 120.0
REPORT_NAME = "extra_voices_report.json"


class Rejected(ValueError):
    """A file fails a check: ``kind`` names the check, the message gives the measured value."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


def to_mono(samples: np.ndarray) -> np.ndarray:
    """One channel from ``samples`` (float ``[n]`` or ``[n, channels]``), by check 2 of the module doc."""
    if samples.ndim == 1:
        return samples
    if samples.shape[1] == 1:
        return samples[:, 0]
    energy = np.sum(samples.astype(np.float64) ** 2, axis=0)
    loudest = int(np.argmax(energy))
    quiet = energy < energy[loudest] * 10.0 ** (-SILENT_CHANNEL_DB / 10.0)
    if np.all(quiet | (np.arange(len(energy)) == loudest)):
        return samples[:, loudest]
    kept = samples[:, ~quiet].astype(np.float64)
    centred = kept - kept.mean(axis=0)
    norms = np.sqrt(np.sum(centred**2, axis=0))
    correlation = (centred.T @ centred) / np.maximum(np.outer(norms, norms), 1e-30)
    if correlation.min() < MIN_CHANNEL_CORRELATION:
        raise Rejected("channels disagree", f"correlation {correlation.min():.2f}")
    return kept.mean(axis=1).astype(samples.dtype)


def high_band_db(mono: np.ndarray, rate: int) -> float:
    """Energy of the 4-8 kHz band over that of 50 Hz-8 kHz, in dB (``-inf`` for none)."""
    power = np.abs(np.fft.rfft(mono.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(mono), 1.0 / rate)
    total = power[(freqs >= 50.0) & (freqs < 8000.0)].sum()
    high = power[(freqs >= 4000.0) & (freqs < 8000.0)].sum()
    if total <= 0.0 or high <= 0.0:
        return float("-inf")
    return float(10.0 * np.log10(high / total))


def check(samples: np.ndarray, rate: int) -> np.ndarray:
    """Checks 1-5 of the module doc on ``samples`` (``[n]`` or ``[n, channels]``); the mono signal, or Rejected."""
    if rate < MIN_RATE:
        raise Rejected("sample rate", f"{rate} Hz, under {MIN_RATE}")
    mono = to_mono(np.asarray(samples, np.float32))
    if len(mono) < MIN_SECONDS * rate:
        raise Rejected("too short", f"{len(mono) / rate:.2f} s, under {MIN_SECONDS} s")
    peak = float(np.max(np.abs(mono)))
    if peak <= 10.0 ** (MIN_PEAK_DBFS / 20.0):
        raise Rejected("too quiet", f"peak {20 * np.log10(max(peak, 1e-12)):.1f} dBFS, under {MIN_PEAK_DBFS:g}")
    clipped = float(np.mean(np.abs(mono) >= CLIP_LEVEL))
    if clipped > MAX_CLIPPED_FRACTION:
        raise Rejected("clipped", f"{100 * clipped:.2f} % of the samples at full scale")
    band = high_band_db(mono, rate)
    if band < MIN_HIGH_BAND_DB:
        raise Rejected("band-limited", f"4-8 kHz holds {band:.1f} dB of the energy")
    return mono


def high_pass(mono: np.ndarray, rate: int) -> np.ndarray:
    """``mono`` through a zero-phase 4th-order Butterworth high-pass at ``HIGHPASS_HZ``."""
    from scipy import signal

    sos = signal.butter(4, HIGHPASS_HZ, btype="highpass", fs=rate, output="sos")
    return signal.sosfiltfilt(sos, mono.astype(np.float64)).astype(np.float32)


def descriptions(stamps_dir: str) -> list[tuple[str, str, str]]:
    """``(path, language, output name)`` of every spoken description under ``stamps_dir``, sorted by path.

    The output name is ``<folder>-<stamp>``: the stamp's folder below ``stamps_dir`` (``/``
    as ``-``) and its name, so stamps of the same name in different folders stay apart.
    """
    found = []
    for path in sorted(glob.glob(os.path.join(stamps_dir, "**", "*.ogg"), recursive=True)):
        match = DESCRIPTION.match(os.path.basename(path))
        if match is None:
            continue
        folder = os.path.relpath(os.path.dirname(path), stamps_dir).replace(os.sep, "-")
        found.append((path, match.group("lang"), f"{folder}-{match.group('stamp')}"))
    return found


def fetch_package(download_dir: str) -> str:
    """Downloads and unpacks the package into ``download_dir`` (when not done); the unpacked tree."""
    tree = os.path.join(download_dir, "unpacked")
    if os.path.isdir(os.path.join(tree, STAMPS_SUBDIR)):
        return tree
    os.makedirs(download_dir, exist_ok=True)
    debs = glob.glob(os.path.join(download_dir, f"{PACKAGE}_*.deb"))
    if not debs:
        if subprocess.run(["apt-get", "download", PACKAGE], cwd=download_dir).returncode != 0:
            # A fresh machine may have no package lists yet: refresh them (as root) and try once more.
            if os.geteuid() != 0:
                raise RuntimeError(f"apt-get download {PACKAGE} failed; run apt-get update as root first")
            subprocess.run(["apt-get", "update", "-q"], check=True)
            subprocess.run(["apt-get", "download", PACKAGE], cwd=download_dir, check=True)
        debs = glob.glob(os.path.join(download_dir, f"{PACKAGE}_*.deb"))
    partial = tree + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", sorted(debs)[-1], partial], check=True)
    os.replace(partial, tree)
    return tree


def select(stamps_dir: str, wavs_dir: str) -> dict:
    """Checks every description under ``stamps_dir`` and writes the kept ones to ``wavs_dir``; the report."""
    kept: dict[str, list[float]] = {}  # language -> seconds of each kept file; the audio goes straight to disk
    dropped = []
    partial = {}  # language -> the folder its files are written into until the language is complete
    seen: dict[tuple[str, str], str] = {}
    for path, lang, name in descriptions(stamps_dir):
        source = os.path.relpath(path, stamps_dir)
        try:
            try:
                samples, rate = audio_lib.read_audio(path)
            except audio_lib.AudioError as error:
                raise Rejected("unreadable", str(error)) from None
            mono = check(samples, rate)
            key = (lang, hashlib.sha256(audio_lib.quantize_int16(mono).tobytes()).hexdigest())
            if key in seen:
                raise Rejected("duplicate", f"the same samples as {seen[key]}")
            seen[key] = source
        except Rejected as reason:
            dropped.append({"file": source, "language": lang, "check": reason.kind, "reason": str(reason)})
            continue
        if lang not in partial:
            partial[lang] = os.path.join(wavs_dir, f"tuxpaint_{lang}.partial")
            shutil.rmtree(partial[lang], ignore_errors=True)
            os.makedirs(partial[lang])
        audio_lib.save_wav(os.path.join(partial[lang], name + ".wav"), high_pass(mono, rate), rate)
        kept.setdefault(lang, []).append(len(mono) / rate)

    reasons = collections.defaultdict(collections.Counter)  # language -> check -> files dropped by it
    for d in dropped:
        reasons[d["language"]][d["check"]] += 1
    languages = {}
    for lang in sorted(set(reasons) | set(kept)):
        files = kept.get(lang, [])
        seconds = sum(files)
        written = bool(files) and seconds >= MIN_LANGUAGE_SECONDS
        languages[lang] = {
            "kept_files": len(files),
            "kept_seconds": round(seconds, 2),
            "dropped": dict(reasons[lang]),
            "written": written,
            "speaker_folder": f"tuxpaint_{lang}" if written else None,
        }
        folder = os.path.join(wavs_dir, f"tuxpaint_{lang}")
        shutil.rmtree(folder, ignore_errors=True)  # an earlier run's, or one that no longer qualifies
        if written:
            os.replace(partial[lang], folder)
        elif lang in partial:
            shutil.rmtree(partial[lang])
    return {"package": PACKAGE, "languages": languages, "dropped": dropped}


def link_all(all_dir: str, corpus_wavs: str, wavs_dir: str, speaker_folders: list[str]) -> list[str]:
    """``all_dir`` made afresh of links to the corpus's speaker folders and to ``speaker_folders``; their names."""
    shutil.rmtree(all_dir, ignore_errors=True)
    os.makedirs(all_dir)
    names = []
    for folder in sorted(os.listdir(corpus_wavs)):
        if os.path.isdir(os.path.join(corpus_wavs, folder)):
            os.symlink(os.path.abspath(os.path.join(corpus_wavs, folder)), os.path.join(all_dir, folder))
            names.append(folder)
    for folder in speaker_folders:
        if folder in names:
            raise ValueError(f"{corpus_wavs}/{folder} and {wavs_dir}/{folder}: the same speaker folder twice")
        os.symlink(os.path.abspath(os.path.join(wavs_dir, folder)), os.path.join(all_dir, folder))
        names.append(folder)
    return names


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dest", default="voices", help="output directory (download/, wavs/, the report)")
    parser.add_argument("--corpus", default=None, help="a corpus with wavs/<speaker>/ to link into DEST/all_wavs")
    parser.add_argument("--package_dir", default=None, help="an unpacked tree of the package (skips apt-get)")
    args = parser.parse_args(argv[1:])

    tree = args.package_dir or fetch_package(os.path.join(args.dest, "download"))
    stamps_dir = os.path.join(tree, STAMPS_SUBDIR)
    if not os.path.isdir(stamps_dir):
        print(f"get_extra_voices: {stamps_dir}: no such directory (not an unpacked {PACKAGE})", file=sys.stderr)
        return 1
    wavs_dir = os.path.join(args.dest, "wavs")
    os.makedirs(args.dest, exist_ok=True)
    report = select(stamps_dir, wavs_dir)
    folders = [lang["speaker_folder"] for lang in report["languages"].values() if lang["written"]]
    if args.corpus:
        corpus_wavs = os.path.join(args.corpus, "wavs")
        if not os.path.isdir(corpus_wavs):
            print(f"get_extra_voices: {corpus_wavs}: no such directory", file=sys.stderr)
            return 1
        report["all_wavs"] = link_all(os.path.join(args.dest, "all_wavs"), corpus_wavs, wavs_dir, folders)
    with open(os.path.join(args.dest, REPORT_NAME), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    for lang, entry in report["languages"].items():
        state = f"-> {entry['speaker_folder']}" if entry["written"] else "left out"
        minutes = entry["kept_seconds"] / 60
        print(f"{lang}: kept {entry['kept_files']} files, {minutes:.1f} min {state}; dropped {entry['dropped']}")
    return 0 if folders else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
