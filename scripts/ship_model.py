"""Ships a training run as the bundled model: float16 weights, a model card, listenable samples.

    python scripts/ship_model.py --run_dir=runs/ship [--output_dir=models/fishfillets_cs] \\
        [--checkpoint=PREFIX] [--samples_dir=samples] [--examples_dir=examples] \\
        [--sigma=S] [--denoiser_strength=0.1] [--evaluation_md=FILE]

1. Loads the run's latest checkpoint (or ``--checkpoint``) with weight norm folded
   and saves it with :func:`tfwaveglow.save_model` in float16 (``params.yaml`` +
   ``weights.npz``) with ``training_state.json`` (the checkpoint's step and training
   clocks, for ``train.py --init_from=... --continue_run``); the run's config is kept,
   except ``export.denoiser_strength``, which is set to ``--denoiser_strength``, and,
   given ``--sigma``, ``export.sigma`` (e.g. the choice of
   ``scripts/choose_synthesis_defaults.py``), so that ``synthesize.py`` and exported
   SavedModels use them by default. Fails if the directory exceeds ``--max_megabytes``.
2. Measures what float16 storage costs: the float16 model against the float32
   checkpoint on the first example, under one latent (SNR in dB).
3. Runs ``python -m tfwaveglow.demo`` with the shipped model on ``--examples_dir``
   into ``--samples_dir`` (replacing an earlier demo output there) and writes
   ``README.md`` there.
4. Writes ``MODEL_CARD.md``: data, licence, config, steps, training and validation
   NLL and hours from the run's ``metrics.csv``, the example scores, how to
   reproduce (one ``train.py`` call per stage of the run's ``params_changes.jsonl``:
   config changes on resume are replayed at their steps; a run carried on from a
   shipped model, ``train.py --init_from --continue_run``, is reproduced through
   that model: train to its step, ship it, carry it on). The hours are the run's
   training clock, which goes on across resumes and ``--continue_run``. The evaluation section is
   taken from ``--evaluation_md`` (e.g. the ``evaluation.md`` written by
   ``evaluate.py``), else kept from the card being replaced, else left as a placeholder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import sys

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(SCRIPTS)
sys.path.insert(0, ROOT)
sys.path.insert(0, SCRIPTS)

from absl import flags  # noqa: E402

from tfwaveglow import cli  # noqa: E402

# The config files (layered in order) the card's reproduction command starts from by default.
REPRODUCE_CONFIGS = ("configs/cpu_convergence.yaml",)

FLAGS = flags.FlagValues()
flags.DEFINE_string("run_dir", None, "Training run dir (params.yaml, checkpoints/, metrics.csv).", flag_values=FLAGS)
flags.DEFINE_string("output_dir", "models/fishfillets_cs", "The model directory to write.", flag_values=FLAGS)
flags.DEFINE_string("checkpoint", None, "Checkpoint prefix to ship (default: the run's latest).", flag_values=FLAGS)
flags.DEFINE_string("examples_dir", "examples", "Held-out recordings for the samples.", flag_values=FLAGS)
flags.DEFINE_string("samples_dir", "samples", "Where the demo writes the samples ('' for none).", flag_values=FLAGS)
flags.DEFINE_float("sigma", None, "export.sigma of the shipped params (default: the run's).", flag_values=FLAGS)
flags.DEFINE_float(
    "denoiser_strength", None, "export.denoiser_strength of the shipped params (default: demo's).", flag_values=FLAGS
)
flags.DEFINE_string("evaluation_md", None, "Markdown for the card's evaluation section.", flag_values=FLAGS)
flags.DEFINE_multi_string(
    "reproduce_params",
    list(REPRODUCE_CONFIGS),
    "Config YAMLs (layered in order) that the card's reproduction command starts from; overrides add the rest.",
    flag_values=FLAGS,
)
flags.DEFINE_float("max_megabytes", 25.0, "Largest allowed model directory (MB, 10^6 bytes).", flag_values=FLAGS)
flags.mark_flags_as_required(["run_dir"], flag_values=FLAGS)

CARD_NAME = "MODEL_CARD.md"
EVALUATION_BEGIN = "<!-- evaluation:begin -->"
EVALUATION_END = "<!-- evaluation:end -->"
EVALUATION_PLACEHOLDER = """Not measured yet for this checkpoint. To fill in, on all 62 held-out utterances:

```bash
scripts/link_heldout.sh "$PWD/corpus" out/valid 0     # all of corpus/valid.txt
python evaluate.py --reference_dir=out/valid --model=models/fishfillets_cs --output_dir=out/eval
python scripts/ship_model.py --run_dir=RUN_DIR --evaluation_md=out/eval/evaluation.md
```"""
# Train rows (one per summary interval) averaged for the reported training NLL.
TRAIN_ROWS_AVERAGED = 10


class ShipError(RuntimeError):
    """The run cannot be shipped; the message says why."""


def latest_checkpoint(run_dir: str) -> str:
    import tensorflow as tf

    from tfwaveglow.model_io import CHECKPOINT_SUBDIR

    prefix = tf.train.latest_checkpoint(os.path.join(run_dir, CHECKPOINT_SUBDIR))
    if prefix is None:
        raise ShipError(f"{run_dir}: no checkpoint in {CHECKPOINT_SUBDIR}/")
    return prefix


def checkpoint_scalar(prefix: str, slot: str) -> float | None:
    """The value of the scalar slot ``slot`` saved in the checkpoint ``prefix`` (None if it has none)."""
    import tensorflow as tf

    try:
        return float(tf.train.load_variable(prefix, f"{slot}/.ATTRIBUTES/VARIABLE_VALUE"))
    except (tf.errors.NotFoundError, ValueError):
        return None


def checkpoint_step(prefix: str) -> int:
    """The training step stored in a checkpoint (its ``step`` slot, else the ``-N`` of its name)."""
    step = checkpoint_scalar(prefix, "step")
    if step is not None:
        return int(step)
    match = re.search(r"-(\d+)$", prefix)
    if match is None:
        raise ShipError(f"{prefix}: the checkpoint records no step")
    return int(match.group(1))


def checkpoint_clocks(prefix: str) -> tuple[float, float]:
    """The run's training wall-clock and CPU seconds saved in the checkpoint ``prefix``."""
    clocks = tuple(checkpoint_scalar(prefix, slot) for slot in ("train_seconds", "cpu_seconds"))
    if None in clocks:
        raise ShipError(f"{prefix}: the checkpoint records no training clocks")
    return clocks


def checkpoint_continued_from(prefix: str) -> int:
    """The step at which the checkpoint's run carried on a shipped model's run (0: it did not).

    That is the checkpoint's ``lr_step_offset`` (``train.py --init_from --continue_run``: the
    step of the shipped model whose run goes on, where Adam restarted); a checkpoint written
    before that slot existed is of a run that started afresh.
    """
    return int(checkpoint_scalar(prefix, "lr_step_offset") or 0)


def training_record(run_dir: str, step: int) -> dict:
    """Validation and training NLL and hours of training up to ``step``, from the run's ``metrics.csv``.

    The hours are the run's own training clock (the ``train_hours`` column, which goes on
    across resumes and ``--continue_run``) at the last row up to ``step``; a ``metrics.csv``
    written before that column existed gives them from its rows' wall times, stops left out.
    """
    from plot_convergence import read_metrics, training_hours

    splits = read_metrics(run_dir)
    clock = max(
        ((s, float(row["train_hours"])) for rows in splits.values() for s, _, row in rows
         if s <= step and row.get("train_hours")),
        default=None,
    )  # fmt: skip
    valid = [(s, float(row["loss/total"])) for s, _, row in splits["valid"] if s <= step]
    train = [(s, float(row["loss/total"])) for s, _, row in splits["train"] if s <= step]
    stamps = [t for rows in splits.values() for s, t, _ in rows if s <= step]
    if not train:
        raise ShipError(f"{run_dir}/metrics.csv: no training rows up to step {step}")
    recent = train[-TRAIN_ROWS_AVERAGED:]
    return {
        "valid_step": valid[-1][0] if valid else None,
        "valid_nll": valid[-1][1] if valid else None,
        "valid_best": min(valid, key=lambda v: v[1]) if valid else None,
        "train_nll": sum(v for _, v in recent) / len(recent),
        "train_steps": (recent[0][0], recent[-1][0]),
        "hours": clock[1] if clock else training_hours(splits)[max(stamps)],
    }


def directory_bytes(directory: str) -> int:
    return sum(os.path.getsize(os.path.join(directory, name)) for name in os.listdir(directory))


def float16_snr_db(full, shipped, params, example: str) -> float:
    """SNR (dB) of the float16 model's output against the float32 one's on ``example``, one latent."""
    import numpy as np
    import tensorflow as tf

    from tfwaveglow import audio as audio_lib

    mel = audio_lib.mel_spectrogram(audio_lib.load_audio(example, params.audio.sampling_rate), params.audio)
    mel = tf.constant(mel[None])
    z = tf.random.stateless_normal(full.latent_shape(mel), seed=[0, 0])
    reference = full.infer(mel, params.export.sigma, z=z).numpy().astype(np.float64)
    error = shipped.infer(mel, params.export.sigma, z=z).numpy() - reference
    return float(10.0 * np.log10(np.sum(reference**2) / max(np.sum(error**2), 1e-30)))


def run_samples(model_dir: str, examples_dir: str, samples_dir: str) -> dict:
    """The demo with the shipped model on the examples, into a fresh ``samples_dir``."""
    from tfwaveglow import demo

    if os.path.isdir(samples_dir):
        if os.listdir(samples_dir) and not os.path.isfile(os.path.join(samples_dir, demo.SUMMARY_NAME)):
            raise ShipError(f"{samples_dir} exists and is not a demo output; not replacing it")
        shutil.rmtree(samples_dir)
    demo.main(["demo", f"--model={model_dir}", f"--input_dir={examples_dir}", f"--output_dir={samples_dir}"])
    with open(os.path.join(samples_dir, demo.SUMMARY_NAME), encoding="utf-8") as f:
        return json.load(f)


def _value(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def examples_table(summary: dict, link_prefix: str = "") -> str:
    """Markdown table of the demo's per-file scores (WaveGlow, + denoiser, Griffin-Lim) and means."""
    from tfwaveglow import demo

    systems = demo.SYSTEMS
    titles = [demo.SYSTEM_TITLES[s] for s in systems]
    metrics = [("log_mel_distance", "log-mel dist. ↓", 3), ("stoi", "STOI ↑", 3), ("pesq_wb", "PESQ-WB ↑", 2)]
    header = ["utterance", "seconds"] + [f"{label} {title}" for _, label, _ in metrics for title in titles]
    lines = ["| " + " | ".join(header) + " |", "| --- | " + " | ".join(["---:"] * (len(header) - 1)) + " |"]
    for entry in summary["files"]:
        name = f"[`{entry['output_dir']}`]({link_prefix}{entry['output_dir']}/)" if link_prefix else entry["file"]
        cells = [name, f"{entry['seconds']:.2f}"]
        cells += [_value(entry["metrics"][s][m], d) for m, _, d in metrics for s in systems]
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["**mean**", f"{summary['total_seconds_of_audio']:.2f}"]
    cells += [f"**{_value(summary['average'][s][m]['mean'], d)}**" for m, _, d in metrics for s in systems]
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def samples_readme(summary: dict, info: dict) -> str:
    from tfwaveglow import demo

    rows = "\n".join(f"| `<utterance>/{name}` | {text} |" for name, text in summary["outputs"].items())
    return f"""# Samples of the shipped model

Copy synthesis of the four held-out utterances of `examples/` (never seen in training) by
the shipped model `{info["model_dir"]}` ({info["steps"]} training steps, float16 weights),
made by `scripts/ship_model.py`, which runs

```bash
python -m tfwaveglow.demo --model={info["model_dir"]} \\
    --input_dir={info["examples_dir"]} --output_dir={info["samples_dir"]}
```

(sigma {summary["sigma"]:g}, denoiser strength {summary["denoiser_strength"]:g}, seed {summary["seed"]},
Griffin-Lim {summary["griffin_lim_iterations"]} iterations). Every wav is 22.05 kHz mono 16-bit PCM.

| file | what it is |
| --- | --- |
{rows}
| `{demo.SUMMARY_NAME}` | settings, per-file scores against the original, means |

Scores against the original (copy synthesis from its mel; ↓ lower is better, ↑ higher):

{examples_table(summary, link_prefix="./")}

The utterances are from the Fish Fillets NG Czech voice pack (`fillets-ng-data-cs`), GPL-2:
see `examples/README.md` and `examples/LICENSE`; the outputs here are derived from them and
carry the same licence.
"""


def _evaluation_section(card_path: str, evaluation_md: str | None) -> str:
    if evaluation_md:
        with open(evaluation_md, encoding="utf-8") as f:
            text = f.read().strip()
        # evaluate.py's report starts with its own top-level title.
        return re.sub(r"^# .*\n+", "", text)
    if os.path.isfile(card_path):
        with open(card_path, encoding="utf-8") as f:
            old = f.read()
        match = re.search(re.escape(EVALUATION_BEGIN) + r"\n(.*?)\n" + re.escape(EVALUATION_END), old, re.S)
        if match and match.group(1).strip():
            return match.group(1).strip()
    return EVALUATION_PLACEHOLDER


def _override(key: str, value) -> str:
    return f"{key}={str(value).lower() if isinstance(value, bool) else value}"


def reproduce_overrides(params, steps: int, config_paths: list[str]) -> list[str]:
    """``--params_override`` entries that turn the layered configs into the run's config, trained to ``steps``.

    Every ``model``, ``data`` and ``train`` key whose value in ``params`` (a
    config, or its dotted form from :func:`tfwaveglow.training.dotted_initial_params`)
    differs from the config files' (``config_paths``, relative to the repository,
    layered in order), with ``train.steps`` set to ``steps``.
    """
    import tfwaveglow
    from tfwaveglow.training import params_history

    sections = ("model", "data", "train")
    ours = params if isinstance(params, dict) else params_history.dotted(params, sections)
    base = tfwaveglow.load_params([os.path.join(ROOT, path) for path in config_paths])
    theirs = params_history.dotted(base, sections)
    entries = [f"train.steps={steps}"]
    for key, value in theirs.items():
        if key != "train.steps" and ours[key] != value:
            entries.append(_override(key, ours[key]))
    return entries


def reproduce_stages(params, steps: int, config_paths: list[str], changes: list[dict]) -> list[dict]:
    """The ``train.py`` runs that replay the run to ``steps``, config changes included.

    Args:
      params: the run's newest config.
      steps: the shipped checkpoint's step.
      config_paths: the layered configs the first run starts from.
      changes: the run's ``params_changes.jsonl`` records (oldest first); those
        at or after ``steps`` did not shape the checkpoint and are left out.

    Returns:
      One dict per ``train.py`` run: ``overrides`` (``--params_override``
      entries; the first run's relative to ``config_paths``, each later one's
      the keys changed at its start) and ``stop`` (its ``--steps``, None for the
      last, which ends at ``train.steps = steps``).
    """
    from tfwaveglow.training import params_history

    first = params_history.dotted_initial_params(params, changes)
    changes = [c for c in changes if c["step"] < steps]
    stages = [{"overrides": reproduce_overrides(first, steps, config_paths), "stop": None}]
    for change in changes:
        stages[-1]["stop"] = change["step"]
        entries = [_override(k, after) for k, (_, after) in change["changed"].items() if k != "train.steps"]
        stages.append({"overrides": entries, "stop": None})
    return stages


def changes_text(changes: list[dict], steps: int) -> str:
    """One sentence per recorded config change before ``steps`` (empty when none)."""
    lines = []
    for change in changes:
        if change["step"] < steps:
            keys = ", ".join(f"`{k}` {before} → {after}" for k, (before, after) in change["changed"].items())
            lines.append(f"from step {change['step']}: {keys}")
    if not lines:
        return ""
    return "\n\nChanged on resume (the run's `params_changes.jsonl`): " + "; ".join(lines) + "."


def architecture(params, parameters: int) -> str:
    """One sentence on the flow's layout: flows, group size, WN, conditioning, parameter count."""
    m = params.model
    hop = params.audio.hop_length
    steps_per_frame = hop // m.n_group if hop % m.n_group == 0 else None
    rate = (
        f"{m.n_group}-sample groups ({'one' if steps_per_frame == 1 else steps_per_frame} per mel frame)"
        if steps_per_frame
        else f"{m.n_group}-sample groups"
    )
    wn = f"WN {m.wn.n_layers} layers × {m.wn.n_channels} channels" + (
        " (depthwise-separable)" if m.wn.separable else ""
    )
    if m.upsampler == "transposed_conv":
        cond = f"NVIDIA's transposed-conv upsampler ({m.upsample_kernel_size} taps)"
    else:
        context = f"{m.frame_context} frame{'s' if m.frame_context != 1 else ''} of context either side"
        cond = f"the mel repeated to the group rate with {context}"
    return f"{m.n_flows} flows of {rate}, {wn}, {cond}; {parameters:,} parameters"


def precision(train) -> str:
    """How the run computed: float32, or the mixed-precision dtype."""
    if train.mixed_precision in (False, "float32"):
        return "float32"
    if train.mixed_precision is True:
        return "float32 on a CPU (`mixed_precision: true` applies on a GPU only)"
    return f"{train.mixed_precision} mixed precision"


def reproduce_commands(stages: list[dict], config_paths: list[str], continued_from: int = 0) -> str:
    """The shell commands of :func:`reproduce_stages`' runs, one ``train.py`` call each.

    With ``continued_from`` (:func:`checkpoint_continued_from`), the run carried on from a
    model shipped at that step: the commands first train a run to that step and ship it, then
    train the run that carries it on (``--init_from --continue_run``) into ``runs/ship``.
    """

    def train(model_dir: str) -> str:
        return (
            "python train.py --filelist=corpus/train.txt --valid_filelist=corpus/valid.txt \\\n"
            f"    --wave_dir=corpus/audio --lc_dir=corpus/mels --model_dir={model_dir}"
        )

    configs = "    " + " ".join(f"--params={path}" for path in config_paths)
    commands = []
    if continued_from:
        first, shipped = "runs/ship_first", f"runs/ship_step{continued_from}"
        lines = [train(first), configs] + [f"    --params_override={entry}" for entry in stages[0]["overrides"]]
        commands.append(" \\\n".join([*lines, f"    --steps={continued_from}"]))
        commands.append(
            f"python scripts/ship_model.py --run_dir={first} --checkpoint={first}/checkpoints/ckpt-{continued_from} "
            f"\\\n    --output_dir={shipped} --samples_dir="
        )
    for index, stage in enumerate(stages):
        lines = [train("runs/ship")]
        if index == 0:
            lines.append(configs)
            if continued_from:
                lines.append(f"    --init_from=runs/ship_step{continued_from} --continue_run")
        lines += [f"    --params_override={entry}" for entry in stage["overrides"]]
        if stage["stop"] is not None:
            lines.append(f"    --steps={stage['stop']}")
        commands.append(" \\\n".join(lines))
    return "\n".join(commands)


def continued_text(continued_from: int) -> str:
    """The Training section's sentence on a run carried on from a shipped model (empty if not)."""
    if not continued_from:
        return ""
    return (
        f" The run carried on from its own weights shipped at step {continued_from} (float16; "
        "`train.py --init_from --continue_run`): the step, data order, learning-rate schedule and "
        f"training clock went on from there, and Adam's moments restarted at step {continued_from} "
        "with a fresh warm-up."
    )


def model_card(
    info: dict,
    params,
    record: dict,
    summary: dict | None,
    evaluation: str,
    config_paths: list[str],
    changes: list[dict] = (),
) -> str:
    import yaml

    model_yaml = yaml.safe_dump({"model": dataclasses.asdict(params.model)}, sort_keys=False).strip()
    t = params.train
    train_keys = ("batch_size", "learning_rate", "lr_schedule", "lr_warmup_steps")
    if t.lr_schedule != "constant":
        train_keys += ("lr_decay_start", "lr_decay_steps", "lr_decay_rate")
    train_keys += ("sigma", "weight_norm")
    train_yaml = yaml.safe_dump({"train": {k: getattr(t, k) for k in train_keys}}, sort_keys=False).strip()
    segment = params.data.segment_length
    order = "deterministic" if t.deterministic else "shuffled"
    valid_nll = (
        f"**{record['valid_nll']:.3f}** (step {record['valid_step']}; best {record['valid_best'][1]:.3f} at step "
        f"{record['valid_best'][0]})"
        if record["valid_nll"] is not None
        else "not recorded"
    )
    if summary is not None:
        examples = (
            "Copy synthesis of the four held-out utterances in `examples/` (from their mels; the audio is in "
            f"`samples/`; sigma {summary['sigma']:g}, denoiser strength {summary['denoiser_strength']:g}):\n\n"
            + examples_table(summary)
        )
    else:
        examples = "Not run (`--samples_dir=''`)."
    train_from, train_to = record["train_steps"]
    changes = list(changes)
    continued_from = info.get("continued_from", 0)
    stages = reproduce_stages(params, info["steps"], config_paths, changes)
    commands = reproduce_commands(stages, config_paths, continued_from)
    history = continued_text(continued_from) + changes_text(changes, info["steps"])
    configs = ", ".join(f"`{path}`" for path in config_paths)
    quality = "expect hiss and buzz, clearly worse than NVIDIA's published model"
    if summary is not None:
        means = {m: {k: summary["average"][k][m]["mean"] for k in summary["average"]} for m in ("log_mel_distance",)}
        waveglow, baseline = means["log_mel_distance"]["waveglow_denoised"], means["log_mel_distance"]["griffin_lim"]
        if waveglow is not None and baseline is not None and waveglow > baseline:
            quality = (
                "on the examples its output is still further from the original than the Griffin-Lim "
                f"baseline's (log-mel distance {waveglow:.2f} against {baseline:.2f}): noisy, with little of "
                "the harmonic structure of voiced speech"
            )
    return f"""# Model card: `fishfillets_cs` WaveGlow vocoder

A WaveGlow vocoder (mel spectrogram → 22.05 kHz speech) trained from scratch with tfwaveglow on
the Czech voices of the game Fish Fillets – Next Generation. Small enough to train on a CPU:
{architecture(params, info["parameters"])} (NVIDIA's published model: 12 flows of 8-sample
groups, WN 8 × 256, about 88 M).

| | |
| --- | --- |
| files | `params.yaml` (the run's resolved config), `weights.npz` (float16, weight norm folded) |
| size | {info["megabytes"]:.1f} MB (`params.yaml` + `weights.npz`; float16 on disk, float32 once loaded) |
| float16 storage | output SNR {info["snr_db"]:.1f} dB against float32 (same latent, `{info["snr_example"]}`) |
| training steps | {info["steps"]} (checkpoint `{info["checkpoint_name"]}`) |
| training time | {record["hours"]:.2f} h wall clock on 2 CPU cores (from `metrics.csv`, stops left out) |
| validation NLL | {valid_nll} |
| training NLL | {record["train_nll"]:.3f} (mean of the rows logged at steps {train_from}–{train_to}) |
| synthesis defaults | sigma {params.export.sigma:g}, denoiser strength {params.export.denoiser_strength:g} |

NLL is WaveGlow's loss per audio sample (σ = 1, no Gaussian constant; lower is better; NVIDIA's
LJSpeech model reaches about −5.5 to −6).

## Use

```bash
make demo                                    # copy synthesis of examples/ into demo_output/
python -m tfwaveglow.demo --input_dir=my_wavs --output_dir=out
python synthesize.py --model=models/fishfillets_cs --mel=mel.npy --output_dir=out
```

```python
import tfwaveglow
model = tfwaveglow.load_model("models/fishfillets_cs")   # float32 variables
audio = model.infer(mel, sigma=0.6)                      # mel [1, frames, 80] natural-log Slaney mel
```

Mels must come from the NVIDIA/Tacotron 2 front end (`tfwaveglow.audio.mel_spectrogram`: 22.05 kHz,
FFT 1024, hop 256, 80 bins 0–8 kHz, natural log).

## Data

The Debian package `fillets-ng-data-cs` (Czech voice acting of Fish Fillets – Next Generation,
22.05 kHz mono): two speakers, the small fish (female, files `*-m-*`) and the big fish (male,
`*-v-*`), about 69 minutes in 1238 utterances. Split by `preprocess_data.py` (valid fraction
{params.data.valid_fraction:g}, seed {params.data.split_seed}): **1176 training and 62 held-out validation
utterances** (`corpus/train.txt`, `corpus/valid.txt`); both speakers in both. `examples/` holds four
of the held-out utterances.

## Licence

The recordings are licensed under the GNU General Public License, version 2 (see
`tests/data/LICENSE` and the package's `/usr/share/doc/fillets-ng-data-cs/copyright`); the weights
are trained on them and are distributed under the **GPL-2** as well. tfwaveglow's code is BSD-3-Clause.

## Training

{configs} (trained longer): random {segment}-sample segments, batch {t.batch_size},
Adam, {precision(t)}, {order} data order.{history} From the shipped `params.yaml`:

```yaml
{model_yaml}
{train_yaml}
```

## Reproduce

```bash
scripts/get_corpus.sh      # downloads fillets-ng-data-cs with apt-get, preprocesses into corpus/
{commands}
python scripts/ship_model.py --run_dir=runs/ship --output_dir=models/fishfillets_cs
```

Running `train.py` again resumes from the last checkpoint; a later `train.py` call with
`--params_override` changes those keys from its start on. Another machine or thread count gives a
run close to, not bit-identical with, this one.

## Intended use and limits

- Research and demonstration: a vocoder for Czech speech of these two voices, e.g. for the
  copy synthesis of `make demo` or behind a Czech TTS model trained on the same corpus.
- Trained {record["hours"]:.1f} h on a CPU, a small model (validation NLL {_value(record["valid_nll"], 2)}
  against about −5.5 for NVIDIA's LJSpeech model): {quality}. Other speakers, languages,
  sampling rates or mel front ends are out of scope (expect worse audio).
- The voices belong to the game's voice actors: do not use the model to impersonate them.

## Examples

{examples}

## Evaluation

{EVALUATION_BEGIN}
{evaluation}
{EVALUATION_END}
"""


def ship(
    run_dir: str,
    output_dir: str,
    *,
    checkpoint: str | None = None,
    examples_dir: str = "examples",
    samples_dir: str = "samples",
    denoiser_strength: float | None = None,
    sigma: float | None = None,
    evaluation_md: str | None = None,
    max_megabytes: float = 25.0,
    reproduce_params: tuple[str, ...] = REPRODUCE_CONFIGS,
) -> dict:
    """Steps 1-4 of the module docstring; returns what the card reports."""
    import tfwaveglow
    from tfwaveglow import demo, preprocess
    from tfwaveglow.model_io import PARAMS_FILE, WEIGHTS_FILE, load_model, save_training_state
    from tfwaveglow.training import read_params_changes

    if not os.path.isdir(run_dir):
        raise ShipError(f"run directory {run_dir} does not exist")
    prefix = checkpoint or latest_checkpoint(run_dir)
    step = checkpoint_step(prefix)
    params = tfwaveglow.load_params(os.path.join(run_dir, PARAMS_FILE))
    strength = demo.DEFAULT_DENOISER_STRENGTH if denoiser_strength is None else float(denoiser_strength)
    export = dataclasses.replace(params.export, denoiser_strength=strength)
    if sigma is not None:
        if not sigma > 0:
            raise ShipError(f"--sigma must be positive, got {sigma:g}")
        export = dataclasses.replace(export, sigma=float(sigma))
    params = dataclasses.replace(params, export=export)
    record = training_record(run_dir, step)
    full = load_model(prefix, params=params)

    tfwaveglow.save_model(full, output_dir, params, weights_dtype="float16")
    save_training_state(output_dir, step, *checkpoint_clocks(prefix))
    size = sum(os.path.getsize(os.path.join(output_dir, name)) for name in (PARAMS_FILE, WEIGHTS_FILE))
    if size > max_megabytes * 1e6:
        raise ShipError(f"{output_dir} is {size / 1e6:.1f} MB, more than --max_megabytes={max_megabytes:g}")
    shipped = load_model(output_dir)
    examples = preprocess.find_audio_files(examples_dir) if os.path.isdir(examples_dir) else []
    if not examples:
        raise ShipError(f"{examples_dir}: no example recordings")
    info = {
        "model_dir": output_dir,
        "examples_dir": examples_dir,
        "samples_dir": samples_dir,
        "checkpoint_name": os.path.basename(prefix),
        "megabytes": size / 1e6,
        "steps": step,
        "continued_from": checkpoint_continued_from(prefix),
        "parameters": tfwaveglow.count_parameters(full),
        "snr_example": examples[0],
        "snr_db": float16_snr_db(full, shipped, params, os.path.join(examples_dir, examples[0])),
    }
    summary = None
    if samples_dir:
        summary = run_samples(output_dir, examples_dir, samples_dir)
        with open(os.path.join(samples_dir, "README.md"), "w", encoding="utf-8") as f:
            f.write(samples_readme(summary, info))
    card_path = os.path.join(output_dir, CARD_NAME)
    evaluation = _evaluation_section(card_path, evaluation_md)
    try:
        changes = read_params_changes(run_dir)
    except ValueError as e:
        raise ShipError(str(e)) from None
    with open(card_path, "w", encoding="utf-8") as f:
        f.write(model_card(info, params, record, summary, evaluation, list(reproduce_params), changes))
    size = directory_bytes(output_dir)
    if size > max_megabytes * 1e6:
        raise ShipError(f"{output_dir} is {size / 1e6:.1f} MB, more than --max_megabytes={max_megabytes:g}")
    return {**info, **record}


def main(argv) -> None:
    """Ships the run; ``argv`` may carry the flags when called from Python."""
    cli.parse_argv(FLAGS, argv)
    with cli.exit_on_error("ship_model", ShipError):
        result = ship(
            FLAGS.run_dir,
            FLAGS.output_dir,
            checkpoint=FLAGS.checkpoint,
            examples_dir=FLAGS.examples_dir,
            samples_dir=FLAGS.samples_dir,
            denoiser_strength=FLAGS.denoiser_strength,
            sigma=FLAGS.sigma,
            evaluation_md=FLAGS.evaluation_md,
            max_megabytes=FLAGS.max_megabytes,
            reproduce_params=FLAGS.reproduce_params,
        )
    print(
        f"shipped step {result['steps']} to {FLAGS.output_dir} ({result['megabytes']:.1f} MB, "
        f"float16 SNR {result['snr_db']:.1f} dB, valid NLL {result['valid_nll']})"
    )


if __name__ == "__main__":
    cli.run(main, FLAGS, __doc__)
