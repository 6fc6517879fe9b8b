"""Corpus preparation: audio files in, training-ready audio, mels and file lists out.

For every audio file (``.wav``, ``.flac``, ``.ogg``) found recursively under
``wave_dir``, following symbolic links to files and folders (each real file once,
link cycles cut: :func:`search_audio_files`), with utterance id ``<relative path
without extension>``:

- ``<data_dir>/audio/<id>.wav``: mono 16-bit PCM at ``audio.sampling_rate`` (mixed
  down and resampled with soxr when the source differs); this is what training reads;
- ``<mel_dir>/<id>.npy``: float32 ``[1 + samples // hop_length, n_mel_channels]``,
  the log-mel of exactly the 16-bit audio above;
- ``<data_dir>/train.txt`` and ``<data_dir>/valid.txt``: utterance ids, one a line;
- ``<data_dir>/preprocess_report.json``: counts, durations, the params used,
  every skipped file with its reason, and every path not followed (a link cycle,
  a second path to a file or folder, a broken link) with its reason;
- ``<data_dir>/manifest.json``: per-file bookkeeping (source size and mtime, the
  params hash, the outcome) that lets a later run redo only what changed.

Every output is written to a temporary name and renamed into place, so an
interrupted run leaves only complete files; the manifest is saved every few
seconds and when the run stops, and the next run picks up where it left off
(and deletes temporaries that a killed run left behind).

Validation split: ids are grouped by speaker (the first folder of the id; ids
without a folder form one group). In each group of ``n`` ids the
``round(valid_fraction * n)`` ids (at least one when ``valid_fraction > 0`` and the
group has two or more ids, and never the whole group) with the smallest
``sha256(f"{split_seed}:{id}")`` go to ``valid.txt``: reproducible, independent of
file order and worker count, and every speaker is in both lists.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import heapq
import json
import os
import stat as stat_module
import sys
import time
import typing
from collections.abc import Callable

import numpy as np
import soundfile

from tfwaveglow import audio as audio_lib
from tfwaveglow.config import AudioParams, Params

__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioSearch",
    "PreprocessError",
    "SILENCE_PEAK",
    "find_audio_files",
    "params_hash",
    "preprocess_corpus",
    "process_file",
    "save_mel",
    "search_audio_files",
    "split_ids",
    "summarize",
]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
# A file whose peak stays below -60 dBFS holds nothing to learn from.
SILENCE_PEAK = 10.0 ** (-60.0 / 20.0)
# Bump when the stored outputs change meaning, so old outputs are redone.
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
REPORT_NAME = "preprocess_report.json"
AUDIO_SUBDIR = "audio"
_MANIFEST_SAVE_INTERVAL_S = 2.0


class PreprocessError(RuntimeError):
    """The run cannot proceed: wrong directories, or nothing usable."""


def params_hash(audio_params: AudioParams) -> str:
    """A short hash of everything that changes the stored audio or mels."""
    blob = json.dumps({"format": FORMAT_VERSION, "audio": dataclasses.asdict(audio_params)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class AudioSearch(typing.NamedTuple):
    """What :func:`search_audio_files` found."""

    files: list[str]
    """Relative paths (``/``-separated, sorted) of the audio files, each real file once."""
    not_followed: list[dict]
    """``{"path", "reason"}`` for every path left out (a folder's path ends in ``/``), sorted by path."""


def _identity(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


def _folders_holding(path: str) -> dict[tuple[int, int], str]:
    """``{identity: path}`` of the real folder ``path`` and every folder above it."""
    held = {}
    path = os.path.realpath(path)
    while True:
        with contextlib.suppress(OSError):
            held[_identity(os.stat(path))] = path
        parent = os.path.dirname(path)
        if parent == path:
            return held
        path = parent


def _link_target(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def search_audio_files(wave_dir: str) -> AudioSearch:
    """The audio files under ``wave_dir``, recursively, following symbolic links to files and folders.

    A file's name decides (``.wav``, ``.flac``, ``.ogg``, any case; names starting
    with ``.`` are left out). Each real file and folder (by ``st_dev, st_ino``) is
    used once: of the paths that reach it, the one through the fewest links, then
    the first in sorted order; the others are ``not_followed`` as
    ``duplicate of <path>``. A folder link that leads back to a folder it is in (or
    to ``wave_dir`` or a folder above it) is a ``link cycle`` and not followed; a
    link to nothing is a ``broken link``; an unreadable folder is named too.

    Args:
      wave_dir: the folder to search.

    Returns:
      :class:`AudioSearch`.
    """
    root = os.path.abspath(os.fspath(wave_dir))
    above = _folders_holding(root)
    not_followed: list[dict] = []
    candidates: dict[tuple[int, int], list[tuple[int, str]]] = collections.defaultdict(list)
    walked: dict[tuple[int, int], str] = {}
    # Folders still to walk, fewest links first: (links on the way, relative path, path, ancestors),
    # ancestors being {identity: relative path} of the folders the path passes through.
    queue: list[tuple[int, str, str, dict]] = [(0, "", root, {})]
    while queue:
        links, rel_dir, path, ancestors = heapq.heappop(queue)
        shown = rel_dir + "/" if rel_dir else "./"
        try:
            identity = _identity(os.stat(path))
            if identity in walked:
                not_followed.append({"path": shown, "reason": f"duplicate of {walked[identity]}/"})
                continue
            walked[identity] = rel_dir
            with os.scandir(path) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError as e:
            not_followed.append({"path": shown, "reason": f"unreadable folder: {e.strerror or e}"})
            continue
        inside = {**ancestors, identity: rel_dir}
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            hidden = entry.name.startswith(".")
            try:
                is_link = entry.is_symlink()
                stat = entry.stat()  # through the link
            except OSError as e:
                if not hidden:
                    what = f"broken link to {_link_target(entry.path)}" if os.path.islink(entry.path) else "cannot read"
                    not_followed.append({"path": rel, "reason": f"{what}: {e.strerror or e}"})
                continue
            through = links + int(is_link)
            if stat_module.S_ISDIR(stat.st_mode):
                target = _identity(stat)
                if is_link and target in inside:
                    reason = f"link cycle: leads back to {inside[target] + '/' if inside[target] else 'wave_dir'}"
                elif is_link and target in above:
                    reason = f"link cycle: leads to {above[target]}, which holds wave_dir"
                else:
                    heapq.heappush(queue, (through, rel, entry.path, inside))
                    continue
                not_followed.append({"path": rel + "/", "reason": reason})
            elif stat_module.S_ISREG(stat.st_mode) and not hidden and entry.name.lower().endswith(AUDIO_EXTENSIONS):
                candidates[_identity(stat)].append((through, rel))
    found = []
    for paths in candidates.values():
        paths.sort()
        found.append(paths[0][1])
        not_followed += [{"path": rel, "reason": f"duplicate of {paths[0][1]}"} for _, rel in paths[1:]]
    return AudioSearch(sorted(found), sorted(not_followed, key=lambda item: item["path"]))


def find_audio_files(wave_dir: str) -> list[str]:
    """Relative paths (``/``-separated, sorted) of the audio files under ``wave_dir``: :func:`search_audio_files`."""
    return search_audio_files(wave_dir).files


def _utterance_id(rel_path: str) -> str:
    return os.path.splitext(rel_path)[0]


def _speaker(utterance_id: str) -> str:
    return utterance_id.split("/", 1)[0] if "/" in utterance_id else ""


def split_ids(ids: list[str], valid_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Reproducible per-speaker train/validation split (see the module docstring).

    Args:
      ids: utterance ids; the speaker is the first folder of an id.
      valid_fraction: share of each speaker's ids held out, in ``[0, 1)``.
      seed: ``data.split_seed``.

    Returns:
      ``(train_ids, valid_ids)``, each sorted.
    """
    groups: dict[str, list[str]] = collections.defaultdict(list)
    for uid in ids:
        groups[_speaker(uid)].append(uid)
    train, valid = [], []
    for members in groups.values():
        n = len(members)
        n_valid = int(round(valid_fraction * n))
        if valid_fraction > 0 and n >= 2:
            n_valid = min(max(n_valid, 1), n - 1)
        else:
            n_valid = 0
        ranked = sorted(members, key=lambda uid: hashlib.sha256(f"{seed}:{uid}".encode()).hexdigest())
        valid.extend(ranked[:n_valid])
        train.extend(ranked[n_valid:])
    return sorted(train), sorted(valid)


def _atomic_write_bytes(path: str, write: Callable) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _atomic_write_json(path: str, data) -> None:
    _atomic_write_bytes(path, lambda f: f.write((json.dumps(data, indent=1) + "\n").encode()))


def _atomic_write_text(path: str, text: str) -> None:
    _atomic_write_bytes(path, lambda f: f.write(text.encode()))


def save_mel(path: str, mel: np.ndarray) -> None:
    """Writes a float32 ``.npy`` atomically."""
    _atomic_write_bytes(path, lambda f: np.save(f, np.asarray(mel, np.float32), allow_pickle=False))


def process_file(source: str, audio_out: str, mel_out: str, audio_params: AudioParams) -> dict:
    """Prepares one utterance; never raises for a bad input file.

    Args:
      source: the audio file to read.
      audio_out: destination ``.wav`` (16-bit PCM, mono, ``audio_params.sampling_rate``).
      mel_out: destination ``.npy`` (float32 ``[frames, n_mel]``).
      audio_params: ``params.audio``.

    Returns:
      ``{"status": "ok", "samples", "frames", "duration_s", "source_rate"}`` or
      ``{"status": "skipped", "reason": ...}``.
    """
    sr = int(audio_params.sampling_rate)
    try:
        source_rate = None
        try:
            source_rate = int(soundfile.info(source).samplerate)
        except Exception:  # noqa: BLE001 - load_audio below reports the problem in its own words
            pass
        try:
            audio = audio_lib.load_audio(source, sr)
        except audio_lib.AudioError as e:
            # The message starts with the path; the report already names the file.
            return {"status": "skipped", "reason": str(e).removeprefix(f"{source}: ")}
        n = int(audio.shape[0])
        if n < audio_params.filter_length:
            return {
                "status": "skipped",
                "reason": f"too short: {n} samples at {sr} Hz, less than one frame "
                f"(filter_length {audio_params.filter_length})",
            }
        audio = audio_lib.quantize_int16(audio)
        peak = float(np.max(np.abs(audio)))
        if peak < SILENCE_PEAK:
            return {"status": "skipped", "reason": f"silent: peak amplitude {peak:.3g} is below -60 dBFS"}
        mel = audio_lib.mel_spectrogram(audio, audio_params)
        os.makedirs(os.path.dirname(audio_out), exist_ok=True)
        os.makedirs(os.path.dirname(mel_out), exist_ok=True)
        audio_lib.save_wav(audio_out, audio, sr)
        save_mel(mel_out, mel)
        return {
            "status": "ok",
            "samples": n,
            "frames": int(mel.shape[0]),
            "duration_s": n / sr,
            "source_rate": source_rate,
        }
    except Exception as e:  # noqa: BLE001 - one file's failure must not stop the corpus
        return {"status": "skipped", "reason": f"{type(e).__name__}: {e}"}


def _limit_blas_threads():
    """Single-threaded BLAS for this process (a context manager; a no-op without threadpoolctl).

    The mel's small matrix product runs about three times slower with a multi-threaded
    BLAS, and workers already use the cores.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with librosa's dependencies
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _init_worker() -> None:
    _limit_blas_threads()


def _check_dir_writable(path: str, flag: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write-test-{os.getpid()}")
        with open(probe, "wb") as f:
            f.write(b"x")
        os.remove(probe)
    except OSError as e:
        raise PreprocessError(f"{flag} {path!r} is not a writable directory: {e.strerror or e}") from None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _remove_stale_temporaries(*roots: str) -> int:
    """Deletes ``*.tmp-<pid>`` files of processes that are gone (a run killed mid-write)."""
    removed = 0
    for root in sorted(set(roots)):
        for dirpath, _, files in os.walk(root):
            for name in files:
                stem, sep, pid = name.rpartition(".tmp-")
                if sep and stem and pid.isdigit() and not _pid_alive(int(pid)):
                    os.remove(os.path.join(dirpath, name))
                    removed += 1
    return removed


def _load_manifest(path: str) -> dict:
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return data.get("files", {}) if isinstance(data, dict) else {}
    except (OSError, ValueError):
        # A damaged manifest only costs a full redo.
        return {}


def _is_up_to_date(entry: dict | None, stat: os.stat_result, digest: str, audio_out: str, mel_out: str) -> bool:
    if not entry:
        return False
    if (entry.get("size"), entry.get("mtime_ns"), entry.get("params_hash")) != (
        stat.st_size,
        stat.st_mtime_ns,
        digest,
    ):
        return False
    if entry.get("status") == "ok":
        return os.path.isfile(audio_out) and os.path.isfile(mel_out)
    return entry.get("status") == "skipped"


def _console(message: str, progress_bar) -> None:
    if progress_bar is not None:
        progress_bar.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr)


def preprocess_corpus(
    wave_dir: str,
    mel_dir: str,
    data_dir: str,
    params: Params,
    *,
    num_workers: int | None = None,
    valid_fraction: float | None = None,
    progress: bool = True,
) -> dict:
    """Prepares a corpus for training (layout in the module docstring).

    Args:
      wave_dir: directory searched recursively for ``.wav``/``.flac``/``.ogg``.
      mel_dir: where the mels go, mirroring the relative paths.
      data_dir: where the resampled audio, file lists, report and manifest go.
      params: resolved params (``audio`` for the front end, ``data`` for the split).
      num_workers: worker processes; ``None`` uses every core, ``<= 1`` runs in this process.
      valid_fraction: overrides ``params.data.valid_fraction``.
      progress: show a tqdm progress bar on stderr.

    Returns:
      The report dict (also written to ``<data_dir>/preprocess_report.json``).

    Raises:
      PreprocessError: ``wave_dir`` missing or without audio files, an output
        directory not writable, or no usable file at all.
    """
    started = time.perf_counter()
    wave_dir, mel_dir, data_dir = (os.path.abspath(os.fspath(d)) for d in (wave_dir, mel_dir, data_dir))
    audio_params = params.audio
    valid_fraction = params.data.valid_fraction if valid_fraction is None else float(valid_fraction)
    if not 0.0 <= valid_fraction < 1.0:
        raise PreprocessError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    if not os.path.exists(wave_dir):
        raise PreprocessError(f"wave_dir {wave_dir!r} does not exist")
    if not os.path.isdir(wave_dir):
        raise PreprocessError(f"wave_dir {wave_dir!r} is not a directory")
    search = search_audio_files(wave_dir)
    sources = search.files
    for item in search.not_followed:
        _console(f"skipped {os.path.join(wave_dir, item['path'])}: {item['reason']}", None)
    if not sources:
        raise PreprocessError(f"wave_dir {wave_dir!r} holds no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    _check_dir_writable(mel_dir, "mel_dir")
    _check_dir_writable(data_dir, "data_dir")
    audio_dir = os.path.join(data_dir, AUDIO_SUBDIR)
    _check_dir_writable(audio_dir, "data_dir")

    _remove_stale_temporaries(mel_dir, data_dir)
    digest = params_hash(audio_params)
    manifest_path = os.path.join(data_dir, MANIFEST_NAME)
    old_manifest = _load_manifest(manifest_path)
    manifest: dict[str, dict] = {}
    skipped: list[dict] = []
    todo: list[tuple[str, str, os.stat_result]] = []
    seen: dict[str, str] = {}
    up_to_date = 0
    for rel in sources:
        uid = _utterance_id(rel)
        if uid in seen:
            skipped.append({"file": rel, "reason": f"duplicate utterance id {uid!r} (also {seen[uid]})"})
            continue
        seen[uid] = rel
        stat = os.stat(os.path.join(wave_dir, rel))
        entry = old_manifest.get(uid)
        if (
            entry is not None
            and entry.get("source") == rel
            and _is_up_to_date(
                entry, stat, digest, os.path.join(audio_dir, uid + ".wav"), os.path.join(mel_dir, uid + ".npy")
            )
        ):
            manifest[uid] = entry
            up_to_date += 1
        else:
            todo.append((uid, rel, stat))

    progress_bar = None
    if progress:
        from tqdm import tqdm

        progress_bar = tqdm(total=len(todo), desc="preprocess", unit="file", file=sys.stderr, dynamic_ncols=True)

    last_save = time.perf_counter()

    def record(uid: str, rel: str, stat: os.stat_result, result: dict) -> None:
        nonlocal last_save
        manifest[uid] = {"source": rel, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "params_hash": digest}
        manifest[uid].update(result)
        if result["status"] == "skipped":
            # A file that turned bad must not leave its old outputs looking current.
            for stale in (os.path.join(audio_dir, uid + ".wav"), os.path.join(mel_dir, uid + ".npy")):
                if os.path.exists(stale):
                    os.remove(stale)
            _console(f"skipped {os.path.join(wave_dir, rel)}: {result['reason']}", progress_bar)
        if progress_bar is not None:
            progress_bar.update(1)
        if time.perf_counter() - last_save > _MANIFEST_SAVE_INTERVAL_S:
            _save_manifest(manifest_path, manifest, digest)
            last_save = time.perf_counter()

    def jobs():
        for uid, rel, stat in todo:
            yield (
                uid,
                rel,
                stat,
                (
                    os.path.join(wave_dir, rel),
                    os.path.join(audio_dir, uid + ".wav"),
                    os.path.join(mel_dir, uid + ".npy"),
                    audio_params,
                ),
            )

    workers = (os.cpu_count() or 1) if num_workers is None else int(num_workers)
    try:
        if workers <= 1 or len(todo) <= 1:
            with _limit_blas_threads():
                for uid, rel, stat, args in jobs():
                    record(uid, rel, stat, process_file(*args))
        else:
            with concurrent.futures.ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
                futures = {pool.submit(process_file, *args): (uid, rel, stat) for uid, rel, stat, args in jobs()}
                try:
                    for future in concurrent.futures.as_completed(futures):
                        record(*futures[future], future.result())
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
    finally:
        if progress_bar is not None:
            progress_bar.close()
        # Whatever finished is kept, also when the run is interrupted.
        _save_manifest(manifest_path, manifest, digest)

    for _uid, entry in sorted(manifest.items()):
        if entry["status"] == "skipped":
            skipped.append({"file": entry["source"], "reason": entry["reason"]})
    skipped.sort(key=lambda item: item["file"])
    usable = {uid: entry for uid, entry in manifest.items() if entry["status"] == "ok"}
    train_ids, valid_ids = split_ids(sorted(usable), valid_fraction, params.data.split_seed)
    elapsed = time.perf_counter() - started
    report = _build_report(
        wave_dir=wave_dir,
        mel_dir=mel_dir,
        data_dir=data_dir,
        audio_dir=audio_dir,
        params=params,
        digest=digest,
        valid_fraction=valid_fraction,
        found=len(sources),
        processed=len(todo),
        up_to_date=up_to_date,
        usable=usable,
        skipped=skipped,
        not_followed=search.not_followed,
        train_ids=train_ids,
        valid_ids=valid_ids,
        elapsed=elapsed,
        workers=workers,
    )
    _atomic_write_json(os.path.join(data_dir, REPORT_NAME), report)
    if not usable:
        raise PreprocessError(
            f"no usable audio under {wave_dir!r}: all {len(sources)} files were skipped "
            f"(reasons in {os.path.join(data_dir, REPORT_NAME)})"
        )
    _atomic_write_text(os.path.join(data_dir, "train.txt"), "".join(uid + "\n" for uid in train_ids))
    _atomic_write_text(os.path.join(data_dir, "valid.txt"), "".join(uid + "\n" for uid in valid_ids))
    return report


def _save_manifest(path: str, files: dict, digest: str) -> None:
    _atomic_write_json(path, {"format": FORMAT_VERSION, "params_hash": digest, "files": dict(sorted(files.items()))})


def _build_report(
    *,
    wave_dir,
    mel_dir,
    data_dir,
    audio_dir,
    params,
    digest,
    valid_fraction,
    found,
    processed,
    up_to_date,
    usable,
    skipped,
    not_followed,
    train_ids,
    valid_ids,
    elapsed,
    workers,
) -> dict:
    def seconds(ids):
        return round(sum(usable[uid]["duration_s"] for uid in ids), 3)

    speakers: dict[str, dict] = collections.defaultdict(lambda: {"train": 0, "valid": 0})
    for uid in train_ids:
        speakers[_speaker(uid)]["train"] += 1
    for uid in valid_ids:
        speakers[_speaker(uid)]["valid"] += 1
    rates = collections.Counter(str(entry.get("source_rate")) for entry in usable.values())
    return {
        "wave_dir": wave_dir,
        "mel_dir": mel_dir,
        "audio_dir": audio_dir,
        "data_dir": data_dir,
        "counts": {
            "found": found,
            "processed_now": processed,
            "up_to_date": up_to_date,
            "usable": len(usable),
            "skipped": len(skipped),
            "not_followed": len(not_followed),
            "train": len(train_ids),
            "valid": len(valid_ids),
        },
        "total_duration_s": seconds(usable),
        "train_duration_s": seconds(train_ids),
        "valid_duration_s": seconds(valid_ids),
        "total_frames": int(sum(entry["frames"] for entry in usable.values())),
        "speakers": dict(sorted(speakers.items())),
        "source_sampling_rates": dict(sorted(rates.items())),
        "skipped": skipped,
        "not_followed": not_followed,
        "params": {"audio": dataclasses.asdict(params.audio), "params_hash": digest},
        "split": {"valid_fraction": valid_fraction, "split_seed": params.data.split_seed},
        "num_workers": workers,
        "elapsed_s": round(elapsed, 3),
        "files_per_s": round(processed / elapsed, 2) if processed and elapsed > 0 else None,
    }


def summarize(report: dict) -> str:
    """A few human-readable lines about a report."""
    c = report["counts"]
    lines = [
        f"{c['found']} audio files: {c['usable']} usable ({report['total_duration_s'] / 60:.1f} min), "
        f"{c['skipped']} skipped; {c['processed_now']} processed now, {c['up_to_date']} already up to date"
        + (f"; {c['not_followed']} paths not followed (links, duplicates)" if c.get("not_followed") else ""),
        f"train {c['train']} ({report['train_duration_s'] / 60:.1f} min), "
        f"valid {c['valid']} ({report['valid_duration_s'] / 60:.1f} min)",
    ]
    if report.get("files_per_s"):
        lines.append(f"{report['files_per_s']} files/s with {report['num_workers']} workers")
    for item in report["skipped"]:
        lines.append(f"  skipped {item['file']}: {item['reason']}")
    for item in report.get("not_followed", []):
        lines.append(f"  skipped {item['path']}: {item['reason']}")
    lines.append(f"mels in {report['mel_dir']}, audio in {report['audio_dir']}, lists in {report['data_dir']}")
    return "\n".join(lines)
