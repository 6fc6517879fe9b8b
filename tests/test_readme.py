"""Every command in README.md's bash blocks runs as written, on small data, or is listed with why it cannot run here.

The commands run as programs in a scratch directory laid out the way the README
assumes (``my_wavs/``, ``configs/``, ...), stage by stage: preparing data, then
training (and converting a checkpoint), then what uses the trained run. Their
inputs are made under the names the README gives (a few of the shipped speech
clips, a mel, a tiny NVIDIA checkpoint); a flag is only ever appended, to keep
a run small (configs/tiny.yaml for two training steps, one worker, a few
Griffin-Lim iterations). A README command this file does not know, or one whose
flags a tool no longer accepts, fails here.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import pytest

import tfwaveglow

# Every README command as a program (about a minute in all): CI runs them (.ci/run), `make test` does not.
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
RATE = 22050
REFERENCE_DIR = os.path.join(ROOT, "tests", "reference")
TINY_RUN = "readme_tiny.yaml"  # configs/tiny.yaml for two steps, written into the scratch directory
TINY_RUN_OVERRIDES = {
    "train.steps": 2,
    "train.log_every": 1,
    "train.summary_every": 1,
    "train.checkpoint_every": 2,
    "train.validate_every": 2,
    "train.audio_summary_every": 1000000,
    "train.valid_max_clips": 1,
}
# NVIDIA's waveglow_config for the tiny checkpoint the converter reads.
TINY_NVIDIA = {
    "n_mel_channels": 80,
    "n_flows": 2,
    "n_group": 8,
    "n_early_every": 2,
    "n_early_size": 2,
    "WN_config": {"n_layers": 2, "n_channels": 8, "kernel_size": 3},
}

# Commands the README shows that this test does not run, and why.
NOT_RUN_HERE = {
    "make test": "the lint and this very test suite; CI runs it (.ci/run)",
    "make demo": "installs the package into .venv, then runs `python -m tfwaveglow.demo`, which "
    "tests/test_demo.py runs on the shipped model",
    "scripts/get_corpus.sh": "installs a Debian package with apt-get (root, network); its preprocessing "
    "is preprocess_data.py's, run here",
    "tensorflow_model_server": "TF Serving's server, not a Python package; tests/test_export.py runs the "
    "exported signatures",
}


@dataclasses.dataclass(frozen=True)
class Run:
    """How a tool's README commands are run here."""

    stage: int  # commands of a stage run side by side, after every earlier stage
    append: tuple = ()  # flags appended to keep the run small
    # (argv, scratch dir) -> None, or why the command cannot run here: makes the inputs it names.
    prepare: Callable | None = None


def flag_value(argv: list[str], name: str) -> str | None:
    """The value of ``--name=value`` or ``--name value`` in ``argv``."""
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
        if arg == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def positional(argv: list[str]) -> list[str]:
    """The arguments after the tool that are neither flags nor values of ``--flag value``."""
    rest, skip = [], False
    for arg in argv[tool_index(argv) + 1 :]:
        if skip:
            skip = False
        elif arg.startswith("-"):
            skip = "=" not in arg
        else:
            rest.append(arg)
    return rest


def speech_clips() -> list[str]:
    """The six shipped clips (``female/*.ogg``, ``male/*.ogg``, 22.05 kHz), sorted."""
    speech = os.path.join(ROOT, "tests", "data", "speech")
    return sorted(os.path.join(speech, d, f) for d in ("female", "male") for f in os.listdir(os.path.join(speech, d)))


def excerpt(path: str, seconds: float) -> np.ndarray:
    """The first ``seconds`` of a clip at 22.05 kHz."""
    from tfwaveglow import audio as audio_lib

    return audio_lib.load_audio(path, RATE)[: int(seconds * RATE)]


def prepare_corpus(argv, cwd) -> None:
    """The shipped clips under the README's ``--wave_dir``, one folder per speaker."""
    for path in speech_clips():
        target = os.path.join(cwd, flag_value(argv, "wave_dir"), os.path.basename(os.path.dirname(path)))
        os.makedirs(target, exist_ok=True)
        shutil.copy(path, target)


def prepare_references(argv, cwd) -> None:
    """Two 1.5 s recordings, one per speaker, under the README's ``--reference_dir``."""
    from tfwaveglow import audio as audio_lib

    directory = os.path.join(cwd, flag_value(argv, "reference_dir"))
    os.makedirs(directory, exist_ok=True)
    for path in speech_clips()[::3][:2]:
        name = os.path.splitext(os.path.basename(path))[0] + ".wav"
        audio_lib.save_wav(os.path.join(directory, name), excerpt(path, 1.5), RATE)


def prepare_synthesis_inputs(argv, cwd) -> None:
    """Each input file the README names: a mel for ``.npy``, a 0.6 s recording for audio."""
    from tfwaveglow import audio as audio_lib

    inputs = positional(argv) + [v for v in (flag_value(argv, "mel"), flag_value(argv, "wav")) if v]
    assert inputs, f"no input in {shlex.join(argv)}"
    wave = excerpt(speech_clips()[0], 0.6)
    for name in inputs:
        path = os.path.join(cwd, name)
        if name.endswith(".npy"):
            np.save(path, audio_lib.mel_spectrogram(wave, tfwaveglow.load_params(None).audio))
        else:
            audio_lib.save_wav(path, wave, RATE)


def prepare_checkpoint(argv, cwd) -> str | None:
    """A tiny NVIDIA training checkpoint (a pickled ``glow.WaveGlow``) at the README's ``--checkpoint``."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return "needs torch (the torch extra) to write an NVIDIA checkpoint"
    if REFERENCE_DIR not in sys.path:
        sys.path.insert(0, REFERENCE_DIR)
    import glow_checkpoints

    path = os.path.join(cwd, flag_value(argv, "checkpoint"))
    glow_checkpoints.save(glow_checkpoints.build(TINY_NVIDIA, seed=3), path, "pickled")
    return None


RUN_HERE = {
    "preprocess_data.py": Run(0, ("--num_workers=1", "--noprogress"), prepare_corpus),
    "tfwaveglow.convert_nvidia": Run(1, (), prepare_checkpoint),  # beside training: it needs neither
    "train.py": Run(1, (f"--params={TINY_RUN}",)),
    "synthesize.py": Run(2, (), prepare_synthesis_inputs),
    "tfwaveglow.export": Run(2),
    "evaluate.py": Run(2, ("--griffin_lim_iterations=4", "--noprogress"), prepare_references),
}
# Flags naming what a command writes: each must exist afterwards.
OUTPUT_FLAGS = ("output", "output_dir", "model_dir", "mel_dir", "data_dir")


def readme_commands() -> list[list[str]]:
    """The command lines of README.md's bash blocks (continuations joined, comments dropped), split."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv:
                commands.append(argv)
    return commands


def tool_index(argv: list[str]) -> int:
    """Where the tool is: ``python X.py`` / ``python -m X`` / ``bash X`` / ``make X`` / ``X``."""
    if argv[0] == "python":
        return 2 if argv[1] == "-m" else 1
    if argv[0] in ("bash", "sh", "make"):
        return 1
    return 0


def tool(argv: list[str]) -> str:
    """The command's program: ``train.py``, ``tfwaveglow.export``, ``scripts/get_corpus.sh``, ``make demo``."""
    name = argv[tool_index(argv)]
    return f"make {name}" if argv[0] == "make" else name


COMMANDS = readme_commands()
RUN_COMMANDS = [argv for argv in COMMANDS if tool(argv) in RUN_HERE]


def test_every_readme_command_is_run_here_or_listed_with_a_reason():
    assert len(COMMANDS) >= 8, COMMANDS  # the parser found the README's blocks
    unknown = [shlex.join(argv) for argv in COMMANDS if tool(argv) not in {**RUN_HERE, **NOT_RUN_HERE}]
    assert not unknown, (
        f"README.md commands that tests/test_readme.py neither runs nor lists in NOT_RUN_HERE: {unknown}"
    )
    shown = {tool(argv) for argv in COMMANDS}
    stale = sorted((set(RUN_HERE) | set(NOT_RUN_HERE)) - shown)
    assert not stale, f"tests/test_readme.py lists tools the README no longer shows: {stale}"
    for argv in COMMANDS:
        if tool(argv) in RUN_HERE:
            assert argv[0] == "python", f"{shlex.join(argv)}: run here as a Python program"


def command_line(argv: list[str], cwd: str) -> list[str]:
    """``argv`` as it runs here: this interpreter, the checkout's scripts, the appended flags."""
    run = RUN_HERE[tool(argv)]
    argv = [os.path.expandvars(arg.replace("$PWD", cwd)) for arg in argv]
    at = tool_index(argv)
    if argv[at].endswith(".py"):
        argv[at] = os.path.join(ROOT, argv[at])
    return [sys.executable, *argv[1:], *run.append]


@pytest.fixture(scope="module")
def readme_runs(tmp_path_factory):
    """``{README line: CompletedProcess, or why it was skipped}`` of every command run here, in one scratch dir."""
    cwd = str(tmp_path_factory.mktemp("readme"))
    os.symlink(os.path.join(ROOT, "configs"), os.path.join(cwd, "configs"))
    tiny = tfwaveglow.load_params(os.path.join(ROOT, "configs", "tiny.yaml"), TINY_RUN_OVERRIDES)
    tfwaveglow.save_params(tiny, os.path.join(cwd, TINY_RUN))
    env = dict(os.environ, PYTHONPATH=ROOT)
    results = {}
    workers = max(2, min(4, os.cpu_count() or 2))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for stage in sorted({run.stage for run in RUN_HERE.values()}):
            futures = {}
            for argv in RUN_COMMANDS:
                run = RUN_HERE[tool(argv)]
                if run.stage != stage:
                    continue
                skip = run.prepare(argv, cwd) if run.prepare is not None else None
                if skip:
                    results[shlex.join(argv)] = skip
                    continue
                line = command_line(argv, cwd)
                futures[shlex.join(argv)] = pool.submit(
                    subprocess.run, line, cwd=cwd, env=env, capture_output=True, text=True, timeout=600
                )
            results.update({key: future.result() for key, future in futures.items()})
    return {"cwd": cwd, "results": results}


@pytest.mark.parametrize("argv", RUN_COMMANDS, ids=[f"{i}-{tool(a)}" for i, a in enumerate(RUN_COMMANDS)])
def test_readme_command_runs_as_written(readme_runs, argv):
    done = readme_runs["results"][shlex.join(argv)]
    if isinstance(done, str):
        pytest.skip(done)
    assert done.returncode == 0, f"{shlex.join(argv)} failed:\n{(done.stdout + done.stderr)[-4000:]}"
    for name in OUTPUT_FLAGS:
        value = flag_value(argv, name)
        if value is None:
            continue
        path = os.path.join(readme_runs["cwd"], value)
        assert os.path.exists(path), f"{shlex.join(argv)}: --{name}={value} was not written"
        assert os.path.isfile(path) or os.listdir(path), f"{shlex.join(argv)}: --{name}={value} is empty"


def test_the_readme_runs_chain_through_the_trained_model(readme_runs):
    """The later commands used the run the README's train command wrote (not some other model)."""
    cwd = readme_runs["cwd"]
    train = next(argv for argv in RUN_COMMANDS if tool(argv) == "train.py")
    run_dir = os.path.join(cwd, flag_value(train, "model_dir"))
    params = tfwaveglow.load_params(os.path.join(run_dir, "params.yaml"))
    assert params.model == tfwaveglow.load_params(os.path.join(cwd, TINY_RUN)).model
    assert params.train.steps == TINY_RUN_OVERRIDES["train.steps"]
    for argv in RUN_COMMANDS:
        model = flag_value(argv, "model")
        if model is not None:
            assert os.path.samefile(os.path.join(cwd, model), run_dir), shlex.join(argv)
    synthesize = next(argv for argv in RUN_COMMANDS if tool(argv) == "synthesize.py")
    written = os.listdir(os.path.join(cwd, flag_value(synthesize, "output_dir")))
    assert sorted(written) == sorted(os.path.splitext(os.path.basename(p))[0] + ".wav" for p in positional(synthesize))
