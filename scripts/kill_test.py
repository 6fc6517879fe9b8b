"""Kill safety of training: SIGKILL ``train.py`` at random moments, resume, check the checkpoints.

    python scripts/kill_test.py [--rounds 5] [--seed 0] [--work_dir DIR] [--corpus DIR] \
        [--params_override section.key=value ...]

Trains a tiny model on the shipped speech clips (preprocessed into the work
directory unless ``--corpus`` names a preprocessed corpus) with a checkpoint
every step. Each round starts ``train.py`` on the same run directory, kills it
with SIGKILL after a random delay (during start-up, training or a save), and
then checks that

- every checkpoint the ``checkpoint`` state file lists reads back
  (``tf.train.load_checkpoint``) and holds the step its name says;
- the latest checkpoint's step never decreases from one round to the next;
- the next round resumes exactly at the latest checkpoint's step;
- ``params.yaml``, the inference artifact and the run directory load
  (``tfwaveglow.load_model``).

A last round runs to a few steps past the latest checkpoint and must exit 0.
Prints a JSON report; exits 1 when a check fails.

``--params_override`` entries (``section.key=value``, repeatable; values parsed as
YAML, as ``train.py --params_override`` parses them) are passed to every
``train.py`` round, the last included, on top of the tiny config, so that the
check covers other objectives and their checkpoint slots too, e.g.
``--params_override=loss.stft=1.0 --params_override="spectral.fft_sizes=[512, 1024]"``.
A key or value the config refuses stops the script before the first round.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

TINY_PARAMS = os.path.join(ROOT, "configs", "tiny.yaml")
# A checkpoint every step, so that kills land during saves too.
TRAIN_OVERRIDES = {
    "train.steps": 1000000,
    "train.log_every": 10,
    "train.summary_every": 5,
    "train.checkpoint_every": 1,
    "train.max_to_keep": 3,
    "train.validate_every": 1000000,
    "train.audio_summary_every": 1000000,
}


class KillTestFailure(AssertionError):
    pass


def prepare_corpus(work_dir: str) -> str:
    import tfwaveglow
    from tfwaveglow import preprocess

    corpus = os.path.join(work_dir, "corpus")
    preprocess.preprocess_corpus(
        os.path.join(ROOT, "tests", "data", "speech"),
        os.path.join(corpus, "mels"),
        corpus,
        tfwaveglow.load_params(None),
        num_workers=1,
        progress=False,
    )
    return corpus


def parse_override(entry: str) -> str:
    """``section.key=value`` as ``train.py --params_override`` takes it (argparse type)."""
    key, sep, _ = entry.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected section.key=value, got {entry!r}")
    return entry


def overrides_dict(entries) -> dict:
    """``["loss.stft=1.0", ...]`` -> ``{"loss.stft": "1.0"}`` (as train.py reads them; later entries win)."""
    return {key.strip(): value.strip() for key, _, value in (entry.partition("=") for entry in entries)}


def train_command(corpus: str, model_dir: str, params_file: str, extra=()) -> list[str]:
    return [
        sys.executable,
        os.path.join(ROOT, "train.py"),
        f"--filelist={os.path.join(corpus, 'train.txt')}",
        f"--wave_dir={os.path.join(corpus, 'audio')}",
        f"--lc_dir={os.path.join(corpus, 'mels')}",
        f"--model_dir={model_dir}",
        f"--params={params_file}",
        *extra,
    ]


def check_run_dir(model_dir: str) -> dict:
    """Reads back every listed checkpoint and the run's other files; returns {"latest_step", "steps"}."""
    import numpy as np
    import tensorflow as tf

    import tfwaveglow

    checkpoint_dir = os.path.join(model_dir, "checkpoints")
    state = tf.train.get_checkpoint_state(checkpoint_dir)
    if state is None:
        return {"latest_step": None, "steps": []}
    steps = []
    for path in state.all_model_checkpoint_paths:
        try:
            reader = tf.train.load_checkpoint(path)
            step = int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))
        except Exception as e:  # noqa: BLE001 - reported as the failure it is
            raise KillTestFailure(f"listed checkpoint {path} is unreadable: {e}") from e
        if not path.endswith(f"ckpt-{step}"):
            raise KillTestFailure(f"{path} holds step {step}")
        steps.append(step)
    latest = int(state.model_checkpoint_path.rsplit("-", 1)[-1])
    if latest != max(steps):
        raise KillTestFailure(f"latest checkpoint {state.model_checkpoint_path} is not the newest of {steps}")
    tfwaveglow.load_params(os.path.join(model_dir, "params.yaml"))
    tfwaveglow.load_model(model_dir)
    inference = os.path.join(model_dir, "inference")
    if os.path.isfile(os.path.join(inference, "weights.npz")):
        with np.load(os.path.join(inference, "weights.npz")) as weights:
            weights.files  # noqa: B018 - reading the index proves the archive is complete
        tfwaveglow.load_model(inference)
    return {"latest_step": latest, "steps": steps}


def run(
    rounds: int,
    seed: int,
    work_dir: str,
    corpus: str | None,
    min_delay: float,
    max_delay: float,
    params_overrides: tuple[str, ...] | list[str] = (),
) -> dict:
    rng = random.Random(seed)
    corpus = corpus or prepare_corpus(work_dir)
    import tfwaveglow

    params_file = os.path.join(work_dir, "tiny.yaml")
    tfwaveglow.save_params(tfwaveglow.load_params(TINY_PARAMS, overrides=TRAIN_OVERRIDES), params_file)
    overrides = [f"--params_override={entry}" for entry in params_overrides]
    model_dir = os.path.join(work_dir, "run")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    report = {"rounds": [], "model_dir": model_dir}
    previous = None
    for index in range(rounds):
        delay = rng.uniform(min_delay, max_delay)
        log_path = os.path.join(work_dir, f"round{index}.log")
        with open(log_path, "w", encoding="utf-8") as log:
            process = subprocess.Popen(
                train_command(corpus, model_dir, params_file, overrides),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            time.sleep(delay)
            exited_early = process.poll() is not None
            if not exited_early:
                process.send_signal(signal.SIGKILL)
            process.wait()
        with open(log_path, encoding="utf-8") as f:
            text = f.read()
        if exited_early:
            raise KillTestFailure(
                f"round {index}: train.py exited by itself (rc {process.returncode}):\n{text[-3000:]}"
            )
        resumed = re.search(r"resumed from \S+ at step (\d+)", text)
        resumed_at = int(resumed.group(1)) if resumed else (0 if "training from step 0" in text else None)
        state = check_run_dir(model_dir)
        if previous is not None and resumed_at is not None and resumed_at != previous:
            raise KillTestFailure(f"round {index}: resumed at step {resumed_at}, the latest checkpoint was {previous}")
        if previous is not None and (state["latest_step"] or 0) < previous:
            raise KillTestFailure(f"round {index}: the latest checkpoint went back from {previous} to {state}")
        report["rounds"].append({"delay_s": round(delay, 2), "resumed_at": resumed_at, **state})
        previous = state["latest_step"] or 0

    target = previous + 3
    final = subprocess.run(
        train_command(corpus, model_dir, params_file, [*overrides, f"--params_override=train.steps={target}"]),
        env=env,
        capture_output=True,
        text=True,
    )
    if final.returncode != 0:
        raise KillTestFailure(f"the final run failed:\n{final.stderr[-3000:]}")
    if f"at step {previous}" not in final.stderr and previous:
        raise KillTestFailure(f"the final run did not resume at step {previous}")
    state = check_run_dir(model_dir)
    if state["latest_step"] != target:
        raise KillTestFailure(f"the final run ended at {state['latest_step']}, expected {target}")
    report["final"] = state
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work_dir", default=None, help="default: a new temporary directory")
    parser.add_argument("--corpus", default=None, help="a preprocessed corpus (default: the shipped clips)")
    parser.add_argument("--min_delay", type=float, default=4.0, help="seconds before the earliest kill")
    parser.add_argument("--max_delay", type=float, default=16.0, help="seconds before the latest kill")
    parser.add_argument(
        "--params_override",
        action="append",
        default=[],
        type=parse_override,
        metavar="KEY=VALUE",
        help="section.key=value for every train.py round, e.g. loss.stft=1.0 (repeatable)",
    )
    args = parser.parse_args(argv)
    import tfwaveglow

    try:  # refused here, naming the key, rather than by every round's train.py
        tfwaveglow.load_params(TINY_PARAMS, overrides={**TRAIN_OVERRIDES, **overrides_dict(args.params_override)})
    except tfwaveglow.ConfigError as e:
        parser.error(f"--params_override: {e}")
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="kill_test_")
    os.makedirs(work_dir, exist_ok=True)
    try:
        report = run(
            args.rounds, args.seed, work_dir, args.corpus, args.min_delay, args.max_delay, args.params_override
        )
    except KillTestFailure as e:
        print(json.dumps({"ok": False, "error": str(e), "work_dir": work_dir}, indent=2))
        return 1
    print(json.dumps({"ok": True, **report}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
