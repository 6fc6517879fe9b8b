"""The command-line tools start without TensorFlow's C++ start-up log lines, unless asked for them."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from tfwaveglow import quiet_import

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What TensorFlow 2.x (and its CUDA plugins) print as they load and find the devices, whatever the program.
KNOWN_STARTUP_LINES = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on",
    "Could not find cuda drivers on your machine",
    "failed call to cuInit",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "rebuild TensorFlow with the appropriate compiler flags",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "computation placer already registered",
    "TF-TRT Warning: Could not find TensorRT",
)
LOG_SETTINGS = ("TF_CPP_MIN_LOG_LEVEL", "TF_CPP_MAX_VLOG_LEVEL", "TF_CPP_VMODULE", "TFWAVEGLOW_VERBOSE_TF")


def environment(pythonpath: str = ROOT, **settings) -> dict:
    """This process's environment without any TensorFlow log setting, plus ``settings``."""
    env = {name: value for name, value in os.environ.items() if name not in LOG_SETTINGS}
    return {**env, "PYTHONPATH": pythonpath, **settings}


def run(args, cwd=ROOT, **settings) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=environment(**settings), capture_output=True, text=True, timeout=300
    )


def startup_kinds(stderr: str) -> set[str]:
    """Which of the known start-up lines ``stderr`` holds."""
    return {known for known in KNOWN_STARTUP_LINES if known in stderr}


@pytest.fixture(scope="module")
def printed_here():
    """The start-up lines this TensorFlow build prints on this machine: a plain import, then the devices."""
    proc = run(["-c", "import tensorflow as tf; print(tf.config.list_physical_devices())"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return startup_kinds(proc.stderr)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    import tfwaveglow

    tmp = tmp_path_factory.mktemp("quiet")
    params = tfwaveglow.load_params(
        overrides={"model.n_flows": 2, "model.n_early_every": 2, "model.wn.n_layers": 2, "model.wn.n_channels": 8}
    )
    model = tfwaveglow.WaveGlow.from_params(params)
    tfwaveglow.save_model(model, tmp / "model", params)
    np.save(tmp / "mel.npy", np.random.default_rng(0).normal(-6.0, 2.0, (12, 80)).astype(np.float32))
    return tmp


def synthesize(tmp, *flags, **settings):
    out = tmp / f"out{len(list(tmp.glob('out*')))}"
    proc = run(["synthesize.py", f"--model={tmp / 'model'}", f"--output_dir={out}", *flags, str(tmp / "mel.npy")],
               **settings)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert os.path.isfile(out / "mel.wav")
    assert "synthesising with sigma 0.6" in proc.stdout and "synthesised 1 of 1 inputs" in proc.stdout
    return proc


def test_synthesis_starts_without_tensorflow_start_up_lines(tiny_model_dir):
    proc = synthesize(tiny_model_dir)
    assert startup_kinds(proc.stderr) == set(), proc.stderr


@pytest.mark.parametrize("how", ["flag", pytest.param("environment", marks=pytest.mark.slow)])
def test_verbose_flag_or_variable_shows_them(tiny_model_dir, printed_here, how):
    if not printed_here:
        pytest.skip("this TensorFlow build prints none of the known start-up lines here")
    if how == "flag":
        proc = synthesize(tiny_model_dir, "--verbose_tf_logs")
    else:
        proc = synthesize(tiny_model_dir, TFWAVEGLOW_VERBOSE_TF="1")
    assert startup_kinds(proc.stderr) >= printed_here, proc.stderr


@pytest.mark.parametrize(
    "settings, shown",
    [
        pytest.param({}, False, marks=pytest.mark.slow),
        ({"TF_CPP_MIN_LOG_LEVEL": "0"}, True),
        pytest.param({"TFWAVEGLOW_VERBOSE_TF": "1"}, True, marks=pytest.mark.slow),
    ],
    ids=["quiet", "user-log-level-respected", "verbose-variable"],
)
def test_import_tensorflow_respects_the_users_settings(printed_here, settings, shown):
    code = "from tfwaveglow import quiet_import\ntf = quiet_import.import_tensorflow()\ntf.constant(1.0) + 1.0\n"
    proc = run(["-c", code], **settings)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert startup_kinds(proc.stderr) == (printed_here if shown else set()), proc.stderr


def test_other_lines_are_kept_and_a_failed_import_shows_everything(tmp_path):
    """A stand-in ``tensorflow`` that logs start-up noise and a real warning, then imports or fails."""
    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1700000000.000000    4242 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use "
        "available CPU instructions in performance-critical operations.",
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the "
        "appropriate compiler flags.",
    ]
    cuinit = "E0000 00:00:1700000000.100000    4242 cuda_platform.cc:52] failed call to cuInit: INTERNAL: no driver"
    real = "W0000 00:00:1700000000.200000    4242 some_op.cc:10] a warning worth reading"
    for fails in (False, True):
        fake = tmp_path / f"fails_{fails}" / "tensorflow"
        fake.mkdir(parents=True)
        lines = [*noise, real]
        body = "import os, sys\n" + "".join(f"os.write(2, {(line + chr(10)).encode()!r})\n" for line in lines)
        body += "print('python-level warning', file=sys.stderr)\n"
        if fails:
            body += "raise ImportError('this build is broken')\n"
        else:
            body += (
                "class config:\n    @staticmethod\n    def list_physical_devices():\n"
                f"        os.write(2, {(cuinit + chr(10)).encode()!r})\n        return []\n"
            )
        (fake / "__init__.py").write_text(body)
        code = "from tfwaveglow import quiet_import\nquiet_import.import_tensorflow()\nprint('imported')\n"
        proc = run(["-c", code], pythonpath=f"{fake.parent}{os.pathsep}{ROOT}")
        if fails:
            assert proc.returncode != 0 and "ImportError: this build is broken" in proc.stderr
            for line in [*noise, real, "python-level warning"]:
                assert line in proc.stderr
        else:
            assert proc.returncode == 0 and proc.stdout == "imported\n", proc.stderr
            assert proc.stderr == f"{real}\npython-level warning\n"


# Start-up lines as TensorFlow writes them: 2.21 on this machine, then earlier releases and CUDA machines.
STARTUP_EXAMPLES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796155456.988094   11193 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will "
    "not be used.",
    "I0000 00:00:1796155457.075589   11193 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use "
    "available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the appropriate "
    "compiler flags.",
    "E0000 00:00:1796155463.633400   11193 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed "
    "call to cuInit: UNKNOWN ERROR (303)",
    "2024-03-01 10:00:00.000000: I tensorflow/core/util/port.cc:113] oneDNN custom operations are on. You may see "
    "slightly different numerical results due to floating-point round-off errors from different computation orders. "
    "To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.",
    "2024-03-01 10:00:00.000000: E external/local_xla/xla/stream_executor/cuda/cuda_dnn.cc:9261] Unable to register "
    "cuDNN factory: Attempting to register factory for plugin cuDNN when one has already been registered",
    "2024-03-01 10:00:00.000000: W tensorflow/compiler/tf2tensorrt/utils/py_utils.cc:38] TF-TRT Warning: Could not "
    "find TensorRT",
]


def test_start_up_lines_are_recognised_and_nothing_else():
    for line in STARTUP_EXAMPLES:
        assert quiet_import.is_startup_noise(line + "\n"), line
    assert not quiet_import.is_startup_noise("I1201 20:15:54.445986 140035307838336 train.py:67] params: defaults")
    assert not quiet_import.is_startup_noise("F0000 00:00:1.0  1 cuda_executor.cc:1] Check failed: cuInit")
    assert not quiet_import.is_startup_noise("W0000 00:00:1.0  1 op_level_cost_estimator.cc:699] Error in PredictCost")


def test_verbose_flag_is_read_from_a_command_line(monkeypatch):
    monkeypatch.delenv("TFWAVEGLOW_VERBOSE_TF", raising=False)
    assert quiet_import.verbose_requested(["prog", "--verbose_tf_logs"])
    assert quiet_import.verbose_requested(["prog", "--verbose_tf_logs=true", "a.npy"])
    assert not quiet_import.verbose_requested(["prog", "--model=m"])
    assert not quiet_import.verbose_requested(["prog", "--verbose_tf_logs", "--noverbose_tf_logs"])
    assert not quiet_import.verbose_requested(["prog", "--", "--verbose_tf_logs"])
    monkeypatch.setenv("TFWAVEGLOW_VERBOSE_TF", "1")
    assert quiet_import.verbose_requested(["prog"])
    assert not quiet_import.verbose_requested(["prog", "--verbose_tf_logs=false"])


@pytest.fixture(scope="module")
def one_clip_dir(tmp_path_factory, speech_clips):
    wave_dir = tmp_path_factory.mktemp("one_clip") / "wavs"
    wave_dir.mkdir()
    audio, rate = soundfile.read(speech_clips[0])
    soundfile.write(wave_dir / "clip.wav", audio, rate)
    return wave_dir


# Each tool is a fresh process of about 9 s: `make test` starts one (train.py); CI starts them all.
def _slow(*values):
    return pytest.param(*values, marks=pytest.mark.slow)


@pytest.mark.parametrize(
    "args, message",
    [
        _slow(["-m", "tfwaveglow.export", "--model=/no/model", "--output={tmp}/export/1"], "export failed: no model"),
        _slow(["-m", "tfwaveglow.demo", "--model=/no/model", "--output_dir={tmp}/demo"], "demo: error: no model"),
        _slow(["-m", "tfwaveglow.convert_nvidia", "--checkpoint=/no/model.pt", "--output={tmp}/c"], "no such file"),
        _slow(["evaluate.py", "--reference_dir={tmp}", "--model=/no/model"], "evaluate: error: no model"),
        (["train.py", "--filelist=/no/list.txt", "--wave_dir={tmp}", "--lc_dir={tmp}", "--model_dir={tmp}/run"],
         "file list not found"),
        _slow(["scripts/ship_model.py", "--run_dir=/no/run", "--output_dir={tmp}/ship"], "run directory /no/run"),
        _slow(["preprocess_data.py", "--wave_dir={wavs}", "--mel_dir={tmp}/mels", "--data_dir={tmp}/data",
               "--num_workers=1"], "preprocess: 100%"),
    ],
    ids=["export", "demo", "convert_nvidia", "evaluate", "train", "ship_model", "preprocess_data"],
)  # fmt: skip
def test_every_tool_starts_quietly_and_keeps_its_own_messages(tmp_path, one_clip_dir, args, message):
    args = [arg.format(tmp=tmp_path, wavs=one_clip_dir) for arg in args]
    proc = run(args)
    assert message in proc.stdout + proc.stderr, proc.stderr[-3000:]
    assert startup_kinds(proc.stderr) == set(), proc.stderr
